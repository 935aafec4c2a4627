// The consistent-hash key of a request (Istio consistentHash: httpHeaderName, httpCookie,
// useSourceIp, httpQueryParameterName = Envoy's route hash_policy), found by scanning the
// headers, path or peer address in place: no split, no slice, no allocation unless a cookie must
// be generated. -1 = the request has no key (Envoy then picks at random).
import { randomBytes } from 'node:crypto';
import { hash32, hash32Range } from './hash.ts';
import { fieldValue } from '../../engine/http1.ts';
import type { HashSpec } from '../../config/schema.ts';

/** What the key needs from a request (HttpStream has these fields). */
export interface HashRequest {
  /** Request headers, flat [name, value, ...]. */
  readonly headers: readonly string[];
  readonly path: string;
  readonly req: { readonly remoteAddress: string };
}

/** Hash of cookie `name`'s value in any Cookie header (surrounding quotes dropped), or -1. */
export function cookieHash(headers: readonly string[], name: string): number {
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i];
    if (n.length !== 6 || n.toLowerCase() !== 'cookie') continue;
    const v = headers[i + 1];
    let at = 0;
    while (at < v.length) {
      while (at < v.length && (v.charCodeAt(at) === 32 || v.charCodeAt(at) === 59)) at++; // ' ' ';'
      let end = v.indexOf(';', at);
      if (end < 0) end = v.length;
      if (end - at > name.length && v.charCodeAt(at + name.length) === 61 && v.startsWith(name, at)) {
        let from = at + name.length + 1, to = end;
        while (to > from && v.charCodeAt(to - 1) === 32) to--;
        if (to - from >= 2 && v.charCodeAt(from) === 34 && v.charCodeAt(to - 1) === 34) { from++; to--; }
        return hash32Range(v, from, to);
      }
      at = end + 1;
    }
  }
  return -1;
}

/** Hash of query parameter `name`'s first value (raw, not percent-decoded), or -1. */
export function queryHash(path: string, name: string): number {
  const q = path.indexOf('?');
  if (q < 0) return -1;
  let at = q + 1;
  const n = path.length;
  while (at < n) {
    let end = path.indexOf('&', at);
    if (end < 0) end = n;
    if (end - at >= name.length && path.startsWith(name, at) && (end - at === name.length || path.charCodeAt(at + name.length) === 61)) {
      const from = Math.min(end, at + name.length + 1);
      return hash32Range(path, from, end);
    }
    at = end + 1;
  }
  return -1;
}

/**
 * The request's hash under `spec`. For a cookie with a ttl that the request lacks, a value is
 * generated (Envoy's router does the same) and returned through `out.setCookie` for the
 * response: `name="value"; Max-Age=<ttl s>; Path=<path>; HttpOnly` (ttl 0 = a session cookie).
 */
export function requestHash(spec: HashSpec, r: HashRequest, out: { setCookie: string | null }): number {
  if (spec.header !== undefined) {
    const v = fieldValue(r.headers, spec.header);
    return v === undefined ? -1 : hash32(v);
  }
  if (spec.cookie !== undefined) {
    const c = spec.cookie;
    const h = cookieHash(r.headers, c.name);
    if (h >= 0 || c.ttlMs === undefined) return h;
    const value = randomBytes(8).toString('hex');
    let cookie = `${c.name}="${value}"`;
    if (c.ttlMs > 0) cookie += `; Max-Age=${Math.floor(c.ttlMs / 1000)}`;
    if (c.path) cookie += `; Path=${c.path}`;
    out.setCookie = `${cookie}; HttpOnly`;
    return hash32(value);
  }
  if (spec.sourceIp === true) return hash32(r.req.remoteAddress);
  if (spec.queryParameter !== undefined) return queryHash(r.path, spec.queryParameter);
  return -1;
}
