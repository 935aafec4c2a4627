// Envoy's statistical outlier detection (proxy/upstream/outlier.ts): success rate on Envoy's own
// test vector, failure percentage, the minimum-hosts and request-volume gates, meshlet's
// success-rate floor, max ejection time; then end to end through a proxy: the DestinationRule
// extension block, ejection of a host answering 50 % 5xx, and /clusters' success_rate and
// threshold. The detector's ticks are driven by hand in the unit cases (no timers, no timing).
import { afterAll, describe, expect, it } from 'vitest';
import { OutlierDetector, newHostOutlierState, successRateThreshold, type HostOutlierState } from '../../proxy/upstream/outlier.ts';
import { newClusterStats } from '../../proxy/telemetry/stats.ts';
import type { OutlierSpec } from '../../proxy/config/schema.ts';
import { Fixtures, send, snapshotFromYaml } from '../helpers.ts';
import { C, HOST, stats, until } from './lib.ts';
import { seeded } from './lb-lib.ts';

const base: OutlierSpec = {
  consecutive5xx: 0, consecutiveGatewayErrors: 5, enforceGateway: false, consecutiveLocalOriginFailures: 0,
  splitExternalLocalOriginErrors: false, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 0,
};

/** A detector over `n` hosts (its timer stopped: ticks by hand) and a way to feed an interval. */
function setup(n: number, spec: Partial<OutlierSpec>) {
  const hosts: HostOutlierState[] = Array.from({ length: n }, () => newHostOutlierState());
  const stats = newClusterStats();
  stats.membership_healthy = n;
  const d = new OutlierDetector({ ...base, ...spec }, stats, () => hosts);
  d.stop();
  let t = 0;
  d.now = () => t;
  d.random = seeded(1);
  /** One interval: host i answers `volume[i]` requests of which `ok[i]` are 2xx, then the tick. */
  const interval = (volume: number[], ok: number[]) => {
    hosts.forEach((h, i) => {
      // Interleaved so that no run of 5xx is long (the consecutive detector is off anyway).
      for (let k = 0; k < volume[i]; k++) d.onStatus(h, k < ok[i] ? 200 : 503);
    });
    t += spec.intervalMs ?? 10_000;
    d.tick();
  };
  return { hosts, stats, d, interval, advance: (ms: number) => { t += ms; } };
}

describe('success rate (Envoy successRateEjectionThreshold)', () => {
  it("Envoy's vector {50, 100, 100, 100, 100}: mean 90, threshold 52, the 50 % host ejected", () => {
    const r = successRateThreshold([50, 100, 100, 100, 100], 1900);
    expect(r.mean).toBe(90);
    expect(r.threshold).toBeCloseTo(52, 9);
    const { hosts, stats, d, interval } = setup(5, { successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 } });
    interval([100, 100, 100, 100, 100], [50, 100, 100, 100, 100]);
    expect(d.srAverage).toBe(90);
    expect(d.srThreshold).toBeCloseTo(52, 9);
    expect(hosts.map((h) => h.ejected)).toEqual([true, false, false, false, false]);
    expect(hosts.map((h) => h.successRate)).toEqual([50, 100, 100, 100, 100]);
    expect(stats['outlier_detection.ejections_detected_success_rate']).toBe(1);
    expect(stats['outlier_detection.ejections_enforced_success_rate']).toBe(1);
    expect(stats['outlier_detection.ejections_active']).toBe(1);
    // Next interval: the ejected host is left out of the statistics; with 4 hosts, too few.
    interval([0, 100, 100, 100, 100], [0, 100, 100, 100, 100]);
    expect(d.srThreshold).toBe(-1);
  });

  it('with fewer than minimum_hosts hosts of enough volume nothing is ejected and the threshold is -1', () => {
    const sr = { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 };
    let s = setup(4, { successRate: sr });
    s.interval([100, 100, 100, 100], [0, 100, 100, 100]);
    expect(s.hosts.some((h) => h.ejected)).toBe(false);
    expect(s.d.srThreshold).toBe(-1);
    // Five hosts, but one below request_volume (99): still only four count.
    s = setup(5, { successRate: sr });
    s.interval([100, 100, 100, 100, 99], [0, 100, 100, 100, 99]);
    expect(s.hosts.some((h) => h.ejected)).toBe(false);
    expect(s.d.srThreshold).toBe(-1);
    expect(s.hosts[4].successRate).toBe(100); // 99 requests >= min(100, 50): shown in /clusters
  });

  it("Istio's fields alone: computed (for /clusters) but not enforced — detected, never ejected", () => {
    const { hosts, stats, d, interval } = setup(5, {});
    interval([100, 100, 100, 100, 100], [50, 100, 100, 100, 100]);
    expect(d.srThreshold).toBeCloseTo(52, 9);
    expect(hosts.some((h) => h.ejected)).toBe(false);
    expect(stats['outlier_detection.ejections_detected_success_rate']).toBe(1);
    expect(stats['outlier_detection.ejections_enforced_success_rate']).toBe(0);
  });

  it('enforcing 50 %: about half of the detections eject (seeded)', () => {
    let ejected = 0;
    for (let i = 0; i < 200; i++) {
      const { hosts, interval, d } = setup(5, { successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 50 } });
      d.random = seeded(1000 + i);
      interval([100, 100, 100, 100, 100], [50, 100, 100, 100, 100]);
      if (hosts[0].ejected) ejected++;
    }
    expect(ejected).toBeGreaterThan(70);
    expect(ejected).toBeLessThan(130);
  });

  it("the floor: a 99.9 % host among 100 % hosts is an outlier by Envoy's rule, and stays in with successRateFloor 99", () => {
    const sr = { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 };
    const vol = [1000, 1000, 1000, 1000, 1000], ok = [999, 1000, 1000, 1000, 1000];
    const plain = setup(5, { successRate: sr });
    plain.interval(vol, ok);
    expect(plain.hosts[0].ejected).toBe(true); // threshold 99.98 − 1.9 × 0.04 = 99.904 > 99.9
    const floored = setup(5, { successRate: sr, successRateFloor: 99 });
    floored.interval(vol, ok);
    expect(floored.d.srThreshold).toBeCloseTo(99.904, 6);
    expect(floored.hosts[0].ejected).toBe(false);
    // Below the floor the rule applies again.
    const low = setup(5, { successRate: sr, successRateFloor: 99 });
    low.interval(vol, [900, 1000, 1000, 1000, 1000]);
    expect(low.hosts[0].ejected).toBe(true);
  });
});

describe('failure percentage', () => {
  const fp = { threshold: 85, minimumHosts: 5, requestVolume: 50, enforcing: 100 };
  it('a host at ≥ 85 % failures with ≥ 50 requests is ejected, among ≥ 5 such hosts', () => {
    const { hosts, stats, interval } = setup(5, { failurePercentage: fp });
    interval([50, 50, 50, 50, 50], [7, 50, 50, 50, 50]); // 86 % failed
    expect(hosts.map((h) => h.ejected)).toEqual([true, false, false, false, false]);
    expect(stats['outlier_detection.ejections_enforced_failure_percentage']).toBe(1);
  });

  it('84 % failed, 49 requests, or 4 hosts: nothing; the default (no block) detects without enforcing', () => {
    let s = setup(5, { failurePercentage: fp });
    s.interval([50, 50, 50, 50, 50], [8, 50, 50, 50, 50]); // 84 %
    expect(s.hosts.some((h) => h.ejected)).toBe(false);
    s = setup(5, { failurePercentage: fp });
    s.interval([49, 50, 50, 50, 50], [0, 50, 50, 50, 50]);
    expect(s.hosts.some((h) => h.ejected)).toBe(false);
    s = setup(4, { failurePercentage: fp });
    s.interval([50, 50, 50, 50], [0, 50, 50, 50]);
    expect(s.hosts.some((h) => h.ejected)).toBe(false);
    s = setup(5, {});
    s.interval([50, 50, 50, 50, 50], [0, 50, 50, 50, 50]);
    expect(s.hosts.some((h) => h.ejected)).toBe(false);
    expect(s.stats['outlier_detection.ejections_detected_failure_percentage']).toBe(1);
  });
});

describe('ejection time', () => {
  it('base × ejections, capped at max_ejection_time; statistical ejections use the same multiplier', () => {
    const fp = { threshold: 85, minimumHosts: 5, requestVolume: 50, enforcing: 100 };
    const { hosts, d, interval } = setup(5, { failurePercentage: fp, consecutive5xx: 5, intervalMs: 1000, baseEjectionTimeMs: 10_000, maxEjectionTimeMs: 15_000 });
    const healthy = [0, 50, 50, 50, 50];
    // First ejection by failure percentage (49 failures then one success: no run of 5xx reaches... a run does: use 5xx-free spacing).
    for (let k = 0; k < 50; k++) d.onStatus(hosts[0], k % 4 === 0 ? 200 : 503); // 75 % failed: not enough
    for (let k = 0; k < 4; k++) d.onStatus(hosts[0], 503);
    expect(hosts[0].ejected).toBe(true); // the consecutive run ejected it (5 in a row)
    expect(d.returnsAt(hosts[0]) - hosts[0].ejectedAt).toBe(10_000);
    for (let i = 0; i < 12 && hosts[0].ejected; i++) interval(healthy, healthy);
    expect(hosts[0].ejected).toBe(false);
    // At once again, before a healthy interval could decay it: 2 × 10 s, capped at 15 s.
    for (let k = 0; k < 5; k++) d.onStatus(hosts[0], 503);
    expect(hosts[0].ejected).toBe(true);
    expect(hosts[0].multiplier).toBe(2);
    expect(d.returnsAt(hosts[0]) - hosts[0].ejectedAt).toBe(15_000);
  });
});

describe('end to end: the DestinationRule extension block and /clusters', () => {
  const fx = new Fixtures();
  afterAll(() => fx.closeAll());

  it('meshlet.successRate ejects the host answering 50 % 5xx; /clusters shows success_rate and the threshold', async () => {
    const ups = [];
    for (let i = 0; i < 4; i++) ups.push(await fx.upstream((_q, r) => r.end('ok')));
    let n = 0;
    const flaky = await fx.upstream((_q, r) => { r.statusCode = n++ % 2 === 0 ? 500 : 200; r.end('x'); });
    const ports = [...ups.map((u) => u.port), flaky.port];
    const p = await fx.proxy(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  ports: [{ number: 9080, name: http }]
  endpoints: [${ports.map((x) => `{ address: 127.0.0.1, ports: { http: ${x} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    outlierDetection:
      consecutive5xxErrors: 0
      interval: 2s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
      meshlet:
        successRate: { requestVolume: 10 }
`);
    // Round robin: each host gets a fifth; 100 requests = 20 each, inside one or two intervals.
    for (let i = 0; i < 100; i++) await send(p.ports.outbound, { host: 'ratings' });
    // The tick that ejects it leaves its statistics in /clusters until the next one (2 s later):
    // 4 hosts at 100 %, one at ~50 % -> average ~90, threshold ~52, as Envoy's vector.
    const c = `outbound|9080||${HOST}`;
    let text = '';
    const seen = await until(async () => {
      // Traffic keeps flowing (an interval split in two may leave a host below the volume).
      if (!text.includes('/failed_outlier_check')) for (let i = 0; i < 10; i++) await send(p.ports.outbound, { host: 'ratings' });
      text = (await send(p.ports.admin, { path: '/clusters' })).body;
      return text.includes(`${c}::127.0.0.1:${flaky.port}::health_flags::/failed_outlier_check`);
    }, 8000);
    expect(seen).toBe(true);
    // The flaky host answered about half 5xx in that interval (exactly 50 % only for an even count).
    const rates = ports.map((x) => Number(new RegExp(`::127\\.0\\.0\\.1:${x}::success_rate::([-\\d.]+)\n`).exec(text)![1]));
    expect(rates.slice(0, 4)).toEqual([100, 100, 100, 100]);
    expect(rates[4]).toBeGreaterThan(35);
    expect(rates[4]).toBeLessThan(65);
    const { mean, threshold } = successRateThreshold(rates, 1900);
    const shown = (k: string) => Number(new RegExp(`${k}::([-\\d.]+)\n`).exec(text)![1]);
    expect(shown('::outlier::success_rate_average')).toBeCloseTo(mean, 2);
    expect(shown('::outlier::success_rate_ejection_threshold')).toBeCloseTo(threshold, 2);
    expect(threshold).toBeGreaterThan(rates[4]);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.outlier_detection.ejections_active`)).toBe(1);
    expect(s.get(`${C}.outlier_detection.ejections_enforced_success_rate`)).toBe(1);
    // Later intervals: the ejected host is left out, 4 < minimum_hosts -> -1, as Envoy.
    const minus = await until(async () => (await send(p.ports.admin, { path: '/clusters' })).body.includes(`${c}::outlier::success_rate_ejection_threshold::-1\n`), 8000);
    expect(minus).toBe(true);
  });

  it('config: the extension compiles to Envoy defaults per field; maxEjectionTime below baseEjectionTime is refused', () => {
    const se = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec: { hosts: [${HOST}], ports: [{ number: 9080, name: http }], endpoints: [{ address: 127.0.0.1 }] }
---
`;
    const dr = (od: string) => `${se}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec: { host: ${HOST}, trafficPolicy: { outlierDetection: ${od} } }
`;
    const snap = snapshotFromYaml(dr('{ meshlet: { successRate: {}, failurePercentage: { threshold: 60 }, maxEjectionTime: 60s, successRateFloor: 99.5 } }'));
    const o = snap.clusters[0].outlier!;
    expect(o.successRate).toEqual({ minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 });
    expect(o.failurePercentage).toEqual({ threshold: 60, minimumHosts: 5, requestVolume: 50, enforcing: 100 });
    expect(o.maxEjectionTimeMs).toBe(60_000);
    expect(o.successRateFloor).toBe(99.5);
    expect(snapshotFromYaml(dr('{ interval: 1s }')).clusters[0].outlier!.successRate).toBeUndefined();
    expect(() => snapshotFromYaml(dr('{ baseEjectionTime: 60s, meshlet: { maxEjectionTime: 10s } }'))).toThrow(/maxEjectionTime: 10s is below baseEjectionTime/);
    expect(() => snapshotFromYaml(dr('{ meshlet: { successRate: { stdev: 1 } } }'))).toThrow(/stdev/);
  });
});
