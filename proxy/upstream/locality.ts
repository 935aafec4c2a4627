// Locality-aware balancing (Istio localityLbSetting failover = Envoy priorities): endpoints are
// ranked by how near they are to this proxy, from their topology labels (the snapshot's
// EndpointSpec.labels, as Kubernetes discovery fills them) and the proxy's --zone/--region:
//   0 same zone (and region), 1 same region, 2 a `failover` target region of ours, 3 the rest
// (empty ranks dropped). Traffic goes to the nearest rank while it is healthy enough, spilling
// over as Envoy's priority load does: each rank gets min(100, 1.4 × its healthy %) (the
// overprovisioning factor), normalised when the ranks together are below 100, the rest moving on.
// Istio applies it only to clusters with outlier detection (nothing else marks hosts unhealthy).
import type { EndpointSpec } from '../config/schema.ts';

export interface Locality { zone: string; region: string }
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const REGION_LABEL = 'topology.kubernetes.io/region';
/** Envoy's default overprovisioning factor (140 %). */
export const OVERPROVISIONING = 1.4;

/** The rank of an endpoint as seen from `self` (smaller = nearer). */
export function rankOf(labels: EndpointSpec['labels'], self: Locality, failover: ReadonlyArray<{ from: string; to: string }>): number {
  const zone = labels[ZONE_LABEL] ?? '', region = labels[REGION_LABEL] ?? '';
  if (self.zone !== '' && zone === self.zone && (self.region === '' || region === self.region)) return 0;
  if (self.region !== '' && region === self.region) return 1;
  if (failover.some((f) => f.from === self.region && f.to === region)) return 2;
  return 3;
}

/**
 * Each rank's share of traffic (percent, summing to 100) from its healthy hosts / all hosts,
 * written into `out` (no allocation). All ranks empty of healthy hosts: all to rank 0 (the
 * caller's panic/none-healthy rules then apply).
 */
export function rankLoads(healthy: ArrayLike<number>, total: ArrayLike<number>, out: Float64Array): void {
  const n = out.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += total[i] > 0 ? Math.min(100, OVERPROVISIONING * 100 * healthy[i] / total[i]) : 0;
  const norm = Math.min(100, sum);
  let left = 100;
  for (let i = 0; i < n; i++) {
    const h = total[i] > 0 ? Math.min(100, OVERPROVISIONING * 100 * healthy[i] / total[i]) : 0;
    const load = norm > 0 ? Math.min(left, h * 100 / norm) : (i === 0 ? 100 : 0);
    out[i] = load;
    left -= load;
  }
  if (left > 1e-9) out[n - 1] += left; // rounding
}
