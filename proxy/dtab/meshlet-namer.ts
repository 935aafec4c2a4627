// meshlet's namer, mounted at /#/meshlet:
//   /#/meshlet/<host>[/…]           -> id /#/meshlet/<host>          (the mesh service; its VirtualService applies)
//   /#/meshlet/<host>/<subset>[/…]  -> id /#/meshlet/<host>/<subset> (that subset directly, weights bypassed)
// A host the mesh does not know, or a second element that is not one of its subsets, is Neg, so
// dtab alternation falls back to earlier dentries (an override naming a missing service or
// subset leaves production routing in place). The residual is what follows the bound part.
import type { Namer } from './bind.ts';
import type { Path } from './path.ts';
import { NEG } from './tree.ts';

export const MESHLET_NAMER_PREFIX: Path = Object.freeze(['#', 'meshlet']) as Path;

/** The default base dtab: `/svc/<Host>` -> `/srv/<Host>` -> `/#/meshlet/<Host>`. */
export const DEFAULT_BASE_DTAB = '/srv => /#/meshlet; /svc => /srv;';

/** What the proxy knows about a mesh service; `host`, when given, is its canonical name for the id. */
export interface MeshService { host?: string; subsets: readonly string[] }

/**
 * The meshlet namer over the proxy's service table. `lookupService` gets the host element as a
 * Host header would be matched: lower-cased, a `:port` suffix removed (the default identifier
 * keeps both, `/svc/World:8080`). Answers are cached by the Interpreter, so the table must be the
 * one of the Interpreter's config snapshot.
 */
export function meshletNamer(lookupService: (host: string) => MeshService | undefined): Namer {
  return {
    lookup(rest: Path) {
      if (rest.length === 0) return NEG;
      const host = hostOf(rest[0]);
      const svc = lookupService(host);
      if (svc === undefined) return NEG;
      const id = svc.host ?? host;
      if (rest.length === 1) return { t: 'leaf', v: { id: [...MESHLET_NAMER_PREFIX, id], residual: [] } };
      if (!svc.subsets.includes(rest[1])) return NEG;
      return { t: 'leaf', v: { id: [...MESHLET_NAMER_PREFIX, id, rest[1]], residual: rest.slice(2) } };
    },
  };
}

/** `Web.Example:8080` -> `web.example`; a bracketed IPv6 literal keeps its colons. */
function hostOf(raw: string): string {
  const colon = raw.lastIndexOf(':');
  const h = colon > 0 && raw.indexOf(']') < colon ? raw.slice(0, colon) : raw;
  return h.toLowerCase();
}
