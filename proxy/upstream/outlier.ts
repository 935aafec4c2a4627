// Outlier detection, as Envoy's outlier_detection_impl (envoy-semantics.md section 3):
// consecutive errors eject at once (synchronously: a single process has no main thread to post
// to); every interval tick un-ejects, decays multipliers and runs the two statistical checks on
// the interval's counts: success rate (threshold = mean − stdev_factor/1000 × population σ over
// hosts with ≥ request_volume requests, needing ≥ minimum_hosts of them) and failure percentage
// (failure % ≥ threshold). Beyond Envoy: `successRateFloor`, a success rate at or above which a
// host is never ejected statistically (a 99.9 % host among 99.99 % ones stays in, envoy #37723).
import type { OutlierSpec } from '../config/schema.ts';
import type { ClusterStats } from '../telemetry/stats.ts';

export interface HostOutlierState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  ejected: boolean;
  ejectedAt: number;        // monotonic ms
  multiplier: number;
  lastUnejectedAt: number;  // monotonic ms, -1 = never
  /** This interval's requests and 5xx-equivalent failures (the success-rate bucket). */
  total: number;
  failed: number;
  /** The success rate (percent) of the last interval, for /clusters; -1 = too few requests. */
  successRate: number;
}

export function newHostOutlierState(): HostOutlierState {
  return { consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocal: 0, ejected: false, ejectedAt: 0, multiplier: 0, lastUnejectedAt: -1, total: 0, failed: 0, successRate: -1 };
}

type EjectType = 'consecutive_5xx' | 'consecutive_gateway_failure' | 'consecutive_local_origin_failure' | 'success_rate' | 'failure_percentage';

/** Envoy's defaults for the statistical checks (outlier_detection.proto). */
export const SUCCESS_RATE_DEFAULTS = { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 };
export const FAILURE_PERCENTAGE_DEFAULTS = { threshold: 85, minimumHosts: 5, requestVolume: 50, enforcing: 0 };

/**
 * Envoy's successRateEjectionThreshold: mean and mean − factor × σ (population σ). Its own
 * example: {50, 100, 100, 100, 100} → mean 90, σ 20, threshold 90 − 1.9 × 20 = 52.
 */
export function successRateThreshold(rates: readonly number[], stdevFactor: number): { mean: number; threshold: number } {
  let sum = 0;
  for (const r of rates) sum += r;
  const mean = sum / rates.length;
  let variance = 0;
  for (const r of rates) variance += (r - mean) ** 2;
  variance /= rates.length;
  return { mean, threshold: mean - (stdevFactor / 1000) * Math.sqrt(variance) };
}

export class OutlierDetector {
  readonly spec: OutlierSpec;
  private stats: ClusterStats;
  private hosts: () => HostOutlierState[];
  private timer: NodeJS.Timeout;
  private maxEjectionMs: number;
  private readonly sr: typeof SUCCESS_RATE_DEFAULTS;
  private readonly fp: typeof FAILURE_PERCENTAGE_DEFAULTS;
  /** Last tick's cluster success-rate average and ejection threshold (/clusters); -1 = too little data. */
  srAverage = -1;
  srThreshold = -1;
  now: () => number = () => performance.now();
  /** For the enforcing_* percentages (tests give a seeded one). */
  random: () => number = Math.random;

  constructor(spec: OutlierSpec, stats: ClusterStats, hosts: () => HostOutlierState[]) {
    this.spec = spec;
    this.stats = stats;
    this.hosts = hosts;
    this.maxEjectionMs = spec.maxEjectionTimeMs ?? Math.max(300_000, spec.baseEjectionTimeMs);
    // Istio's fields alone: success rate computed (for /clusters) but enforcing 0, as Istio sends.
    this.sr = spec.successRate ?? { ...SUCCESS_RATE_DEFAULTS, enforcing: 0 };
    this.fp = spec.failurePercentage ?? FAILURE_PERCENTAGE_DEFAULTS;
    this.timer = setInterval(() => this.tick(), spec.intervalMs);
    this.timer.unref();
  }

  stop(): void { clearInterval(this.timer); }

  /** An HTTP response from the host (status from the upstream). */
  onStatus(h: HostOutlierState, status: number): void {
    h.total++;
    if (status >= 500) {
      h.failed++;
      if (status >= 502 && status <= 504) {
        if (++h.consecutiveGateway === this.spec.consecutiveGatewayErrors) this.detect(h, 'consecutive_gateway_failure');
      } else h.consecutiveGateway = 0;
      if (++h.consecutive5xx === this.spec.consecutive5xx) this.detect(h, 'consecutive_5xx');
    } else {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
    }
  }

  /** A locally originated failure: connect failure / reset (as 503) or timeout (as 504) unless split. */
  onLocalOrigin(h: HostOutlierState, kind: 'connect' | 'timeout'): void {
    if (this.spec.splitExternalLocalOriginErrors) {
      const n = this.spec.consecutiveLocalOriginFailures;
      if (++h.consecutiveLocal === n && n > 0) this.detect(h, 'consecutive_local_origin_failure');
      return;
    }
    this.onStatus(h, kind === 'timeout' ? 504 : 503);
  }

  /** A successful connect resets the local-origin counter (split mode only matters). */
  onConnectSuccess(h: HostOutlierState): void { h.consecutiveLocal = 0; }

  private detect(h: HostOutlierState, type: EjectType): void {
    // An already ejected host (panic mode, requests in flight) is ignored whole: no stat, and its
    // counter keeps running (Envoy's onConsecutiveErrorWorker returns early).
    if (h.ejected) return;
    const s = this.stats;
    s[`outlier_detection.ejections_detected_${type}`]++;
    const enforced = type === 'consecutive_5xx' ? this.spec.consecutive5xx > 0
      : type === 'consecutive_gateway_failure' ? this.spec.enforceGateway
      : type === 'success_rate' ? this.roll(this.sr.enforcing)
      : type === 'failure_percentage' ? this.roll(this.fp.enforcing)
      : this.spec.consecutiveLocalOriginFailures > 0;
    const hosts = this.hosts();
    let active = 0;
    for (const x of hosts) if (x.ejected) active++;
    // Counts the host about to be ejected: fewer than 10 hosts never eject at the 10 % default.
    if (100 * (active + 1) / hosts.length > Math.min(100, this.spec.maxEjectionPercent)) {
      s['outlier_detection.ejections_overflow']++;
    } else {
      if (type === 'consecutive_5xx' || type === 'success_rate') s['outlier_detection.ejections_total']++;
      if (enforced) {
        h.ejected = true;
        h.ejectedAt = this.now();
        if (h.multiplier * this.spec.baseEjectionTimeMs < this.maxEjectionMs + this.spec.baseEjectionTimeMs) h.multiplier++;
        s['outlier_detection.ejections_active']++;
        s['outlier_detection.ejections_enforced_total']++;
        s[`outlier_detection.ejections_enforced_${type}`]++;
        if (type === 'consecutive_5xx') s['outlier_detection.ejections_consecutive_5xx']++;
        s.membership_healthy--;
      }
    }
    // Reset after the decision (Envoy resets the counter that fired).
    if (type === 'consecutive_5xx') h.consecutive5xx = 0;
    else if (type === 'consecutive_gateway_failure') h.consecutiveGateway = 0;
    else if (type === 'consecutive_local_origin_failure') h.consecutiveLocal = 0;
  }

  /** Envoy's featureEnabled(percent): true with probability percent/100. */
  private roll(percent: number): boolean {
    return percent >= 100 || (percent > 0 && this.random() * 100 < percent);
  }

  /** When an ejected host comes back (ms, monotonic), for /clusters. */
  returnsAt(h: HostOutlierState): number {
    return h.ejectedAt + Math.min(this.spec.baseEjectionTimeMs * h.multiplier, this.maxEjectionMs);
  }

  tick(): void {
    const now = this.now();
    const hosts = this.hosts();
    for (const h of hosts) {
      if (h.ejected) {
        if (this.returnsAt(h) <= now) {
          h.ejected = false;
          h.lastUnejectedAt = now;
          h.consecutive5xx = h.consecutiveGateway = h.consecutiveLocal = 0;
          this.stats['outlier_detection.ejections_active']--;
          this.stats.membership_healthy++;
        }
      } else if (h.multiplier > 0 && h.lastUnejectedAt >= 0 && now - h.lastUnejectedAt >= this.spec.intervalMs) {
        h.multiplier--; // decay
      }
    }
    this.statistical(hosts);
  }

  /**
   * Envoy's processSuccessRateEjections on the interval that just ended: hosts not ejected with
   * enough requests, then each check if enough such hosts. The buckets restart either way.
   */
  private statistical(hosts: readonly HostOutlierState[]): void {
    const sr = this.sr, fp = this.fp;
    this.srAverage = this.srThreshold = -1;
    const srHosts: HostOutlierState[] = [];
    const fpHosts: HostOutlierState[] = [];
    const minVolume = Math.min(sr.requestVolume, fp.requestVolume);
    for (const h of hosts) {
      const total = h.total, rate = total > 0 ? 100 * (total - h.failed) / total : -1;
      h.total = h.failed = 0;
      h.successRate = -1;
      if (h.ejected || total === 0) continue;
      if (total >= minVolume) h.successRate = rate;
      if (total >= sr.requestVolume) srHosts.push(h);
      if (total >= fp.requestVolume) fpHosts.push(h);
    }
    const floor = this.spec.successRateFloor ?? 101;
    if (srHosts.length > 0 && srHosts.length >= sr.minimumHosts) {
      const { mean, threshold } = successRateThreshold(srHosts.map((h) => h.successRate), sr.stdevFactor);
      this.srAverage = mean;
      this.srThreshold = threshold;
      for (const h of srHosts) {
        if (h.successRate < threshold && h.successRate < floor) {
          this.stats['outlier_detection.ejections_success_rate']++; // deprecated, counted at detection as Envoy
          this.detect(h, 'success_rate');
        }
      }
    }
    if (fpHosts.length > 0 && fpHosts.length >= fp.minimumHosts) {
      for (const h of fpHosts) {
        if (100 - h.successRate >= fp.threshold && h.successRate < floor) this.detect(h, 'failure_percentage');
      }
    }
  }
}
