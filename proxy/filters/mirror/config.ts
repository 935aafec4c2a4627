// The mirror filter's per-route config: the clusters a route copies requests to and with what
// percentage (Istio mirror/mirrors + mirrorPercentage), resolved once per snapshot.
import type { MirrorSpec } from '../../config/schema.ts';
import type { Cluster } from '../../upstream/cluster.ts';

export interface MirrorTarget { cluster: Cluster; host: string; percent: number }

export function compileMirrors(specs: MirrorSpec[] | undefined, clusters: Map<string, Cluster>, route: string): MirrorTarget[] | null {
  if (!specs || specs.length === 0) return null;
  return specs.map((m) => {
    const cluster = clusters.get(m.cluster);
    if (!cluster) throw new Error(`route ${route}: mirror cluster ${m.cluster} missing from snapshot`);
    return { cluster, host: m.host, percent: m.percent };
  });
}
