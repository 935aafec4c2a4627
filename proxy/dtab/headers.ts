// Linkerd 1's dtab request headers (spec/dtab.md §3): l5d-ctx-dtab then l5d-dtab, every header
// line parsed on its own; any parse failure is a 400 before routing.
import { Dtab } from './dtab.ts';
import { DtabParseError } from './parser.ts';

export type DtabHeaders =
  | { ok: true; local: Dtab; forwardCtx: string | null }
  | { ok: false; message: string };

/** Parse the raw values (in header order). `forwardCtx` = show(ctx ++ user) when non-empty. */
export function parseDtabHeaders(ctx: readonly string[], user: readonly string[]): DtabHeaders {
  let local = Dtab.empty;
  for (const v of [...ctx, ...user]) {
    try {
      local = local.concat(Dtab.parse(v));
    } catch (e) {
      if (e instanceof DtabParseError) return { ok: false, message: e.message };
      throw e;
    }
  }
  return { ok: true, local, forwardCtx: local.size > 0 ? local.show() : null };
}

/** Java's URLEncoder.encode(s, ISO-8859-1): space -> '+', all but A-Za-z0-9.-*_ percent-encoded. */
export function javaUrlEncode(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || ch === '.' || ch === '-' || ch === '*' || ch === '_') out += ch;
    else if (ch === ' ') out += '+';
    else if (c <= 0xff) out += `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
    else out += '%3F'; // not representable in ISO-8859-1: Java writes '?'
  }
  return out;
}

/** Linkerd's 502 body when a name binds to nothing usable. */
export function unableToRoute(service: string, baseDtab: Dtab, local: Dtab, why: string): string {
  return `Unable to route request! service: ${service} (${why}) base dtab: ${baseDtab.show()} override dtab: ${local.show()}`;
}
