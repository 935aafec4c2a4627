// Shape check for a snapshot received from a control server, before proxy.apply() builds it.
// The control server compiles with the same code, but a proxy must not trust the wire: a
// different version of the control server, or a bug, must produce a NACK naming the field, not
// a crash deep in the router. The shape is the Snapshot schema itself (config/schema.ts, compiled
// ahead of time by TypeBox); here are only the checks a schema cannot say: references between clusters and
// routes, weights, and what only this proxy can know (its own ports).
import type { Snapshot } from '../config/schema.ts';
import { checker } from '../config/validate.ts';
import { DEFAULT_BASE_DTAB } from '../config/compile.ts';

const shape = checker<Snapshot>('Snapshot', 'wire');

/** At most this many problems in one NACK: enough to fix a batch, short enough to read. */
const MAX_PROBLEMS = 20;

export interface SelfInfo { address: string; ports: number[] }

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** Problems with `v` as a snapshot for this proxy; empty = it may be applied. */
export function snapshotProblems(v: unknown, self?: SelfInfo): string[] {
  if (!shape.check(v)) return shape.errors(v, 'snapshot').slice(0, MAX_PROBLEMS);
  const s = v;
  const errs: string[] = [];
  const names = new Set<string>();
  s.clusters.forEach((c, i) => { if (names.has(c.name)) errs.push(`snapshot.clusters[${i}].name: duplicate cluster "${c.name}"`); names.add(c.name); });
  s.virtualHosts.forEach((vh, i) => vh.routes.forEach((r, j) => {
    r.destinations.forEach((d, k) => { if (!names.has(d.cluster)) errs.push(`snapshot.virtualHosts[${i}].routes[${j}].destinations[${k}].cluster: no cluster "${d.cluster}"`); });
    const sum = r.destinations.reduce((a, d) => a + d.weight, 0);
    if (r.destinations.length > 0 && sum !== 100) errs.push(`snapshot.virtualHosts[${i}].routes[${j}]: weights sum to ${sum}, must be 100`);
    (r.mirrors ?? []).forEach((m, k) => { if (!names.has(m.cluster)) errs.push(`snapshot.virtualHosts[${i}].routes[${j}].mirrors[${k}].cluster: no cluster "${m.cluster}"`); });
  }));
  // An endpoint that is this proxy's own outbound or admin listener would loop requests back
  // into the proxy: only the proxy knows its ports, so this check lives here, not in control.
  if (self) {
    s.clusters.forEach((c, i) => c.endpoints.forEach((e, k) => {
      if ((LOOPBACK.test(e.address) || e.address === self.address) && self.ports.includes(e.port)) {
        errs.push(`snapshot.clusters[${i}].endpoints[${k}]: ${e.address}:${e.port} is this proxy's own listener (cluster ${c.name}); applying it would loop requests`);
      }
    }));
  }
  return errs.slice(0, MAX_PROBLEMS);
}

/** A snapshot that routes nothing: the state of a proxy that has not heard from control yet. */
export function emptySnapshot(source = 'empty'): Snapshot {
  return { version: '0', hash: 'empty', source, services: [], clusters: [], virtualHosts: [], dtab: DEFAULT_BASE_DTAB };
}
