// meshlet's namer, mounted at /#/meshlet: `/#/meshlet/<host>[/rest]` binds to the mesh service
// <host> (its VirtualService routing applies) and `/#/meshlet/<host>/<subset>[/rest]` to that
// subset directly (weights bypassed). A name the mesh does not know is Neg, so dtab alternation
// falls back to earlier dentries. A `:port` on the host is ignored, like the Host header's.
import type { Namer } from './bind.ts';
import { NEG, leaf, type Path } from './tree.ts';

export const MESHLET_NAMER_PREFIX: Path = ['#', 'meshlet'];

export interface MeshService { host: string; subsets: readonly string[] }

export function meshletNamer(lookupService: (host: string) => MeshService | undefined): Namer {
  return {
    lookup(rest: Path) {
      if (rest.length === 0) return NEG;
      const raw = rest[0];
      const colon = raw.lastIndexOf(':');
      const svc = lookupService((colon > 0 && !raw.includes(']') ? raw.slice(0, colon) : raw).toLowerCase());
      if (!svc) return NEG;
      if (rest.length >= 2 && svc.subsets.includes(rest[1])) {
        return leaf({ id: [...MESHLET_NAMER_PREFIX, svc.host, rest[1]], residual: rest.slice(2) });
      }
      return leaf({ id: [...MESHLET_NAMER_PREFIX, svc.host], residual: rest.slice(1) });
    },
  };
}
