// Linkerd 1's dtab request headers (docs/spec/dtab.md §3.2-3.6): `l5d-ctx-dtab` (propagated) then
// `l5d-dtab` (the user's override), every header line parsed as a dtab of its own; any parse
// failure is a 400 before routing. The local dtab ctx ++ user travels on as `l5d-ctx-dtab`.
import { Dtab, showPrefix } from './dtab.ts';
import { DtabParseError, parseDentries, type Dentry } from './parser.ts';
import { showPath, type Path } from './path.ts';
import { showPathTree } from './tree.ts';

export type DtabHeaders =
  | { ok: true; local: Dtab; forwardCtx: string | null }
  | { ok: false; message: string };

/**
 * Parse the raw header values, each list in header order. `local` = ctx ++ user (later entries
 * win, so user beats ctx); `forwardCtx` = its show form, the `l5d-ctx-dtab` value to send
 * downstream, or null when the local dtab is empty. A malformed value: `{ok: false, message}`
 * with Finagle's parser message (for the 400 body and, URL-encoded, `l5d-err`).
 */
export function parseDtabHeaders(ctx: readonly string[], user: readonly string[]): DtabHeaders {
  let all: Dentry[] | null = null;
  try {
    for (let k = 0; k < 2; k++) {
      const values = k === 0 ? ctx : user;
      for (let i = 0; i < values.length; i++) {
        const ds = parseDentries(values[i]);
        if (ds.length === 0) continue;
        if (all === null) all = ds;
        else for (const d of ds) all.push(d);
      }
    }
  } catch (e) {
    if (e instanceof DtabParseError) return { ok: false, message: e.message };
    throw e;
  }
  if (all === null) return { ok: true, local: Dtab.empty, forwardCtx: null };
  const local = new Dtab(all);
  return { ok: true, local, forwardCtx: local.show() };
}

/**
 * Java's `URLEncoder.encode(s, "ISO-8859-1")`: `A-Za-z0-9.-*_` as is, space -> '+', every other
 * char percent-encoded (upper-case hex); a char outside ISO-8859-1 becomes '?' (%3F), as Java's
 * encoder substitutes. `maxLength` truncates the result (Linkerd caps `l5d-err` at the max
 * header size, 8 KiB by default).
 */
export function javaUrlEncode(s: string, maxLength = Infinity): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2e || c === 0x2d || c === 0x2a || c === 0x5f) out += ch;
    else if (c === 0x20) out += '+';
    else if (c <= 0xff) out += c < 0x10 ? `%0${c.toString(16).toUpperCase()}` : `%${c.toString(16).toUpperCase()}`;
    else out += '%3F';
    if (out.length >= maxLength) return out.slice(0, maxLength);
  }
  return out;
}

function formatDtab(d: Dtab): string {
  return d.dentries.map((e) => `  ${showPrefix(e.prefix)} => ${showPathTree(e.dst)}`).join('\n');
}

export interface UnableToRoute {
  /** The logical name (Path, or its show form). */
  service: Path | string;
  /** The router's base dtab. */
  baseDtab: Dtab;
  /** The request's local (override) dtab: ctx ++ user. */
  localDtab: Dtab;
  /** "resolutions considered" lines (see `resolutions` in delegate.ts); "unknown" if absent. */
  resolutions?: readonly string[];
  /** The interpreter's own dtab (namerd-style interpreters); empty for the default interpreter. */
  interpreterDtab?: Dtab;
}

/**
 * The body of Linkerd's 502 when a name binds to Neg/Fail/Empty (RichNoBrokersAvailableException),
 * byte for byte: service name, resolutions considered, dtab, base dtab, override dtab.
 */
export function unableToRoute(o: UnableToRoute): string {
  const service = typeof o.service === 'string' ? o.service : showPath(o.service);
  const res = (o.resolutions ?? ['unknown']).map((r) => `  ${r}`).join('\n');
  return `Unable to route request!

service name: ${service}
resolutions considered:
${res}
dtab:
${formatDtab(o.interpreterDtab ?? Dtab.empty)}
base dtab:
${formatDtab(o.baseDtab)}
override dtab:
${formatDtab(o.localDtab)}
`;
}
