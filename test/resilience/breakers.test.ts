// End to end through a real proxy: the circuit-breaking seed scenario, connect failures and
// timeouts, upstream resets before and after headers, and connection reuse under breakers.
import { afterAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { Fixtures, deadPort, send, stat, twoSubsetYaml } from '../helpers.ts';
import { C, HOST, blackhole, drive, rawGet, ratings, stats } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const OVERFLOW = 'upstream connect error or disconnect/reset before headers. reset reason: overflow';

describe('circuit breaking seed scenario (maxConnections 1, http1MaxPendingRequests 1)', () => {
  it('3 loops x 10 calls against a slow upstream: overflow 503s counted exactly, the host never ejected', async () => {
    const v1 = await fx.upstream((_q, res) => { setTimeout(() => res.end('v1'), 40); });
    const v2 = await fx.upstream((_q, res) => res.end('v2'));
    const p = await fx.proxy(twoSubsetYaml(HOST, { v1: v1.port, v2: v2.port }, `  trafficPolicy:
    connectionPool:
      tcp: { maxConnections: 1 }
      http: { http1MaxPendingRequests: 1, maxRequestsPerConnection: 1 }
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  http:
    - route: [{ destination: { host: ${HOST}, subset: v1 } }]
`));
    const replies = await drive(3, 10, () => send(p.ports.outbound, { host: 'ratings', path: '/ratings/0' }));
    expect(replies).toHaveLength(30);
    const over = replies.filter((r) => r.status === 503);
    const ok = replies.filter((r) => r.status === 200);
    expect(over.length).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThan(0);
    expect(over.length + ok.length).toBe(30);
    for (const r of over) {
      expect(r.headers['x-envoy-overloaded']).toBe('true');
      expect(r.headers['x-meshlet-flags']).toBe('UO');
      expect(r.body).toBe(OVERFLOW);
    }
    for (const r of ok) expect(r.body).toBe('v1');
    const v1c = `cluster.outbound|80|v1|${HOST};`;
    const s = await stats(p.ports.admin);
    expect(s.get(`${v1c}.upstream_rq_pending_overflow`)).toBe(over.length);
    expect(s.get(`${v1c}.upstream_cx_overflow`)).toBeGreaterThan(0);
    expect(s.get(`${v1c}.upstream_rq_pending_total`)).toBeGreaterThan(0);
    expect(s.get(`${v1c}.upstream_rq_503`)).toBe(over.length); // router replies are charged to the cluster
    // Current Envoy (>= 1.26) never feeds overflow to outlier detection, even at consecutive5xxErrors: 1.
    expect(s.get(`${v1c}.outlier_detection.ejections_detected_consecutive_5xx`)).toBe(0);
    expect(s.get(`${v1c}.outlier_detection.ejections_active`)).toBe(0);
    const clusters = (await send(p.ports.admin, { path: '/clusters' })).body;
    expect(clusters).toContain(`outbound|80|v1|${HOST}::127.0.0.1:${v1.port}::health_flags::healthy`);
    expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(200);
    // The other subset is its own cluster: untouched.
    expect(s.get(`cluster.outbound|80|v2|${HOST};.upstream_rq_total`)).toBe(0);
  });
});

describe('connection failures', () => {
  it("connect refused: 503 UF with Envoy's body; with Istio's default policy it is retried first (UF,URX)", async () => {
    const dead = await deadPort();
    const p = await fx.proxy(ratings([dead], { route: '      retries: { attempts: 0 }' }));
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused');
    expect(r.headers['x-meshlet-flags']).toBe('UF');
    expect(await stat(p.ports.admin, `${C}.upstream_cx_connect_fail`)).toBe(1);

    const q = await fx.proxy(ratings([dead])); // no VirtualService: Istio's default retry policy
    const d = await send(q.ports.outbound, { host: 'ratings' });
    expect(d.status).toBe(503);
    expect(d.body).toBe('upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused');
    expect(d.headers['x-meshlet-flags']).toBe('UF,URX');
    expect(await stat(q.ports.admin, `${C}.upstream_cx_connect_fail`)).toBe(3);
    expect(await stat(q.ports.admin, `${C}.upstream_rq_retry`)).toBe(2);
  });

  it('connect timeout: 503 UF connection timeout', async () => {
    const bh = await blackhole(4000);
    fx.add(() => bh.close());
    const p = await fx.proxy(ratings([bh.port], { route: '      retries: { attempts: 0 }', policy: '    connectionPool: { tcp: { connectTimeout: 250ms } }' }));
    const t0 = performance.now();
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(240);
    expect(r.status).toBe(503);
    expect(r.body).toBe('upstream connect error or disconnect/reset before headers. reset reason: connection timeout');
    expect(r.headers['x-meshlet-flags']).toBe('UF');
    expect(await stat(p.ports.admin, `${C}.upstream_cx_connect_timeout`)).toBe(1);
  });

  it('upstream closes before headers: 503 UC connection termination', async () => {
    const u = await fx.upstream((req) => req.socket.destroy());
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 0 }' }));
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('upstream connect error or disconnect/reset before headers. reset reason: connection termination');
    expect(r.headers['x-meshlet-flags']).toBe('UC');
  });

  it('upstream reset mid-body: the client sees a reset, never a complete response', async () => {
    const u = await fx.upstream((_q, res) => {
      res.writeHead(200, { 'content-length': '100000' });
      res.write(Buffer.alloc(1000, 97));
      setTimeout(() => res.socket?.destroy(), 30);
    });
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 3, retryOn: 5xx }' }));
    const r = await rawGet(p.ports.outbound, 'ratings');
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    expect(r.error).not.toBeNull();
    expect(r.bytes).toBeLessThan(100000);
    expect(u.hits).toBe(1); // headers were sent downstream: no retry
    expect(await stat(p.ports.admin, `${C}.upstream_cx_destroy_remote_with_active_rq`)).toBe(1);
  });

  it('responses with connection: close never hand their dying connection to a waiting request', async () => {
    const u = await fx.upstream((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => { res.setHeader('connection', 'close'); res.end('ok'); }, 5));
    });
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 0 }', policy: '    connectionPool: { tcp: { maxConnections: 1 } }' }));
    // POSTs: not replayable by the reused-connection retry, so a lost race would show as a 503.
    const replies = await drive(3, 8, () => send(p.ports.outbound, { host: 'ratings', method: 'POST', body: 'x'.repeat(100) }));
    expect(replies.map((r) => r.status)).toEqual(Array(24).fill(200));
  });

  it('x-envoy-attempt-count goes 1, 2, 3 across attempts', async () => {
    const seen: string[] = [];
    const u = await fx.upstream((req, res) => { seen.push(String(req.headers['x-envoy-attempt-count'])); res.statusCode = 503; res.end('no'); });
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 2, retryOn: 5xx }' }));
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(seen).toEqual(['1', '2', '3']);
  });
});

// A client that aborts mid-response is a downstream reset (DC): nothing may stay attached upstream.
describe('downstream reset', () => {
  it('a client that goes away mid-response is counted as DC, the pool keeps no leaked request', async () => {
    const u = await fx.upstream((_q, res) => { res.writeHead(200); res.write('a'); setTimeout(() => res.end('b'), 300); });
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 0 }' }));
    await new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port: p.ports.outbound, headers: { host: 'ratings' }, agent: false }, (res) => {
        res.once('data', () => { req.destroy(); resolve(); });
      });
      req.on('error', () => {});
      req.end();
    });
    const s = await stats(p.ports.admin);
    let active = s.get(`${C}.upstream_rq_active`);
    for (let i = 0; i < 20 && active !== 0; i++) { await new Promise((r) => setTimeout(r, 25)); active = (await stats(p.ports.admin)).get(`${C}.upstream_rq_active`); }
    expect(active).toBe(0);
    expect((await stats(p.ports.admin)).get('http.outbound.downstream_rq_rx_reset')).toBe(1);
  });
});
