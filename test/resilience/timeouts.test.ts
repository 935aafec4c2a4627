// Route (global) and per-try timeouts end to end, the timeout headers sent upstream, and the
// x-envoy-upstream-rq-timeout-ms request header honoured only from trusted callers.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, send } from '../helpers.ts';
import { C, ratings, stats } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

/** An upstream that answers after `ms`, recording the timeout headers it was sent. */
async function slow(ms: number, status = 200) {
  const seen: Array<{ expected: string | undefined; attempt: string | undefined; override: string | undefined }> = [];
  const u = await fx.upstream((req, res) => {
    seen.push({
      expected: req.headers['x-envoy-expected-rq-timeout-ms'] as string | undefined,
      attempt: req.headers['x-envoy-attempt-count'] as string | undefined,
      override: req.headers['x-envoy-upstream-rq-timeout-ms'] as string | undefined,
    });
    const t = setTimeout(() => { res.statusCode = status; res.end('late'); }, ms);
    res.on('close', () => clearTimeout(t));
  });
  return { u, seen };
}

describe('timeouts', () => {
  it('route timeout 1 s against a 3 s upstream: 504 upstream request timeout, UT, after ~1 s', async () => {
    const { u, seen } = await slow(3000);
    const p = await fx.proxy(ratings([u.port], { route: '      timeout: 1s' }));
    const t0 = performance.now();
    const r = await send(p.ports.outbound, { host: 'ratings' });
    const dt = (performance.now() - t0) / 1000;
    expect(r.status).toBe(504);
    expect(r.body).toBe('upstream request timeout');
    expect(r.headers['x-meshlet-flags']).toBe('UT');
    expect(dt).toBeGreaterThanOrEqual(0.9);
    expect(dt).toBeLessThan(2.5);
    expect(seen).toEqual([{ expected: '1000', attempt: '1', override: undefined }]);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_timeout`)).toBe(1);
    expect(s.get(`${C}.upstream_rq_504`)).toBe(1);
  });

  it('perTryTimeout x attempts bounds the request; each try carries the per-try timeout', async () => {
    const { u, seen } = await slow(3000);
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 2, perTryTimeout: 200ms, retryOn: 5xx }' }));
    const t0 = performance.now();
    const r = await send(p.ports.outbound, { host: 'ratings' });
    const dt = (performance.now() - t0) / 1000;
    expect(r.status).toBe(504);
    expect(r.body).toBe('upstream request timeout');
    expect(r.headers['x-meshlet-flags']).toBe('UT,URX');
    expect(dt).toBeGreaterThanOrEqual(0.55); // 3 tries x 200 ms
    expect(dt).toBeLessThan(2.0); // plus at most 25 + 50 ms of backoff
    expect(seen.map((x) => [x.expected, x.attempt])).toEqual([['200', '1'], ['200', '2'], ['200', '3']]);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_per_try_timeout`)).toBe(3);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(2);
  });

  it("Istio's default retryOn does not retry a per-try timeout", async () => {
    const { u } = await slow(3000);
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 2, perTryTimeout: 200ms }' }));
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(504);
    expect(r.headers['x-meshlet-flags']).toBe('UT');
    expect(u.hits).toBe(1);
  });

  it('a per-try timeout at or above the route timeout is ignored; retries see what is left of the route timeout', async () => {
    const { u, seen } = await slow(150, 503);
    const p = await fx.proxy(ratings([u.port], { route: '      timeout: 1s\n      retries: { attempts: 1, perTryTimeout: 2s, retryOn: 5xx }' }));
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(seen[0].expected).toBe('1000');
    const second = Number(seen[1].expected);
    expect(second).toBeLessThan(1000 - 100); // the first try took ~150 ms of it
    expect(second).toBeGreaterThan(0);
  });

  it('x-envoy-upstream-rq-timeout-ms is honoured only with trustEnvoyHeaders, and never forwarded', async () => {
    const { u, seen } = await slow(700);
    const yaml = ratings([u.port], { route: '' });
    const untrusted = await fx.proxy(yaml);
    const r1 = await send(untrusted.ports.outbound, { host: 'ratings', headers: { 'x-envoy-upstream-rq-timeout-ms': '200' } });
    expect(r1.status).toBe(200);
    expect(seen[0]).toEqual({ expected: undefined, attempt: '1', override: undefined });

    const trusted = await fx.proxy(yaml, { trustEnvoyHeaders: true });
    const t0 = performance.now();
    const r2 = await send(trusted.ports.outbound, { host: 'ratings', headers: { 'x-envoy-upstream-rq-timeout-ms': '200' } });
    const dt = performance.now() - t0;
    expect(r2.status).toBe(504);
    expect(r2.headers['x-meshlet-flags']).toBe('UT');
    expect(dt).toBeGreaterThanOrEqual(190);
    expect(dt).toBeLessThan(650);
    expect(seen[1]).toEqual({ expected: '200', attempt: '1', override: undefined });
  });
});
