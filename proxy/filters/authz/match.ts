// The value matchers of Istio's AuthorizationPolicy, compiled once per snapshot into closures so a
// decision reads no config text. Semantics are Istio's (istio/api security/v1beta1
// authorization_policy.proto, Rule comment; pilot/pkg/security/authz/matcher):
//   "abc"  exact          "abc*" prefix (matches "abc" too)
//   "*abc" suffix         "*"    presence (any non-empty value)
// The check order is Istio's: "*" first, then a leading "*", then a trailing "*"; any other "*"
// is literal. Paths also take Envoy's URI templates, `{*}` (one segment) and `{**}` (the rest).
import { isIP } from 'node:net';

export type StrMatch = (v: string) => boolean;

/** One Istio string pattern. `fold` = case-insensitive (hosts). */
export function strMatcher(pattern: string, fold = false): StrMatch {
  const p = fold ? pattern.toLowerCase() : pattern;
  const norm = fold ? (v: string) => v.toLowerCase() : (v: string) => v;
  if (p === '*') return (v) => v.length > 0;
  if (p.startsWith('*')) { const s = p.slice(1); return (v) => norm(v).endsWith(s); }
  if (p.endsWith('*')) { const s = p.slice(0, -1); return (v) => norm(v).startsWith(s); }
  return (v) => norm(v) === p;
}

/** Any of the patterns; null = the field is unset (no constraint). */
export function anyOf(patterns: string[] | undefined, fold = false): StrMatch | null {
  if (patterns === undefined || patterns.length === 0) return null;
  const ms = patterns.map((p) => strMatcher(p, fold));
  if (ms.length === 1) return ms[0];
  return (v) => { for (let i = 0; i < ms.length; i++) if (ms[i](v)) return true; return false; };
}

// --- paths: globs and URI templates ---

/** Envoy's uri_template segment alphabet (pchar without '/'); `{**}` adds '/'. */
const SEG = "[A-Za-z0-9\\-._~%!$&'()+,;:@=]";

/** A `paths` entry: a template (contains `{`) or a glob. Throws a message for a bad template. */
export function pathMatcher(pattern: string): StrMatch {
  if (!pattern.includes('{')) return strMatcher(pattern);
  if (!pattern.startsWith('/')) throw new Error(`path template ${JSON.stringify(pattern)} must start with "/"`);
  const segs = pattern.slice(1).split('/');
  let re = '^';
  segs.forEach((seg, i) => {
    re += '/';
    if (seg === '{*}') re += `${SEG}+`;
    else if (seg === '{**}') {
      if (i !== segs.length - 1) throw new Error(`path template ${JSON.stringify(pattern)}: {**} must be the last segment`);
      // The rest of the path, possibly empty: `/a/{**}` matches `/a/` and `/a/b/c`, not `/a`.
      re = re.slice(0, -1) + `/(?:${SEG}|/)*`;
    } else if (seg.includes('{') || seg.includes('}') || seg.includes('*')) {
      throw new Error(`path template ${JSON.stringify(pattern)}: segment ${JSON.stringify(seg)} must be {*}, {**} or literal text`);
    } else re += seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  const rx = new RegExp(re + '$'); // built from literals and fixed classes only: no user regex
  return (v) => rx.test(v);
}

export function anyPath(patterns: string[] | undefined): StrMatch | null {
  if (patterns === undefined || patterns.length === 0) return null;
  const ms = patterns.map(pathMatcher);
  return (v) => { for (let i = 0; i < ms.length; i++) if (ms[i](v)) return true; return false; };
}

/**
 * The path the policy sees: without the query or fragment, with dot segments resolved (Istio's
 * default normalization, BASE: RFC 3986 normalisation; slashes are not merged, %2F is not decoded).
 */
export function normalizePath(target: string): string {
  let end = target.length;
  const q = target.indexOf('?');
  if (q >= 0) end = q;
  const h = target.indexOf('#');
  if (h >= 0 && h < end) end = h;
  const p = target.slice(0, end);
  if (!p.includes('.')) return p;
  const out: string[] = [];
  const parts = p.split('/');
  for (let i = 0; i < parts.length; i++) {
    const s = parts[i];
    if (s === '.') { if (i === parts.length - 1) out.push(''); continue; }
    if (s === '..') { if (out.length > 1) out.pop(); if (i === parts.length - 1) out.push(''); continue; }
    out.push(s);
  }
  const r = out.join('/');
  return r.startsWith('/') ? r : `/${r}`;
}

// --- IP blocks ---

export type IpMatch = (ip: string) => boolean;

/** "203.0.113.4" or "203.0.113.0/24" (IPv4 or IPv6). Throws a message for a bad block. */
export function cidrMatcher(block: string): IpMatch {
  const slash = block.indexOf('/');
  const addr = slash >= 0 ? block.slice(0, slash) : block;
  const fam = isIP(addr);
  if (fam === 0) throw new Error(`${JSON.stringify(block)} is not an IP address or CIDR block`);
  const bits = fam === 4 ? 32 : 128;
  const len = slash >= 0 ? Number(block.slice(slash + 1)) : bits;
  if (!Number.isInteger(len) || len < 0 || len > bits || (slash >= 0 && !/^\d+$/.test(block.slice(slash + 1)))) {
    throw new Error(`${JSON.stringify(block)}: prefix length must be 0-${bits}`);
  }
  const want = ipBits(addr)!;
  return (ip) => {
    const got = ipBits(unmapV4(ip));
    if (got === null || got.length !== want.length) return false;
    for (let i = 0; i < len; i++) if (got[i] !== want[i]) return false;
    return true;
  };
}

export function anyCidr(blocks: string[] | undefined): IpMatch | null {
  if (blocks === undefined || blocks.length === 0) return null;
  const ms = blocks.map(cidrMatcher);
  return (ip) => { for (let i = 0; i < ms.length; i++) if (ms[i](ip)) return true; return false; };
}

/** `::ffff:1.2.3.4` (a v4 peer on a dual-stack socket) is the v4 address. */
function unmapV4(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** An address as a bit string ('0'/'1'), null when it is not one. */
function ipBits(ip: string): string | null {
  const fam = isIP(ip);
  if (fam === 4) return ip.split('.').map((o) => Number(o).toString(2).padStart(8, '0')).join('');
  if (fam !== 6) return null;
  let s = ip;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  // An embedded v4 tail becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[1].split('.').map(Number);
    s = s.slice(0, -v4[1].length) + `${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) return null;
  return groups.map((g) => parseInt(g || '0', 16).toString(2).padStart(16, '0')).join('');
}

/** A `ports` entry: Istio requires a port number. */
export function portValue(s: string): number {
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new Error(`${JSON.stringify(s)} is not a port number (1-65535)`);
  return Number(s);
}
