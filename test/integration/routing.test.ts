// Weighted and content routing through the outbound listener, on real loopback sockets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { echo, proxyFor, send, startUpstream, twoSubsetYaml, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const HOST = 'reviews.default.svc.cluster.local';
let v1: Upstream, v2: Upstream;
const proxies: RunningProxy[] = [];
const agent = new Agent({ connections: 16 });

beforeAll(async () => {
  v1 = await startUpstream(echo('v1'));
  v2 = await startUpstream(echo('v2'));
});
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.drain(100)));
  await agent.close();
  await v1.close();
  await v2.close();
});

async function meshWith(vs: string): Promise<RunningProxy> {
  const p = await proxyFor(twoSubsetYaml(HOST, { v1: v1.port, v2: v2.port }, vs));
  proxies.push(p);
  return p;
}

function split(w1: number, w2: number): string {
  return `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: ${w1} }
        - { destination: { host: reviews, subset: v2 }, weight: ${w2} }
`;
}

/** Send n requests, `concurrency` at a time, and count answers by upstream name. */
async function tally(port: number, n: number, host = 'reviews', headers: Record<string, string> = {}, path = '/'): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await request(`http://127.0.0.1:${port}${path}`, { headers: { host, ...headers }, dispatcher: agent });
      const body = await r.body.text();
      const key = r.statusCode === 200 ? String(r.headers['x-upstream']) : `status ${r.statusCode}`;
      counts[key] = (counts[key] ?? 0) + 1;
      void body;
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return counts;
}

describe('weighted routing', () => {
  it('a 20/80 split over 10 000 requests lands within ±2 points', async () => {
    const p = await meshWith(split(20, 80));
    const c = await tally(p.ports.outbound, 10_000);
    expect((c.v1 ?? 0) + (c.v2 ?? 0)).toBe(10_000);
    expect(Math.abs((c.v1 ?? 0) / 100 - 20)).toBeLessThanOrEqual(2);
  });

  it('100/0 (blue-green) sends nothing to the other subset', async () => {
    const p = await meshWith(split(100, 0));
    const c = await tally(p.ports.outbound, 500);
    expect(c).toEqual({ v1: 500 });
  });

  it('"take over all traffic" (0/100) sends everything to v2', async () => {
    const p = await meshWith(split(0, 100));
    const c = await tally(p.ports.outbound, 500);
    expect(c).toEqual({ v2: 500 });
  });

  it('routes by FQDN, short name and with a port in Host', async () => {
    const p = await meshWith(split(0, 100));
    for (const host of [HOST, 'reviews', 'reviews:9080', 'REVIEWS.default.svc.cluster.local:80']) {
      const r = await send(p.ports.outbound, { host });
      expect(r.status, host).toBe(200);
      expect(r.headers['x-upstream']).toBe('v2');
    }
  });
});

describe('content routing', () => {
  const vs = `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: jason
      match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: cookie
      match: [{ headers: { cookie: { regex: "^(.*?; ?)?(user=tester)(;.*)?$" } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: api-prefix
      match: [{ uri: { prefix: /api/v2 } }]
      rewrite: { uri: /v2 }
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: query
      match: [{ queryParams: { canary: { exact: "yes" } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: regex-path-and-method
      match: [{ uri: { regex: "/items/[0-9]+" }, method: { exact: DELETE } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
      headers: { response: { set: { x-route: regex } }, request: { add: { x-added: "1" } } }
    - route: [{ destination: { host: reviews, subset: v1 } }]
`;
  let p: RunningProxy;
  beforeAll(async () => { p = await meshWith(vs); });

  const cases: Array<[string, Parameters<typeof send>[1], string]> = [
    ['no match falls through to the default route', { host: 'reviews' }, 'v1'],
    ['header exact', { host: 'reviews', headers: { 'end-user': 'jason' } }, 'v2'],
    ['header exact, other value', { host: 'reviews', headers: { 'end-user': 'bob' } }, 'v1'],
    ['cookie via headers.cookie.regex', { host: 'reviews', headers: { cookie: 'a=1; user=tester; b=2' } }, 'v2'],
    ['cookie not present', { host: 'reviews', headers: { cookie: 'a=1; user=other' } }, 'v1'],
    ['path prefix', { host: 'reviews', path: '/api/v2/things' }, 'v2'],
    ['query param', { host: 'reviews', path: '/x?a=1&canary=yes' }, 'v2'],
    ['query param other value', { host: 'reviews', path: '/x?canary=no' }, 'v1'],
    ['regex is a full match', { host: 'reviews', path: '/items/12', method: 'DELETE' }, 'v2'],
    ['regex does not match a longer path', { host: 'reviews', path: '/items/12/x', method: 'DELETE' }, 'v1'],
    ['method must match too', { host: 'reviews', path: '/items/12', method: 'GET' }, 'v1'],
  ];
  for (const [name, req, want] of cases) {
    it(name, async () => {
      const r = await send(p.ports.outbound, req);
      expect(r.status).toBe(200);
      expect(r.headers['x-upstream']).toBe(want);
    });
  }

  it('prefix rewrite replaces the matched prefix and keeps the query', async () => {
    const r = await send(p.ports.outbound, { host: 'reviews', path: '/api/v2/things?x=1' });
    expect(JSON.parse(r.body).url).toBe('/v2/things?x=1');
  });

  it('applies request and response header operations', async () => {
    const r = await send(p.ports.outbound, { host: 'reviews', path: '/items/7', method: 'DELETE' });
    expect(r.headers['x-route']).toBe('regex');
    expect(JSON.parse(r.body).headers['x-added']).toBe('1');
  });
});

describe('request hygiene', () => {
  it('removes hop-by-hop headers, appends x-forwarded-*, keeps or generates x-request-id', async () => {
    const p = await meshWith(split(100, 0));
    const r = await send(p.ports.outbound, {
      host: 'reviews',
      headers: { connection: 'keep-alive, x-secret', 'x-secret': 's', 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'x', 'x-forwarded-for': '10.0.0.1', 'x-keep': 'yes' },
    });
    const h = JSON.parse(r.body).headers;
    expect(h['x-secret']).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    // TE is hop-by-hop, but Envoy keeps `te: trailers` (gRPC uses it to detect proxies that drop trailers).
    expect(h.te).toBe('trailers');
    const r3 = await send(p.ports.outbound, { host: 'reviews', headers: { te: 'gzip' } });
    expect(JSON.parse(r3.body).headers.te).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h['x-keep']).toBe('yes');
    expect(h['x-forwarded-for']).toBe('10.0.0.1, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const r2 = await send(p.ports.outbound, { host: 'reviews', headers: { 'x-request-id': 'abc-123' } });
    expect(JSON.parse(r2.body).headers['x-request-id']).toBe('abc-123');
  });

  it('strips x-envoy-* control headers from untrusted callers', async () => {
    const p = await meshWith(split(100, 0));
    const r = await send(p.ports.outbound, { host: 'reviews', headers: { 'x-envoy-retry-on': '5xx', 'x-envoy-upstream-rq-timeout-ms': '5' } });
    const h = JSON.parse(r.body).headers;
    expect(h['x-envoy-retry-on']).toBeUndefined();
    expect(h['x-envoy-upstream-rq-timeout-ms']).toBeUndefined();
    expect(h['x-envoy-attempt-count']).toBe('1');
  });
});
