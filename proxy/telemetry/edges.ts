// The per-edge report (source -> destination service/subset) the proxy posts to the control
// server for the mesh view (docs/control-protocol.md). It is not counted separately: it is a view
// of the Istio series (metrics.ts `drainEdges`), the delta of each outbound cluster's
// reporter=source series since the previous report, in the same latency buckets.
import { DURATION_BUCKETS_MS } from './buckets.ts';

/** Upper bounds (ms) of the latency buckets, Istio's layout; the last bucket is open-ended. */
export const EDGE_BUCKETS_MS = DURATION_BUCKETS_MS;

export interface EdgeReport {
  destination: string;
  subset: string;
  requests: number;
  errors5xx: number;   // responses >= 500 and requests with no response (code 0)
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
