// The seed scenarios for Envoy-exact breakers and ejection (KubeSphere / Istio tasks), end to end.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, send, stat } from '../helpers.ts';

const HOST = 'ratings.default.svc.cluster.local';
const fx = new Fixtures();
afterAll(() => fx.closeAll());


function mesh(ports: number[], policy: string): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  ports: [{ number: 9080, name: http }]
  endpoints: [${ports.map((p) => `{ address: 127.0.0.1, ports: { http: ${p} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  trafficPolicy:
${policy}
`;
}


const C = `cluster.outbound|9080||${HOST};`;

describe('circuit breaking (maxConnections 1, http1MaxPendingRequests 1)', () => {
  it('3 concurrent loops x 10 calls against a slow upstream: overflow 503s, counted exactly, never ejecting', async () => {
    const u = await fx.upstream((_req, res) => { setTimeout(() => res.end('ok'), 30); });
    const p = await fx.proxy(mesh([u.port], `    connectionPool:
      tcp: { maxConnections: 1 }
      http: { http1MaxPendingRequests: 1 }
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100 }`));
    const codes: number[] = [];
    let overloaded = 0;
    const loop = async () => {
      for (let i = 0; i < 10; i++) {
        const r = await send(p.ports.outbound, { host: 'ratings', path: '/ratings/0' });
        codes.push(r.status);
        if (r.status === 503) {
          expect(r.headers['x-envoy-overloaded']).toBe('true');
          expect(r.headers['x-meshlet-flags']).toBe('UO');
          expect(r.body).toBe('upstream connect error or disconnect/reset before headers. reset reason: overflow');
          overloaded++;
        } else expect(r.status).toBe(200);
      }
    };
    await Promise.all([loop(), loop(), loop()]);
    expect(codes.length).toBe(30);
    expect(overloaded).toBeGreaterThan(0);
    expect(codes.filter((c) => c === 200).length).toBeGreaterThan(0);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_pending_overflow`)).toBe(overloaded);
    expect(await stat(p.ports.admin, `${C}.upstream_cx_overflow`)).toBeGreaterThan(0);
    expect(await stat(p.ports.admin, `${C}.upstream_rq_pending_total`)).toBeGreaterThan(0);
    expect(await stat(p.ports.admin, `${C}.upstream_cx_total`)).toBe(1);
    // Current Envoy (>= 1.26) never feeds overflow to outlier detection: the host stays in.
    expect(await stat(p.ports.admin, `${C}.outlier_detection.ejections_enforced_total`)).toBe(0);
    expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(200);
  });
});

describe('outlier detection (consecutive 5xx)', () => {
  const policy = (pct: string) => `    outlierDetection: { consecutive5xxErrors: 5, interval: 200ms, baseEjectionTime: 1s${pct} }
    loadBalancer: { simple: ROUND_ROBIN }`;

  it('ejects the failing endpoint after 5 consecutive 5xx, sends it nothing, and returns it after the ejection time', async () => {
    const good1 = await fx.upstream((_q, r) => r.end('g1'));
    const good2 = await fx.upstream((_q, r) => r.end('g2'));
    const bad = await fx.upstream((_q, r) => { r.statusCode = 503; r.end('bad'); });
    const p = await fx.proxy(mesh([good1.port, good2.port, bad.port], policy(', maxEjectionPercent: 100')));
    let fails = 0;
    for (let i = 0; i < 15; i++) if ((await send(p.ports.outbound, { host: 'ratings' })).status === 503) fails++;
    expect(fails).toBe(5); // round robin: every third hit the bad host until its 5th error
    expect(await stat(p.ports.admin, `${C}.outlier_detection.ejections_active`)).toBe(1);
    expect(await stat(p.ports.admin, `${C}.outlier_detection.ejections_enforced_consecutive_5xx`)).toBe(1);
    const clusters = (await send(p.ports.admin, { path: '/clusters' })).body;
    expect(clusters).toContain(`outbound|9080||${HOST}::127.0.0.1:${bad.port}::health_flags::/failed_outlier_check`);
    const hitsBefore = bad.hits;
    for (let i = 0; i < 20; i++) expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(200);
    expect(bad.hits).toBe(hitsBefore);
    // Back after baseEjectionTime (1 s), on an interval tick.
    await new Promise((r) => setTimeout(r, 1400));
    expect(await stat(p.ports.admin, `${C}.outlier_detection.ejections_active`)).toBe(0);
    for (let i = 0; i < 6; i++) await send(p.ports.outbound, { host: 'ratings' });
    expect(bad.hits).toBeGreaterThan(hitsBefore);
  });

  it('with the default maxEjectionPercent (10 %) a 3-endpoint cluster never ejects', async () => {
    const good = await fx.upstream((_q, r) => r.end('g'));
    const bad = await fx.upstream((_q, r) => { r.statusCode = 503; r.end('bad'); });
    const good2 = await fx.upstream((_q, r) => r.end('g'));
    const p = await fx.proxy(mesh([good.port, bad.port, good2.port], policy('')));
    for (let i = 0; i < 30; i++) await send(p.ports.outbound, { host: 'ratings' });
    expect(await stat(p.ports.admin, `${C}.outlier_detection.ejections_active`)).toBe(0);
    expect(await stat(p.ports.admin, `${C}.outlier_detection.ejections_overflow`)).toBeGreaterThan(0);
  });

  it('every endpoint ejected with minHealthPercent 0: 503 no healthy upstream, UH', async () => {
    const bad1 = await fx.upstream((_q, r) => { r.statusCode = 500; r.end('x'); });
    const bad2 = await fx.upstream((_q, r) => { r.statusCode = 500; r.end('x'); });
    const p = await fx.proxy(mesh([bad1.port, bad2.port], `    outlierDetection: { consecutive5xxErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100 }
    loadBalancer: { simple: ROUND_ROBIN }`));
    for (let i = 0; i < 4; i++) await send(p.ports.outbound, { host: 'ratings' });
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('no healthy upstream');
    expect(r.headers['x-meshlet-flags']).toBe('UH');
  });
});
