// Per-request staging end to end on loopback: hello -> world through two sidecars, the override
// following the call graph as l5d-ctx-dtab, production traffic untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { proxyFor, send, startUpstream, stat } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const closers: Array<() => Promise<void>> = [];
afterAll(async () => { for (const c of closers.reverse()) await c(); });

let caller: RunningProxy;   // the client's sidecar (outbound)
let helloSidecar: RunningProxy;
let edge: RunningProxy;     // an edge proxy: strips l5d-* headers
const seenCtx: string[] = [];

function forwardCtx(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (/^l5d-ctx-/i.test(req.rawHeaders[i])) out[req.rawHeaders[i]] = req.rawHeaders[i + 1];
  return out;
}

function world(answer: string) {
  return (req: IncomingMessage, res: import('node:http').ServerResponse) => {
    seenCtx.push(String(req.headers['l5d-ctx-dtab'] ?? ''));
    if (req.headers['l5d-dtab'] !== undefined) { res.statusCode = 500; res.end('l5d-dtab leaked'); return; }
    res.end(answer);
  };
}

beforeAll(async () => {
  const w1 = await startUpstream(world('world'));
  const w2subset = await startUpstream(world('planet'));
  const wv2 = await startUpstream(world('earth'));
  let helloOutbound = 0;
  const hello = await startUpstream((req, res) => {
    const r = httpRequest({ host: '127.0.0.1', port: helloOutbound, path: '/', agent: false, headers: { host: 'world', ...forwardCtx(req) } }, (wr) => {
      let b = '';
      wr.on('data', (c) => { b += c; });
      wr.on('end', () => { res.statusCode = wr.statusCode ?? 502; res.end(`Hello ${b}`); });
    });
    r.on('error', (e) => { res.statusCode = 502; res.end(e.message); });
    r.end();
  });
  closers.push(() => w1.close(), () => w2subset.close(), () => wv2.close(), () => hello.close());
  const mesh = (helloPort: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: hello }
spec:
  hosts: [hello.default.svc.cluster.local]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${helloPort} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: world }
spec:
  hosts: [world.default.svc.cluster.local]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${w1.port} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${w2subset.port} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: world }
spec:
  host: world.default.svc.cluster.local
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: world }
spec:
  hosts: [world]
  http: [{ route: [{ destination: { host: world, subset: v1 } }] }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: world-v2 }
spec:
  hosts: [world-v2.default.svc.cluster.local]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${wv2.port} } }]
`;
  helloSidecar = await proxyFor(mesh(hello.port), { appPort: hello.port, service: 'hello' });
  helloOutbound = helloSidecar.ports.outbound;
  // The caller reaches hello through hello's sidecar (inbound), as in a mesh.
  caller = await proxyFor(mesh(helloSidecar.ports.inbound));
  edge = await proxyFor(mesh(helloSidecar.ports.inbound), { dtabHeaders: 'strip' });
  closers.push(() => caller.drain(100), () => helloSidecar.drain(100), () => edge.drain(100));
});

describe('staging with l5d-dtab', () => {
  it('without a header: Hello world', async () => {
    expect((await send(caller.ports.outbound, { host: 'hello' })).body).toBe('Hello world');
  });

  it('with l5d-dtab: /svc/world => /srv/world-v2 the second hop reaches world-v2: Hello earth', async () => {
    seenCtx.length = 0;
    const r = await send(caller.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': '/svc/world => /srv/world-v2' } });
    expect(r.body).toBe('Hello earth');
    // Downstream of both sidecars the override travels as l5d-ctx-dtab (show form), never l5d-dtab.
    expect(seenCtx).toEqual(['/svc/world=>/srv/world-v2']);
    expect(await stat(caller.ports.admin, 'http.outbound.dtab_override')).toBeGreaterThan(0);
    const prom = (await send(helloSidecar.ports.admin, { path: '/stats/prometheus' })).body;
    expect(prom).toMatch(/istio_requests_total\{[^}]*destination_service="world-v2\.default\.svc\.cluster\.local"[^}]*dtab_override="true"[^}]*\} 1/);
  });

  it('pinning a subset: /svc/world => /srv/world/v2', async () => {
    expect((await send(caller.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': '/svc/world => /srv/world/v2' } })).body).toBe('Hello planet');
  });

  it('an override to a name the mesh does not know falls back to production', async () => {
    expect((await send(caller.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': '/svc/world => /srv/world-v9' } })).body).toBe('Hello world');
  });

  it('production traffic is unaffected while overrides are in flight', async () => {
    const plain: Array<Promise<string>> = [];
    const staged: Array<Promise<string>> = [];
    for (let i = 0; i < 60; i++) {
      plain.push(send(caller.ports.outbound, { host: 'hello' }).then((r) => r.body));
      staged.push(send(caller.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': '/svc/world => /srv/world-v2' } }).then((r) => r.body));
    }
    expect(new Set(await Promise.all(plain))).toEqual(new Set(['Hello world']));
    expect(new Set(await Promise.all(staged))).toEqual(new Set(['Hello earth']));
  });

  it('a malformed header is a 400 with the parser message in the body and l5d-err', async () => {
    const r = await send(caller.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': 'i am not a dtab' } });
    expect(r.status).toBe(400);
    expect(r.body).toBe("'/' expected but 'i' found at '[i] am not a dtab'");
    expect(r.headers['l5d-err']).toBe('%27%2F%27+expected+but+%27i%27+found+at+%27%5Bi%5D+am+not+a+dtab%27');
  });

  it('an override that binds to nothing is a 502 naming the service', async () => {
    const r = await send(caller.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': '/svc/hello => !' } });
    expect(r.status).toBe(502);
    expect(r.body).toMatch(/^Unable to route request! service: \/svc\/hello/);
    expect(r.headers['l5d-err']).toBeDefined();
  });

  it('a strip listener ignores and removes l5d-* headers, even malformed ones', async () => {
    seenCtx.length = 0;
    expect((await send(edge.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': '/svc/world => /srv/world-v2' } })).body).toBe('Hello world');
    expect((await send(edge.ports.outbound, { host: 'hello', headers: { 'l5d-dtab': 'garbage', 'l5d-ctx-dtab': 'more garbage' } })).status).toBe(200);
    expect(seenCtx.every((c) => c === '')).toBe(true);
  });

  it('a strip listener also removes l5d-* response headers (Linkerd clearContext); trust keeps them', async () => {
    const leaky = await startUpstream((_q, res) => { res.setHeader('l5d-err', 'internal%20detail'); res.setHeader('l5d-success-class', '1.0'); res.end('ok'); });
    closers.push(() => leaky.close());
    const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: leaky }
spec:
  hosts: [leaky]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${leaky.port} } }]
`;
    const stripping = await proxyFor(yaml, { dtabHeaders: 'strip' });
    const trusting = await proxyFor(yaml);
    closers.push(() => stripping.drain(100), () => trusting.drain(100));
    const viaEdge = await send(stripping.ports.outbound, { host: 'leaky' });
    expect(viaEdge.body).toBe('ok');
    expect(Object.keys(viaEdge.headers).filter((h) => h.startsWith('l5d-'))).toEqual([]);
    const viaSidecar = await send(trusting.ports.outbound, { host: 'leaky' });
    expect(viaSidecar.headers['l5d-success-class']).toBe('1.0');
  });
});

describe('admin delegator', () => {
  it('GET /delegator.json returns Linkerd-shaped JSON with the meshlet namer', async () => {
    const q = new URLSearchParams({ dtab: '/srv => /#/meshlet; /svc => /srv; /svc/world => /srv/world-v2', path: '/svc/world' });
    const r = await send(caller.ports.admin, { path: `/delegator.json?${q}` });
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body);
    expect(body).toMatchObject({ type: 'alt', path: '/svc/world' });
    expect(Object.keys(body)).toEqual(['type', 'path', 'alt']);
    const first = body.alt[0];
    expect(first).toMatchObject({ type: 'delegate', path: '/srv/world-v2', dentry: { prefix: '/svc/world', dst: '/srv/world-v2' } });
    // Through the running proxy's meshlet namer the staging name binds (offline it would be neg).
    expect(first.delegate).toMatchObject({ type: 'leaf', path: '/#/meshlet/world-v2', bound: { id: '/#/meshlet/world-v2', path: '/' } });
    expect(first.delegate.bound.addr).toMatchObject({ type: 'bound', addrs: [{ ip: '127.0.0.1' }] });
    expect(body.alt[1].delegate).toMatchObject({ type: 'leaf', bound: { id: '/#/meshlet/world' } });
  });

  it('errors: invalid dtab 400, invalid path 400, POST needs exactly application/json', async () => {
    expect((await send(caller.ports.admin, { path: '/delegator.json?dtab=nope&path=/a' })).body).toMatch(/^Invalid dtab: /);
    expect((await send(caller.ports.admin, { path: '/delegator.json?dtab=/a=>/b&path=a' })).body).toMatch(/^Invalid path: /);
    const ok = await send(caller.ports.admin, { path: '/delegator.json', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dtab: '/a=>/b', path: '/a' }) });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ type: 'delegate', path: '/a' });
    expect((await send(caller.ports.admin, { path: '/delegator.json', method: 'POST', headers: { 'content-type': 'application/json;charset=utf-8' }, body: '{}' })).status).toBe(415);
    expect((await send(caller.ports.admin, { path: '/delegator.json', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"path":"/a"}' })).status).toBe(400);
    expect((await send(caller.ports.admin, { path: '/delegator' })).body).toContain('dtab playground');
  });
});
