// Fault injection percentages, flags, bodies and stats; mirroring with and without the -shadow
// Host suffix, and a dead mirror that must not change any primary response.
import { afterAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { connect } from 'node:net';
import { once } from 'node:events';
import { Fixtures, deadPort, send } from '../helpers.ts';
import { stats, until } from './lib.ts';

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

function vs(route: string): string {
  return `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: s }
spec:
  hosts: [s]
  http:
    - route: [{ destination: { host: s } }]
${route}
`;
}

describe('fault injection', () => {
  it('abort 30 % and delay 20 % land within ±3 points over 2 000 requests; DI / FI, body, stats', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(services([['s', u.port]]) + vs(`      fault:
        abort: { httpStatus: 418, percentage: { value: 30 } }
        delay: { fixedDelay: 1ms, percentage: { value: 20 } }`));
    const N = 2000;
    let aborted = 0, delayed = 0, next = 0, passed = 0;
    const worker = async () => {
      while (next < N) {
        next++;
        const r = await request(`http://127.0.0.1:${p.ports.outbound}/`, { headers: { host: 's' }, dispatcher: agent });
        const body = await r.body.text();
        const flags = String(r.headers['x-meshlet-flags'] ?? '-');
        if (flags.split(',').includes('DI')) delayed++;
        if (r.statusCode === 418) {
          aborted++;
          expect(body).toBe('fault filter abort');
          expect(flags.endsWith('FI')).toBe(true);
        } else {
          passed++;
          expect(r.statusCode).toBe(200);
          expect(body).toBe('ok');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(aborted + passed).toBe(N);
    expect(Math.abs((100 * aborted) / N - 30)).toBeLessThanOrEqual(3);
    expect(Math.abs((100 * delayed) / N - 20)).toBeLessThanOrEqual(3);
    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.fault.aborts_injected')).toBe(aborted);
    expect(s.get('http.outbound.fault.delays_injected')).toBe(delayed);
    expect(s.get('http.outbound.fault.active_faults')).toBe(0);
    // Aborts never reach the router: the cluster saw only the requests that passed.
    expect(s.get('cluster.outbound|80||s;.upstream_rq_completed')).toBe(passed);
    expect(s.get('cluster.outbound|80||s;.upstream_rq_418')).toBeUndefined();
    expect(u.hits).toBe(passed);
  });

  it('a 100 % abort is never retried or sent upstream', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(services([['s', u.port]]) + vs(`      retries: { attempts: 3, retryOn: 5xx }
      fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }`));
    const r = await send(p.ports.outbound, { host: 's' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('fault filter abort');
    expect(r.headers['x-meshlet-flags']).toBe('FI');
    expect(u.hits).toBe(0);
  });

  it("max_active_faults: beyond the bound no fault is injected (fault.faults_overflow); active_faults counts held requests", async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(services([['s', u.port]]) + vs(`      fault: { delay: { fixedDelay: 400ms, percentage: { value: 100 } } }`), { maxActiveFaults: 2 });
    const held = [send(p.ports.outbound, { host: 's' }), send(p.ports.outbound, { host: 's' })];
    expect(await until(async () => (await stats(p.ports.admin)).get('http.outbound.fault.active_faults') === 2, 2000)).toBe(true);
    // Two faults are active: the next three pass straight through, undelayed and unflagged.
    const free = await Promise.all([0, 1, 2].map(() => send(p.ports.outbound, { host: 's' })));
    for (const r of free) { expect(r.status).toBe(200); expect(r.headers['x-meshlet-flags']).toBeUndefined(); }
    for (const r of await Promise.all(held)) { expect(r.status).toBe(200); expect(r.headers['x-meshlet-flags']).toBe('DI'); }
    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.fault.faults_overflow')).toBe(3);
    expect(s.get('http.outbound.fault.delays_injected')).toBe(2);
    expect(s.get('http.outbound.fault.active_faults')).toBe(0);
    expect(u.hits).toBe(5);
  });

  it('a client that leaves during a delay frees its fault at once and nothing is sent upstream', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(services([['s', u.port]]) + vs(`      fault: { delay: { fixedDelay: 10s, percentage: { value: 100 } } }`));
    const sock = connect(p.ports.outbound, '127.0.0.1');
    await once(sock, 'connect');
    sock.write('GET / HTTP/1.1\r\nHost: s\r\n\r\n');
    expect(await until(async () => (await stats(p.ports.admin)).get('http.outbound.fault.active_faults') === 1, 2000)).toBe(true);
    sock.destroy();
    expect(await until(async () => (await stats(p.ports.admin)).get('http.outbound.fault.active_faults') === 0, 2000)).toBe(true);
    expect((await stats(p.ports.admin)).get('http.outbound.downstream_rq_rx_reset')).toBe(1);
    expect(u.hits).toBe(0);
  });

  it('no percentage means no fault (Istio maps it to the deprecated integer percent, default 0)', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(services([['s', u.port]]) + vs('      fault: { abort: { httpStatus: 500 } }'));
    for (let i = 0; i < 20; i++) expect((await send(p.ports.outbound, { host: 's' })).status).toBe(200);
  });
});

describe('mirroring', () => {
  async function mirrorSetup(shadowHostSuffix: boolean, mirrorStatus = 200) {
    const primary = await fx.upstream((req, r) => { req.resume(); req.on('end', () => r.end('primary')); });
    const copies: Array<{ host: string; len: number; method: string }> = [];
    const mirror = await fx.upstream((req, r) => {
      let len = 0;
      req.on('data', (c: Buffer) => { len += c.length; });
      req.on('end', () => { copies.push({ host: String(req.headers.host), len, method: req.method! }); r.statusCode = mirrorStatus; r.end('mirror'); });
    });
    const p = await fx.proxy(services([['s', primary.port], ['m', mirror.port]]) + vs('      mirror: { host: m }'), { shadowHostSuffix });
    return { p, primary, copies };
  }

  it('delivers copies (Istio >= 1.28: no -shadow suffix) without changing primary responses', async () => {
    const { p, copies } = await mirrorSetup(false, 500);
    for (let i = 0; i < 10; i++) {
      const r = await send(p.ports.outbound, { host: 's', method: 'POST', body: 'x'.repeat(1000) });
      expect(r.status).toBe(200);
      expect(r.body).toBe('primary');
    }
    expect(await until(async () => copies.length === 10, 2000)).toBe(true);
    for (const c of copies) expect(c).toEqual({ host: 's', len: 1000, method: 'POST' });
    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.mirror.sent')).toBe(10);
    expect(s.get('cluster.outbound|80||m;.upstream_rq_500')).toBe(10);
  });

  it('with shadowHostSuffix the copy goes to <host>-shadow, before any port', async () => {
    const { p, copies } = await mirrorSetup(true);
    expect((await send(p.ports.outbound, { host: 's' })).body).toBe('primary');
    expect((await send(p.ports.outbound, { host: 's:80' })).body).toBe('primary');
    expect(await until(async () => copies.length === 2, 2000)).toBe(true);
    expect(copies.map((c) => c.host).sort()).toEqual(['s-shadow', 's-shadow:80']);
  });

  it('a dead mirror (closed port) changes no primary response code', async () => {
    const primary = await fx.upstream((req, r) => {
      req.resume();
      req.on('end', () => { r.statusCode = req.url === '/teapot' ? 418 : 200; r.end('p'); });
    });
    const dead = await deadPort();
    const p = await fx.proxy(services([['s', primary.port], ['m', dead]]) + vs('      mirror: { host: m }'));
    for (let i = 0; i < 10; i++) {
      expect((await send(p.ports.outbound, { host: 's' })).status).toBe(200);
      expect((await send(p.ports.outbound, { host: 's', path: '/teapot', method: 'POST', body: 'b' })).status).toBe(418);
    }
    expect(await until(async () => (await stats(p.ports.admin)).get('http.outbound.mirror.failed') === 20, 2000)).toBe(true);
    expect((await stats(p.ports.admin)).get('cluster.outbound|80||m;.upstream_cx_connect_fail')).toBe(20);
  });
});
