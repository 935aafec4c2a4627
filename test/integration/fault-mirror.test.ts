// Fault injection percentages and traffic mirroring.
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { Fixtures, send, startUpstream, stat } from '../helpers.ts';

const fx = new Fixtures();
const agent = new Agent({ connections: 8 });
afterAll(async () => { await agent.close(); await fx.closeAll(); });

function services(entries: Array<[string, number]>): string {
  return entries.map(([h, port]) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${h} }
spec:
  hosts: [${h}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} } }]
`).join('---\n');
}

describe('fault injection', () => {
  it('abort 30 % and delay 20 % land within ±3 points over 2 000 requests', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(`${services([['s', u.port]])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: s }
spec:
  hosts: [s]
  http:
    - route: [{ destination: { host: s } }]
      fault:
        abort: { httpStatus: 418, percentage: { value: 30 } }
        delay: { fixedDelay: 1ms, percentage: { value: 20 } }
`);
    let aborted = 0, delayed = 0, next = 0;
    const worker = async () => {
      while (next < 2000) {
        next++;
        const r = await request(`http://127.0.0.1:${p.ports.outbound}/`, { headers: { host: 's' }, dispatcher: agent });
        const body = await r.body.text();
        const flags = String(r.headers['x-meshlet-flags'] ?? '');
        if (r.statusCode === 418) { aborted++; expect(body).toBe('fault filter abort'); expect(flags).toContain('FI'); }
        if (flags.includes('DI')) delayed++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(Math.abs(aborted / 20 - 30)).toBeLessThanOrEqual(3);
    expect(Math.abs(delayed / 20 - 20)).toBeLessThanOrEqual(3);
    expect(await stat(p.ports.admin, 'http.outbound.fault.aborts_injected')).toBe(aborted);
    expect(await stat(p.ports.admin, 'http.outbound.fault.delays_injected')).toBe(delayed);
  });
});

describe('mirroring', () => {
  async function setup(mirrorPort: number, opts = {}) {
    const primary = await fx.upstream((req, res) => { let b = ''; req.on('data', (c) => { b += c; }); req.on('end', () => res.end(`primary:${b}`)); });
    const p = await fx.proxy(`${services([['s', primary.port], ['shadow', mirrorPort]])}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: s }
spec:
  hosts: [s]
  http:
    - route: [{ destination: { host: s } }]
      mirror: { host: shadow }
      mirrorPercentage: { value: 100 }
`, opts);
    return { primary, p };
  }

  it('delivers copies (body included) without changing the primary response; no -shadow suffix by default', async () => {
    const copies: Array<{ host: string; body: string }> = [];
    const mirror = await fx.upstream((req, res) => { let b = ''; req.on('data', (c) => { b += c; }); req.on('end', () => { copies.push({ host: String(req.headers.host), body: b }); res.statusCode = 500; res.end('mirror says no'); }); });
    const { p } = await setup(mirror.port);
    for (let i = 0; i < 5; i++) {
      const r = await send(p.ports.outbound, { host: 's', method: 'POST', body: `m${i}` });
      expect(r.status).toBe(200);
      expect(r.body).toBe(`primary:m${i}`);
    }
    const deadline = Date.now() + 2000;
    while (copies.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(copies.map((c) => c.body).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(copies.every((c) => c.host === 's')).toBe(true);
    expect(await stat(p.ports.admin, 'http.outbound.mirror.sent')).toBe(5);
  });

  it('appends -shadow to the Host with the older-Istio toggle', async () => {
    const hosts: string[] = [];
    const mirror = await fx.upstream((req, res) => { hosts.push(String(req.headers.host)); res.end(); });
    const { p } = await setup(mirror.port, { shadowHostSuffix: true });
    await send(p.ports.outbound, { host: 's:8000' });
    const deadline = Date.now() + 2000;
    while (hosts.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(hosts).toEqual(['s-shadow:8000']);
  });

  it('a dead mirror changes no primary response', async () => {
    const dead = await startUpstream(() => {});
    const port = dead.port;
    await dead.close();
    const { p } = await setup(port);
    for (let i = 0; i < 10; i++) expect((await send(p.ports.outbound, { host: 's', method: 'POST', body: 'x' })).body).toBe('primary:x');
  });
});
