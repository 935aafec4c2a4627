// Retries and timeouts, Envoy semantics, end to end.
import { afterAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { Fixtures, deadPort, send, stat } from '../helpers.ts';
import { Backoff } from '../../proxy/filters/retry.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());


function mesh(ports: number[], route: string, dr = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: s }
spec:
  hosts: [s]
  ports: [{ number: 80, name: http }]
  endpoints: [${ports.map((p) => `{ address: 127.0.0.1, ports: { http: ${p} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: s }
spec:
  host: s
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
${dr}
---
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

const C = 'cluster.outbound|80||s;';

describe('retries', () => {
  it('turn a flaky endpoint (every 2nd request 503) into 100 % success for GETs', async () => {
    let n = 0;
    const u = await fx.upstream((req, res) => { n++; res.setHeader('x-attempt', String(req.headers['x-envoy-attempt-count'])); res.statusCode = n % 2 === 0 ? 503 : 200; res.end('x'); });
    const p = await fx.proxy(mesh([u.port], '      retries: { attempts: 3, retryOn: 5xx }'));
    let retried = 0;
    for (let i = 0; i < 40; i++) {
      const r = await send(p.ports.outbound, { host: 's' });
      expect(r.status).toBe(200);
      if (r.headers['x-attempt'] === '2') retried++;
    }
    expect(retried).toBeGreaterThan(0);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_retry`)).toBe(retried);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_retry_success`)).toBe(retried);
    expect(await stat(p.ports.admin, `${C}.retry.upstream_rq_503`)).toBe(retried);
  });

  it('exhausted retries return the last response with URX', async () => {
    const u = await fx.upstream((_q, res) => { res.statusCode = 502; res.end('bad gateway'); });
    const p = await fx.proxy(mesh([u.port], '      retries: { attempts: 2, retryOn: gateway-error }'));
    const r = await send(p.ports.outbound, { host: 's' });
    expect(r.status).toBe(502);
    expect(r.body).toBe('bad gateway');
    expect(r.headers['x-meshlet-flags']).toBe('URX');
    expect(u.hits).toBe(3);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_retry_limit_exceeded`)).toBe(1);
  });

  it('the retry budget caps retries when every endpoint fails (UO, upstream_rq_retry_overflow)', async () => {
    const u = await fx.upstream((_q, res) => { res.statusCode = 503; res.end('down'); });
    const p = await fx.proxy(mesh([u.port], '      retries: { attempts: 5, retryOn: 5xx }'), { retryBudget: { ratio: 0.2, minPerSecond: 0 } });
    for (let i = 0; i < 50; i++) expect((await send(p.ports.outbound, { host: 's' })).status).toBe(503);
    const retries = (await stat(p.ports.admin, `${C}.upstream_rq_retry`))!;
    expect(retries).toBeLessThanOrEqual(10); // 20 % of 50 requests
    expect(await stat(p.ports.admin, `${C}.upstream_rq_retry_overflow`)).toBeGreaterThan(0);
    const r = await send(p.ports.outbound, { host: 's' });
    expect(String(r.headers['x-meshlet-flags'])).toContain('UO');
  });

  it('a POST whose connect fails is retried on another endpoint (Istio default policy: connect-failure)', async () => {
    const dead = await deadPort();
    const live = await fx.upstream((req, res) => { let n = 0; req.on('data', (c) => { n += c.length; }); req.on('end', () => res.end(String(n))); });
    const p = await fx.proxy(mesh([dead, live.port], ''));
    for (let i = 0; i < 4; i++) {
      const r = await send(p.ports.outbound, { host: 's', method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } });
      expect(r.status).toBe(200);
      expect(r.body).toBe('5');
    }
    expect(await stat(p.ports.admin, `${C}.upstream_cx_connect_fail`)).toBeGreaterThan(0);
  });

  it('a 2 MB streaming POST (over the 1 MiB buffer) is not retried after it was sent', async () => {
    let hits = 0;
    const u = await fx.upstream((req, res) => { hits++; req.resume(); req.on('end', () => { res.statusCode = 503; res.end('no'); }); });
    const p = await fx.proxy(mesh([u.port], '      retries: { attempts: 3, retryOn: 5xx }'));
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.ports.outbound, method: 'POST', agent: false, headers: { host: 's', 'transfer-encoding': 'chunked' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); });
      req.on('error', reject);
      for (let i = 0; i < 32; i++) req.write(Buffer.alloc(64 * 1024));
      req.end();
    });
    expect(status).toBe(503);
    expect(hits).toBe(1);
    expect(await stat(p.ports.admin, `${C}.retry_or_shadow_abandoned`)).toBe(1);
  });

  it('a small POST body is buffered and replayed on retry', async () => {
    let n = 0;
    const bodies: string[] = [];
    const u = await fx.upstream((req, res) => { let b = ''; req.on('data', (c) => { b += c; }); req.on('end', () => { bodies.push(b); n++; res.statusCode = n === 1 ? 503 : 200; res.end(b); }); });
    const p = await fx.proxy(mesh([u.port], '      retries: { attempts: 2, retryOn: 5xx }'));
    const r = await send(p.ports.outbound, { host: 's', method: 'POST', body: 'payload' });
    expect(r.status).toBe(200);
    expect(bodies).toEqual(['payload', 'payload']);
  });

  it('backoff follows the source formula: retry k waits in [0, 25 ms * 2^(k-1)), capped at 250 ms', () => {
    const b = new Backoff();
    const justUnder = () => 0.999999;
    expect([1, 2, 3, 4, 5, 6].map(() => b.next(justUnder))).toEqual([24, 49, 99, 199, 249, 249]);
  });
});

describe('timeouts', () => {
  it('route timeout 1 s against a 3 s upstream: 504 upstream request timeout, UT, after about 1 s', async () => {
    const u = await fx.upstream((req, res) => { const t = setTimeout(() => res.end('late'), 3000); req.on('close', () => clearTimeout(t)); res.on('close', () => clearTimeout(t)); });
    const p = await fx.proxy(mesh([u.port], '      timeout: 1s'));
    const t0 = Date.now();
    const r = await send(p.ports.outbound, { host: 's' });
    const took = Date.now() - t0;
    expect(r.status).toBe(504);
    expect(r.body).toBe('upstream request timeout');
    expect(r.headers['x-meshlet-flags']).toBe('UT');
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(2500);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_timeout`)).toBe(1);
  });

  it('perTryTimeout x attempts is bounded and each try carries x-envoy-expected-rq-timeout-ms', async () => {
    const seen: string[] = [];
    const u = await fx.upstream((req, res) => { seen.push(String(req.headers['x-envoy-expected-rq-timeout-ms'])); const t = setTimeout(() => res.end('late'), 2000); res.on('close', () => clearTimeout(t)); });
    const p = await fx.proxy(mesh([u.port], '      retries: { attempts: 2, perTryTimeout: 200ms, retryOn: 5xx }'));
    const t0 = Date.now();
    const r = await send(p.ports.outbound, { host: 's' });
    const took = Date.now() - t0;
    expect(r.status).toBe(504);
    expect(r.headers['x-meshlet-flags']).toBe('UT,URX');
    expect(seen).toEqual(['200', '200', '200']);
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(2000);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_per_try_timeout`)).toBe(3);
  });

  it('x-envoy-upstream-rq-timeout-ms is honoured only from trusted callers', async () => {
    const u = await fx.upstream((_req, res) => { const t = setTimeout(() => res.end('slow'), 600); res.on('close', () => clearTimeout(t)); });
    const untrusted = await fx.proxy(mesh([u.port], ''));
    expect((await send(untrusted.ports.outbound, { host: 's', headers: { 'x-envoy-upstream-rq-timeout-ms': '100' } })).status).toBe(200);
    const trusted = await fx.proxy(mesh([u.port], ''), { trustEnvoyHeaders: true });
    expect((await send(trusted.ports.outbound, { host: 's', headers: { 'x-envoy-upstream-rq-timeout-ms': '100' } })).status).toBe(504);
  });
});
