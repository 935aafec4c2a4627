// The canary's built-in metrics, from the per-edge reports the sidecars already send
// (POST /v1/report): per destination service and version, the requests, 5xx and latency
// histogram of every report, kept for a few minutes. A query sums every source's reports for the
// version over the metric's interval — Flagger's `sum(rate(istio_requests_total{…}[interval]))`
// per workload, without a Prometheus.
//
// The reports are the callers' (reporter=source) view of the edge: it includes what the caller's
// sidecar saw fail without reaching the version (connect failures, timeouts, no healthy
// endpoint), which is what the version's users saw. Traffic from outside the mesh is not counted.
import { bucketPercentile, EDGE_BUCKETS_MS } from '../../proxy/telemetry/edges.ts';
import { shortName, type EdgesReport } from '../mesh/topology.ts';

interface Sample { at: number; requests: number; errors: number; buckets: number[]; healthy: number; total: number; node: string }

export interface Window { requests: number; errors: number; buckets: number[]; reports: number; ejected: boolean }

const KEEP_MS = 10 * 60_000;
const MAX_SAMPLES = 20_000; // per version: bounded whatever the report rate

export class VersionMetrics {
  private readonly series = new Map<string, Sample[]>();
  now: () => number = () => Date.now();
  /** Called after each ingested report with the versions it touched (fast rollback listens). */
  onReport: ((keys: string[]) => void) | null = null;

  static key(service: string, version: string): string { return `${shortName(service.toLowerCase())}|${version}`; }

  ingest(rep: EdgesReport): void {
    const at = this.now();
    const touched: string[] = [];
    for (const e of rep.edges) {
      const k = VersionMetrics.key(e.destination, e.subset);
      let list = this.series.get(k);
      if (!list) { list = []; this.series.set(k, list); }
      list.push({ at, requests: e.requests, errors: e.errors5xx, buckets: e.buckets, healthy: e.healthy, total: e.total, node: rep.node });
      while (list.length > MAX_SAMPLES || (list.length > 0 && list[0].at < at - KEEP_MS)) list.shift();
      touched.push(k);
    }
    if (touched.length) this.onReport?.(touched);
  }

  /** Sums over (now - ms, now]. `ejected`: the latest report of every reporting source had all endpoints ejected. */
  window(service: string, version: string, ms: number, since = 0): Window {
    const list = this.series.get(VersionMetrics.key(service, version)) ?? [];
    const from = Math.max(this.now() - ms, since);
    const w: Window = { requests: 0, errors: 0, buckets: new Array(EDGE_BUCKETS_MS.length + 1).fill(0), reports: 0, ejected: false };
    const lastBySource = new Map<string, Sample>();
    for (let i = list.length - 1; i >= 0 && list[i].at > from; i--) {
      const s = list[i];
      w.requests += s.requests; w.errors += s.errors; w.reports++;
      for (let j = 0; j < w.buckets.length; j++) w.buckets[j] += s.buckets[j] ?? 0;
      if (!lastBySource.has(s.node)) lastBySource.set(s.node, s);
    }
    w.ejected = lastBySource.size > 0 && [...lastBySource.values()].every((s) => s.total > 0 && s.healthy === 0);
    return w;
  }
}

export const successRate = (w: Window): number => (w.requests > 0 ? (100 * (w.requests - w.errors)) / w.requests : NaN);
export const p99 = (w: Window): number => bucketPercentile(w.buckets, 0.99);
