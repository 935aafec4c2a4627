// Per-edge traffic numbers for the mesh view (source -> destination service/subset): the same
// counts as istio_requests_total and a coarse latency histogram, kept as plain counters so a
// request costs a few increments, and drained into a report every few seconds.

/** Upper bounds (ms) of the latency buckets; the last bucket is open-ended. */
export const EDGE_BUCKETS_MS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

export class EdgeCounters {
  readonly destination: string;   // service host
  subset: string;       // the destination version (subset, or the endpoints' common version label)
  requests = 0;
  errors5xx = 0;
  flags: Record<string, number> = {};
  buckets = new Array<number>(EDGE_BUCKETS_MS.length + 1).fill(0);

  constructor(destination: string, subset: string) {
    this.destination = destination;
    this.subset = subset;
  }

  record(status: number, flags: string[] | null, ms: number): void {
    this.requests++;
    if (status >= 500 || status === 0) this.errors5xx++;
    if (flags !== null) for (const f of flags) this.flags[f] = (this.flags[f] ?? 0) + 1;
    let i = 0;
    while (i < EDGE_BUCKETS_MS.length && ms > EDGE_BUCKETS_MS[i]) i++;
    this.buckets[i]++;
  }

  /** The counts since the last drain, then zero. `health` = the cluster's endpoints now. */
  drain(health: { healthy: number; total: number }): EdgeReport | null {
    if (this.requests === 0 && health.healthy === health.total) return null;
    const r: EdgeReport = { destination: this.destination, subset: this.subset, requests: this.requests, errors5xx: this.errors5xx, flags: this.flags, buckets: this.buckets, ...health };
    this.requests = 0;
    this.errors5xx = 0;
    this.flags = {};
    this.buckets = new Array<number>(EDGE_BUCKETS_MS.length + 1).fill(0);
    return r;
  }
}

export interface EdgeReport {
  destination: string;
  subset: string;
  requests: number;
  errors5xx: number;
  flags: Record<string, number>;
  buckets: number[];   // counts per EDGE_BUCKETS_MS bound, plus one open-ended bucket
  healthy: number;     // endpoints not ejected, when drained
  total: number;
}

/** Percentile (0..1) from bucket counts: the bucket's upper bound (conservative, like Prometheus). */
export function bucketPercentile(buckets: number[], q: number): number {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i];
    if (seen >= rank) return i < EDGE_BUCKETS_MS.length ? EDGE_BUCKETS_MS[i] : EDGE_BUCKETS_MS[EDGE_BUCKETS_MS.length - 1] * 2;
  }
  return EDGE_BUCKETS_MS[EDGE_BUCKETS_MS.length - 1] * 2;
}
