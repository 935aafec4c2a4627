// Outlier detection end to end: ejection after N consecutive 5xx, nothing sent while ejected,
// return after baseEjectionTime on an interval tick, the 10 % default, UH and panic mode.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, deadPort, send } from '../helpers.ts';
import { C, HOST, ratings, stats, until } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const ok = (name: string) => fx.upstream((_q, r) => r.end(name));
const failing = (status: number) => fx.upstream((_q, r) => { r.statusCode = status; r.end('bad'); });

describe('outlier detection (consecutive 5xx)', () => {
  it('ejects the failing endpoint at its 5th consecutive 5xx, sends it nothing while ejected, returns it after ~1 s', async () => {
    const g1 = await ok('g1'), g2 = await ok('g2'), bad = await failing(503);
    const p = await fx.proxy(ratings([g1.port, g2.port, bad.port], {
      policy: '    outlierDetection: { consecutive5xxErrors: 5, interval: 100ms, baseEjectionTime: 1s, maxEjectionPercent: 100 }',
    }));
    const codes: number[] = [];
    for (let i = 0; i < 15; i++) codes.push((await send(p.ports.outbound, { host: 'ratings' })).status);
    const ejectedAt = performance.now();
    expect(codes.filter((c) => c === 503)).toHaveLength(5); // round robin: every third, the 5th still returned
    expect(bad.hits).toBe(5);
    let s = await stats(p.ports.admin);
    expect(s.get(`${C}.outlier_detection.ejections_active`)).toBe(1);
    expect(s.get(`${C}.outlier_detection.ejections_enforced_consecutive_5xx`)).toBe(1);
    expect(s.get(`${C}.outlier_detection.ejections_detected_consecutive_5xx`)).toBe(1);
    expect(s.get(`${C}.membership_healthy`)).toBe(2);
    const clusters = (await send(p.ports.admin, { path: '/clusters' })).body;
    expect(clusters).toContain(`outbound|9080||${HOST}::127.0.0.1:${bad.port}::health_flags::/failed_outlier_check`);
    expect(clusters).toContain(`outbound|9080||${HOST}::127.0.0.1:${g1.port}::health_flags::healthy`);
    for (let i = 0; i < 20; i++) expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(200);
    expect(bad.hits).toBe(5);
    const back = await until(async () => (await stats(p.ports.admin)).get(`${C}.outlier_detection.ejections_active`) === 0, 3000);
    expect(back).toBe(true);
    const elapsed = performance.now() - ejectedAt;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(2500);
    s = await stats(p.ports.admin);
    expect(s.get(`${C}.membership_healthy`)).toBe(3);
    for (let i = 0; i < 6; i++) await send(p.ports.outbound, { host: 'ratings' });
    expect(bad.hits).toBeGreaterThan(5);
  });

  it('with the default maxEjectionPercent (10 %) a 3-endpoint cluster ejects nothing (ejections_overflow)', async () => {
    const g1 = await ok('g1'), bad = await failing(503), g2 = await ok('g2');
    const p = await fx.proxy(ratings([g1.port, bad.port, g2.port], {
      policy: '    outlierDetection: { consecutive5xxErrors: 5, interval: 100ms, baseEjectionTime: 1s }',
    }));
    for (let i = 0; i < 30; i++) await send(p.ports.outbound, { host: 'ratings' });
    const s = await stats(p.ports.admin);
    expect(bad.hits).toBe(10); // never taken out of rotation
    expect(s.get(`${C}.outlier_detection.ejections_active`)).toBe(0);
    expect(s.get(`${C}.outlier_detection.ejections_detected_consecutive_5xx`)).toBe(2);
    // 503 is also a gateway error: Istio's unenforced gateway detection fires at 5 too, and the
    // percentage check (before enforcement, as Envoy's ejectHost) refuses it as well.
    expect(s.get(`${C}.outlier_detection.ejections_detected_consecutive_gateway_failure`)).toBe(2);
    expect(s.get(`${C}.outlier_detection.ejections_overflow`)).toBe(4);
    expect(s.get(`${C}.outlier_detection.ejections_enforced_total`)).toBe(0);
  });

  it('every endpoint ejected with minHealthPercent 0 (Istio default): 503 no healthy upstream, UH', async () => {
    const b1 = await failing(500), b2 = await failing(500);
    const p = await fx.proxy(ratings([b1.port, b2.port], {
      policy: '    outlierDetection: { consecutive5xxErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100 }',
    }));
    for (let i = 0; i < 4; i++) expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(500);
    const r = await send(p.ports.outbound, { host: 'ratings' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('no healthy upstream');
    expect(r.headers['x-meshlet-flags']).toBe('UH');
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_cx_none_healthy`)).toBe(1);
    expect(s.get(`${C}.outlier_detection.ejections_active`)).toBe(2);
    expect(b1.hits + b2.hits).toBe(4);
  });

  it('minHealthPercent above the healthy share: panic, traffic still reaches ejected hosts', async () => {
    const b1 = await failing(500), b2 = await failing(500);
    const p = await fx.proxy(ratings([b1.port, b2.port], {
      policy: '    outlierDetection: { consecutive5xxErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 60 }',
    }));
    for (let i = 0; i < 10; i++) {
      const r = await send(p.ports.outbound, { host: 'ratings' });
      expect(r.status).toBe(500);
      expect(r.body).toBe('bad');
    }
    expect((await stats(p.ports.admin)).get(`${C}.outlier_detection.ejections_active`)).toBe(2);
    expect(b1.hits + b2.hits).toBe(10);
  });

  it('connect failures count as 5xx for ejection (local origin, not split)', async () => {
    const dead = await deadPort();
    const g = await ok('g');
    const p = await fx.proxy(ratings([dead, g.port], {
      route: '      retries: { attempts: 0 }',
      policy: '    outlierDetection: { consecutive5xxErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50 }',
    }));
    // After a failed connect the balancer passes the dead host over for 100 ms (then 200 ms):
    // requests in between go to the live one, and the next probe is the second failure.
    const codes: number[] = [];
    const deadline = performance.now() + 3000;
    while (codes.filter((c) => c === 503).length < 2 && performance.now() < deadline) {
      codes.push((await send(p.ports.outbound, { host: 'ratings' })).status);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(codes.filter((c) => c === 503)).toHaveLength(2);
    expect((await stats(p.ports.admin)).get(`${C}.outlier_detection.ejections_enforced_consecutive_5xx`)).toBe(1);
    // Ejected now: even after the backoff has expired, nothing more goes to the dead host.
    await new Promise((r) => setTimeout(r, 250));
    for (let i = 0; i < 8; i++) expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(200);
  });
});
