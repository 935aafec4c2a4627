// Consecutive-error outlier detection, as Envoy's outlier_detection_impl (envoy-semantics.md
// section 3): the Nth consecutive error ejects at once (synchronously: a single process has no
// main thread to post to), un-ejection and multiplier decay happen on the interval tick.
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
}

export function newHostOutlierState(): HostOutlierState {
  return { consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocal: 0, ejected: false, ejectedAt: 0, multiplier: 0, lastUnejectedAt: -1 };
}

type EjectType = 'consecutive_5xx' | 'consecutive_gateway_failure' | 'consecutive_local_origin_failure';

export class OutlierDetector {
  readonly spec: OutlierSpec;
  private stats: ClusterStats;
  private hosts: () => HostOutlierState[];
  private timer: NodeJS.Timeout;
  private maxEjectionMs: number;
  now: () => number = () => performance.now();

  constructor(spec: OutlierSpec, stats: ClusterStats, hosts: () => HostOutlierState[]) {
    this.spec = spec;
    this.stats = stats;
    this.hosts = hosts;
    this.maxEjectionMs = Math.max(300_000, spec.baseEjectionTimeMs);
    this.timer = setInterval(() => this.tick(), spec.intervalMs);
    this.timer.unref();
  }

  stop(): void { clearInterval(this.timer); }

  /** An HTTP response from the host (status from the upstream). */
  onStatus(h: HostOutlierState, status: number): void {
    if (status >= 500) {
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
      : this.spec.consecutiveLocalOriginFailures > 0;
    const hosts = this.hosts();
    let active = 0;
    for (const x of hosts) if (x.ejected) active++;
    // Counts the host about to be ejected: fewer than 10 hosts never eject at the 10 % default.
    if (100 * (active + 1) / hosts.length > Math.min(100, this.spec.maxEjectionPercent)) {
      s['outlier_detection.ejections_overflow']++;
    } else {
      if (type === 'consecutive_5xx') s['outlier_detection.ejections_total']++;
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
    else h.consecutiveLocal = 0;
  }

  /** When an ejected host comes back (ms, monotonic), for /clusters. */
  returnsAt(h: HostOutlierState): number {
    return h.ejectedAt + Math.min(this.spec.baseEjectionTimeMs * h.multiplier, this.maxEjectionMs);
  }

  tick(): void {
    const now = this.now();
    for (const h of this.hosts()) {
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
  }
}
