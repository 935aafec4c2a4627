// Unit tests of the pure pieces: outlier detection (fake clock, manual ticks), Envoy's backoff,
// the retry budget, retry_on acceptance and fault rolls.
import { describe, expect, it } from 'vitest';
import { OutlierDetector, newHostOutlierState, type HostOutlierState } from '../../proxy/upstream/outlier.ts';
import { newClusterStats, type ClusterStats } from '../../proxy/telemetry/stats.ts';
import type { OutlierSpec } from '../../proxy/config/schema.ts';
import { Backoff, RetryBudget, accepts, policyFrom } from '../../proxy/filters/retry/index.ts';
import { rollFault } from '../../proxy/filters/fault/config.ts';
import { ISTIO_DEFAULT_RETRY } from '../../proxy/config/compile.ts';

function detector(n: number, spec: Partial<OutlierSpec> = {}): { d: OutlierDetector; hosts: HostOutlierState[]; s: ClusterStats; clock: { t: number } } {
  const full: OutlierSpec = {
    consecutive5xx: 5, consecutiveGatewayErrors: 5, enforceGateway: false, consecutiveLocalOriginFailures: 0,
    splitExternalLocalOriginErrors: false, intervalMs: 100, baseEjectionTimeMs: 1000, maxEjectionPercent: 100, minHealthPercent: 0, ...spec,
  };
  const hosts = Array.from({ length: n }, newHostOutlierState);
  const s = newClusterStats();
  s.membership_healthy = n;
  const d = new OutlierDetector(full, s, () => hosts);
  d.stop(); // ticks are driven by the test
  const clock = { t: 0 };
  d.now = () => clock.t;
  return { d, hosts, s, clock };
}

describe('OutlierDetector', () => {
  it('ejects exactly at the Nth consecutive 5xx (++n == threshold); a success in between resets', () => {
    const { d, hosts: [h], s } = detector(4, { consecutive5xx: 3 });
    d.onStatus(h, 500); d.onStatus(h, 503);
    d.onStatus(h, 200); // resets
    d.onStatus(h, 500); d.onStatus(h, 500);
    expect(h.ejected).toBe(false);
    d.onStatus(h, 500);
    expect(h.ejected).toBe(true);
    expect(s['outlier_detection.ejections_detected_consecutive_5xx']).toBe(1);
    expect(s['outlier_detection.ejections_enforced_consecutive_5xx']).toBe(1);
    expect(s['outlier_detection.ejections_enforced_total']).toBe(1);
    expect(s['outlier_detection.ejections_consecutive_5xx']).toBe(1);
    expect(s['outlier_detection.ejections_active']).toBe(1);
    expect(s.membership_healthy).toBe(3);
    expect(h.consecutive5xx).toBe(0); // reset after the decision
  });

  it('ignores errors of an already ejected host: no new detection, its counter keeps running', () => {
    const { d, hosts: [h], s } = detector(2, { consecutive5xx: 2 });
    d.onStatus(h, 500); d.onStatus(h, 500);
    expect(h.ejected).toBe(true);
    for (let i = 0; i < 5; i++) d.onStatus(h, 500);
    expect(s['outlier_detection.ejections_detected_consecutive_5xx']).toBe(1);
    expect(h.consecutive5xx).toBe(5);
    expect(s['outlier_detection.ejections_active']).toBe(1);
  });

  it('ejection time grows with the multiplier, un-ejection waits for a tick, and the multiplier decays per interval', () => {
    const { d, hosts: [h], s, clock } = detector(2, { consecutive5xx: 1, baseEjectionTimeMs: 1000, intervalMs: 100 });
    d.onStatus(h, 500);
    expect(h.multiplier).toBe(1);
    clock.t = 999; d.tick();
    expect(h.ejected).toBe(true);
    clock.t = 1000; d.tick();
    expect(h.ejected).toBe(false);
    expect(s['outlier_detection.ejections_active']).toBe(0);
    expect(s.membership_healthy).toBe(2);
    // Ejected again at once: twice the base.
    d.onStatus(h, 500);
    expect(h.multiplier).toBe(2);
    expect(d.returnsAt(h) - h.ejectedAt).toBe(2000);
    clock.t = 2999; d.tick();
    expect(h.ejected).toBe(true);
    clock.t = 3000; d.tick();
    expect(h.ejected).toBe(false);
    // Decay: one step per tick once an interval has passed since the un-ejection, floor 0.
    clock.t = 3050; d.tick();
    expect(h.multiplier).toBe(2);
    clock.t = 3100; d.tick();
    expect(h.multiplier).toBe(1);
    clock.t = 3200; d.tick();
    expect(h.multiplier).toBe(0);
    clock.t = 3300; d.tick();
    expect(h.multiplier).toBe(0);
    d.onStatus(h, 500);
    expect(d.returnsAt(h) - h.ejectedAt).toBe(1000);
  });

  it('caps the ejection time at max(300 s, base) and stops growing the multiplier', () => {
    const { d, hosts: [h], clock } = detector(2, { consecutive5xx: 1, baseEjectionTimeMs: 200_000, intervalMs: 100 });
    const durations: number[] = [];
    for (let i = 0; i < 4; i++) {
      d.onStatus(h, 500);
      durations.push(d.returnsAt(h) - h.ejectedAt);
      clock.t = d.returnsAt(h); d.tick();
      expect(h.ejected).toBe(false);
    }
    expect(durations).toEqual([200_000, 300_000, 300_000, 300_000]);
    expect(h.multiplier).toBe(3); // 3 x 200 s is not < 300 s + 200 s
  });

  it('gateway errors: Istio default detects at 5 but does not enforce; 500 resets the gateway counter only', () => {
    const { d, hosts: [h], s } = detector(2, { consecutive5xx: 20 });
    for (let i = 0; i < 4; i++) d.onStatus(h, 502);
    d.onStatus(h, 500); // gateway counter back to 0, 5xx counter 5
    for (let i = 0; i < 4; i++) d.onStatus(h, 504);
    expect(s['outlier_detection.ejections_detected_consecutive_gateway_failure']).toBe(0);
    d.onStatus(h, 503);
    expect(s['outlier_detection.ejections_detected_consecutive_gateway_failure']).toBe(1);
    expect(s['outlier_detection.ejections_enforced_consecutive_gateway_failure']).toBe(0);
    expect(h.ejected).toBe(false);
    expect(h.consecutive5xx).toBe(10); // every 5xx counts here; 500 does not reset it
    expect(h.consecutiveGateway).toBe(0); // reset after the (unenforced) detection
  });

  it('gateway errors enforced when consecutiveGatewayErrors is set', () => {
    const { d, hosts: [h], s } = detector(2, { consecutive5xx: 0, consecutiveGatewayErrors: 3, enforceGateway: true });
    d.onStatus(h, 502); d.onStatus(h, 503); d.onStatus(h, 504);
    expect(h.ejected).toBe(true);
    expect(s['outlier_detection.ejections_enforced_consecutive_gateway_failure']).toBe(1);
    expect(s['outlier_detection.ejections_total']).toBe(0); // deprecated counter: 5xx / success-rate only
  });

  it('consecutive5xxErrors 0 never ejects on 5xx', () => {
    const { d, hosts: [h], s } = detector(2, { consecutive5xx: 0 });
    for (let i = 0; i < 20; i++) d.onStatus(h, 500);
    expect(h.ejected).toBe(false);
    expect(s['outlier_detection.ejections_detected_consecutive_5xx']).toBe(0);
  });

  it('maxEjectionPercent counts the host about to be ejected', () => {
    const three = detector(3, { consecutive5xx: 1, maxEjectionPercent: 10 });
    three.d.onStatus(three.hosts[0], 500);
    expect(three.hosts[0].ejected).toBe(false); // 1/3 = 33 % > 10 %
    expect(three.s['outlier_detection.ejections_overflow']).toBe(1);
    expect(three.s['outlier_detection.ejections_detected_consecutive_5xx']).toBe(1);

    const third = detector(3, { consecutive5xx: 1, maxEjectionPercent: 34 });
    third.d.onStatus(third.hosts[0], 500);
    third.d.onStatus(third.hosts[1], 500);
    expect([third.hosts[0].ejected, third.hosts[1].ejected]).toEqual([true, false]); // 2/3 > 34 %
    expect(third.s['outlier_detection.ejections_overflow']).toBe(1);

    const ten = detector(10, { consecutive5xx: 1, maxEjectionPercent: 10 });
    ten.d.onStatus(ten.hosts[0], 500);
    ten.d.onStatus(ten.hosts[1], 500);
    expect([ten.hosts[0].ejected, ten.hosts[1].ejected]).toEqual([true, false]);
  });

  it('local-origin failures count as 503 / 504 unless split; split uses its own counter', () => {
    const plain = detector(2, { consecutive5xx: 2, consecutiveGatewayErrors: 2, enforceGateway: false });
    plain.d.onLocalOrigin(plain.hosts[0], 'connect');
    plain.d.onLocalOrigin(plain.hosts[0], 'timeout');
    expect(plain.hosts[0].ejected).toBe(true);
    expect(plain.s['outlier_detection.ejections_detected_consecutive_gateway_failure']).toBe(1);

    const split = detector(2, { consecutive5xx: 2, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3 });
    const h = split.hosts[0];
    split.d.onLocalOrigin(h, 'connect'); split.d.onLocalOrigin(h, 'connect');
    split.d.onConnectSuccess(h); // resets
    split.d.onLocalOrigin(h, 'timeout'); split.d.onLocalOrigin(h, 'connect');
    expect(h.ejected).toBe(false);
    expect(h.consecutive5xx).toBe(0); // not fed to the 5xx counter
    split.d.onLocalOrigin(h, 'connect');
    expect(h.ejected).toBe(true);
    expect(split.s['outlier_detection.ejections_enforced_consecutive_local_origin_failure']).toBe(1);
  });
});

describe('Backoff (Envoy JitteredExponentialBackOffStrategy, source formula)', () => {
  it('retry k draws from [0, 25 ms x 2^(k-1)), capped at [0, 250 ms)', () => {
    const top = new Backoff();
    expect(Array.from({ length: 7 }, () => top.next(() => 0.999999))).toEqual([24, 49, 99, 199, 249, 249, 249]);
    const bottom = new Backoff();
    expect(Array.from({ length: 3 }, () => bottom.next(() => 0))).toEqual([0, 0, 0]);
    const half = new Backoff();
    expect(Array.from({ length: 6 }, () => half.next(() => 0.5))).toEqual([12, 25, 50, 100, 125, 125]);
    const custom = new Backoff(10, 40);
    expect(Array.from({ length: 4 }, () => custom.next(() => 0.999999))).toEqual([9, 19, 39, 39]);
  });
});

describe('RetryBudget', () => {
  it('allows ratio x requests plus minPerSecond x ttl retries in the window', () => {
    const b = new RetryBudget(0.2, 0);
    expect(b.tryWithdraw()).toBe(false); // nothing seen yet, no floor
    for (let i = 0; i < 10; i++) b.onRequest();
    expect([b.tryWithdraw(), b.tryWithdraw(), b.tryWithdraw()]).toEqual([true, true, false]);
    const floor = new RetryBudget(0, 1, 10);
    let n = 0;
    while (floor.tryWithdraw() && n < 100) n++;
    expect(n).toBe(10);
  });
});

describe('retry_on acceptance', () => {
  const p = (on: string, codes: number[] = []) => policyFrom({ attempts: 2, retryOn: on, retriableStatusCodes: codes })!;
  it('follows Envoy per condition', () => {
    expect(accepts(p('5xx'), 'status', 503)).toBe(true);
    expect(accepts(p('5xx'), 'status', 404)).toBe(false);
    expect(accepts(p('5xx'), 'reset')).toBe(true);
    expect(accepts(p('5xx'), 'per_try_timeout')).toBe(true);
    expect(accepts(p('gateway-error'), 'status', 500)).toBe(false);
    expect(accepts(p('gateway-error'), 'status', 504)).toBe(true);
    expect(accepts(p('connect-failure'), 'connect')).toBe(true);
    expect(accepts(p('connect-failure'), 'reset')).toBe(false);
    expect(accepts(p('connect-failure'), 'per_try_timeout')).toBe(false);
    expect(accepts(p('retriable-4xx'), 'status', 409)).toBe(true);
    expect(accepts(p('retriable-4xx'), 'status', 429)).toBe(false);
    expect(accepts(p('retriable-status-codes', [429]), 'status', 429)).toBe(true);
    expect(accepts(p('retriable-status-codes'), 'status', 503)).toBe(false); // empty list: nothing
  });
  it("Istio's default policy retries connect failures only: no status, no reset, no per-try timeout", () => {
    const d = policyFrom(ISTIO_DEFAULT_RETRY)!;
    expect(d.numRetries).toBe(2);
    expect(accepts(d, 'connect')).toBe(true);
    expect(accepts(d, 'status', 503)).toBe(false);
    expect(accepts(d, 'reset')).toBe(false);
    expect(accepts(d, 'per_try_timeout')).toBe(false);
    expect(d.replayNeeded).toBe(false); // so bodies are never buffered for it
  });
  it('header retry-on is OR-ed into the route policy, one retry when the route has none', () => {
    const h = policyFrom(null, '5xx')!;
    expect(h.numRetries).toBe(1);
    expect(accepts(h, 'status', 500)).toBe(true);
    const both = policyFrom(ISTIO_DEFAULT_RETRY, 'gateway-error', '4')!;
    expect(both.numRetries).toBe(4);
    expect(accepts(both, 'status', 502)).toBe(true);
    expect(accepts(both, 'connect')).toBe(true);
  });
});

describe('rollFault', () => {
  it('rolls delay then abort independently against the percentages', () => {
    const seq = (xs: number[]) => { let i = 0; return () => xs[i++]; };
    const f = { delay: { fixedDelayMs: 5, percent: 20 }, abort: { httpStatus: 418, percent: 30 } };
    expect(rollFault(f, seq([0.1, 0.5]))).toEqual({ delayMs: 5, abortStatus: 0 });
    expect(rollFault(f, seq([0.5, 0.29]))).toEqual({ delayMs: 0, abortStatus: 418 });
    expect(rollFault(f, seq([0.19, 0.29]))).toEqual({ delayMs: 5, abortStatus: 418 });
    expect(rollFault(f, seq([0.2, 0.3]))).toBeNull();
    expect(rollFault({ abort: { httpStatus: 500, percent: 0 } }, () => 0)).toBeNull();
  });
});
