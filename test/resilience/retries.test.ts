// Retries end to end: flaky endpoints, URX, the maxRetries breaker and the retry budget (UO),
// body buffering for replay (1 MiB), connect-failure retries under Istio's default policy.
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { Fixtures, deadPort, send, type Reply } from '../helpers.ts';
import { C, ratings, stats } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

/** An upstream that reads the whole body, then answers `status(n)` for its nth request. */
function counting(status: (n: number) => number) {
  let n = 0;
  const bodies: number[] = [];
  const attempts: string[] = [];
  const up = fx.upstream((req, res) => {
    let len = 0;
    req.on('data', (c: Buffer) => { len += c.length; });
    req.on('end', () => {
      n++;
      bodies.push(len);
      attempts.push(String(req.headers['x-envoy-attempt-count']));
      res.statusCode = status(n);
      res.end(`n=${n} len=${len}`);
    });
  });
  return { up, bodies, attempts };
}

describe('retries', () => {
  it('turn an endpoint failing every 2nd request into 100 % success for GETs', async () => {
    const { up } = counting((n) => (n % 2 === 0 ? 503 : 200));
    const u = await up;
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 3, retryOn: 5xx }' }));
    const codes: number[] = [];
    for (let i = 0; i < 40; i++) codes.push((await send(p.ports.outbound, { host: 'ratings' })).status);
    expect(codes).toEqual(Array(40).fill(200));
    const s = await stats(p.ports.admin);
    const retries = u.hits - 40;
    expect(retries).toBeGreaterThan(0);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(retries);
    expect(s.get(`${C}.upstream_rq_retry_success`)).toBe(retries);
    expect(s.get(`${C}.retry.upstream_rq_503`)).toBe(retries);
    expect(s.get(`${C}.upstream_rq_retry_backoff_exponential`)).toBe(retries);
    expect(s.get(`${C}.upstream_rq_200`)).toBe(40);
  });

  it('retries exhausted: the last response with URX, not counted as a retry success', async () => {
    const { up, attempts } = counting(() => 503);
    const u = await up;
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 2, retryOn: 5xx }' }));
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('n=3 len=0');
    expect(r.headers['x-meshlet-flags']).toBe('URX');
    expect(attempts).toEqual(['1', '2', '3']);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry_limit_exceeded`)).toBe(1);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(2);
    expect(s.get(`${C}.upstream_rq_retry_success`)).toBe(0);
  });

  it('maxRetries bounds concurrent retries; one request holds one retry slot at a time', async () => {
    const { up } = counting(() => 503);
    const u = await up;
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 3, retryOn: 5xx }', policy: '    connectionPool: { http: { maxRetries: 1 } }' }),
      { retryBudget: { ratio: 1, minPerSecond: 100 } });
    // Alone, a request gets all 3 retries although the breaker allows 1 concurrent retry.
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.headers['x-meshlet-flags']).toBe('URX');
    expect(u.hits).toBe(4);
    let s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(0);
    expect(s.get(`${C}.circuit_breakers.default.rq_retry_open`)).toBe(0);
    // Two at once against a slow failing upstream: the second to fail finds the slot taken.
    const slow = await fx.upstream((_q, res) => { setTimeout(() => { res.statusCode = 503; res.end('slow'); }, 150); });
    const q = await fx.proxy(ratings([slow.port], { route: '      retries: { attempts: 3, retryOn: 5xx }', policy: '    connectionPool: { http: { maxRetries: 1 } }' }),
      { retryBudget: { ratio: 1, minPerSecond: 100 } });
    const both = await Promise.all([send(q.ports.outbound, { host: 'ratings' }), send(q.ports.outbound, { host: 'ratings' })]);
    const flags = both.map((x) => String(x.headers['x-meshlet-flags'])).sort();
    expect(both.map((x) => x.status)).toEqual([503, 503]);
    expect(flags).toEqual(['UO', 'URX']);
    s = await stats(q.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(1);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(3);
  });

  it('the retry budget caps retries when every endpoint fails: upstream_rq_retry_overflow and UO', async () => {
    const { up } = counting(() => 503);
    const u = await up;
    const u2 = await fx.upstream((_q, res) => { res.statusCode = 503; res.end('down'); });
    const p = await fx.proxy(ratings([u.port, u2.port], { route: '      retries: { attempts: 5, retryOn: 5xx }' }), { retryBudget: { ratio: 0.2, minPerSecond: 0 } });
    const replies: Reply[] = [];
    for (let i = 0; i < 50; i++) replies.push(await send(p.ports.outbound, { host: 'ratings' }));
    for (const r of replies) {
      expect(r.status).toBe(503);
      expect(r.headers['x-meshlet-flags']).toBe('UO');
      expect(r.headers['x-envoy-overloaded']).toBeUndefined(); // only breaker drops carry it
    }
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(10); // 20 % of 50 requests, no floor
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(50);
    expect(u.hits + u2.hits).toBe(60);
  });

  it('a small POST body is buffered and replayed on retry', async () => {
    const { up, bodies } = counting((n) => (n === 1 ? 503 : 200));
    const u = await up;
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 2, retryOn: 5xx }' }));
    const r = await send(p.ports.outbound, { host: 'ratings', method: 'POST', body: Buffer.alloc(100_000, 120) });
    expect(r.status).toBe(200);
    expect(bodies).toEqual([100_000, 100_000]);
  });

  it('a 2 MB streaming POST (over the 1 MiB buffer) is not retried after it was sent', async () => {
    const { up, bodies } = counting(() => 503);
    const u = await up;
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 3, retryOn: 5xx }' }));
    // Chunked, no content-length: the proxy buffers up to 1 MiB, then gives up replay and streams.
    const r = await new Promise<Reply>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: p.ports.outbound, method: 'POST', agent: false, headers: { host: 'ratings' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      const chunk = Buffer.alloc(64 * 1024, 121);
      for (let i = 0; i < 32; i++) req.write(chunk);
      req.end();
    });
    expect(r.status).toBe(503);
    expect(r.headers['x-meshlet-flags']).toBeUndefined();
    expect(bodies).toEqual([2 * 1024 * 1024]);
    // With content-length over the limit the body is streamed from the start.
    const r2 = await send(p.ports.outbound, { host: 'ratings', method: 'POST', body: Buffer.alloc(2_000_000, 122) });
    expect(r2.status).toBe(503);
    expect(bodies).toEqual([2 * 1024 * 1024, 2_000_000]);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(0);
    expect(s.get(`${C}.retry_or_shadow_abandoned`)).toBe(2);
  });

  it("a POST whose connect fails is retried on another endpoint by Istio's default policy (route without retries)", async () => {
    const dead = await deadPort();
    const { up, bodies, attempts } = counting(() => 200);
    const u = await up;
    const p = await fx.proxy(ratings([dead, u.port], { route: '' }));
    for (let i = 0; i < 4; i++) {
      const r = await send(p.ports.outbound, { host: 'ratings', method: 'POST', body: Buffer.alloc(3_000_000, 97) });
      expect(r.status).toBe(200);
    }
    expect(bodies).toEqual(Array(4).fill(3_000_000));
    expect(attempts).toContain('2');
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_cx_connect_fail`)).toBeGreaterThan(0);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(s.get(`${C}.upstream_cx_connect_fail`));
  });

  it("Istio's default policy does not retry a 503", async () => {
    const { up } = counting(() => 503);
    const u = await up;
    const p = await fx.proxy(ratings([u.port]));
    expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(503);
    expect(u.hits).toBe(1);
  });
});
