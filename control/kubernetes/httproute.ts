// Gateway API HTTPRoute (gateway.networking.k8s.io/v1) with a Service parentRef (GAMMA, GEP-1294)
// -> the VirtualService that routes the same way, checked by the same parser as a file's. What
// differs from a VirtualService is written out here:
//  - precedence: VirtualService routes are first-match in list order; HTTPRoute matches are
//    ordered by Gateway API's rules (apis/v1/httproute_types.go HTTPRouteRule): an Exact path,
//    then the longest Prefix (a RegularExpression after both: its precedence is
//    implementation-specific), then a method match, then the most header matches, then the most
//    query matches; ties keep rule order, then match order. So each (rule, match) becomes one
//    VirtualService route, sorted by that key.
//  - weights are relative (default 1): normalized to percentages summing to 100 (largest
//    remainder). A rule with no backendRefs, or only zero weights, answers 500 (Gateway API).
//  - filters: RequestHeaderModifier, ResponseHeaderModifier (also per backendRef), RequestMirror
//    (percent or fraction), URLRewrite (hostname; path ReplacePrefixMatch on a prefix match,
//    ReplaceFullPath on an exact one). Others are rejected by name.
//  - timeouts (GEP-1742): `request` covers the whole request, retries included; `backendRequest`
//    each try (<= request); "0s" = none.
// Only Service parents count: a route attached to a Gateway only is not mesh config. One
// HTTPRoute per Service: a second one for the same Service is rejected at compile time (named).
import { durationMs } from '../../proxy/config/duration.ts';
import type { Resource } from '../../proxy/config/resources.ts';
import { parseResource } from '../../proxy/config/resources.ts';
import { nsName, type KObj } from './translate.ts';

type Obj = Record<string, any>;

const isServiceRef = (p: Obj) => (p.group ?? '') === '' && (p.kind ?? 'Service') === 'Service';

function host(ref: Obj, ns: string): string {
  const refNs = ref.namespace ?? ns;
  return refNs === ns ? String(ref.name) : `${ref.name}.${refNs}.svc.cluster.local`;
}

/** Relative weights -> integer percentages summing to 100 (largest remainder, ties to the earlier). */
export function percentages(weights: number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  if (total <= 0) return weights.map(() => 0);
  const exact = weights.map((w) => (w * 100) / total);
  const out = exact.map(Math.floor);
  let left = 100 - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) { if (left <= 0) break; if (weights[i] > 0) { out[i]++; left--; } }
  return out;
}

interface Ranked { rule: number; match: number; key: number[]; route: Obj }

/** Gateway API precedence as a sort key (smaller first). */
function precedence(m: Obj): number[] {
  const t = m.path?.type ?? 'PathPrefix';
  const v = String(m.path?.value ?? '/');
  const kind = t === 'Exact' ? 0 : t === 'PathPrefix' ? 1 : 2;
  return [kind, kind === 1 ? -v.length : 0, m.method ? 0 : 1, -(m.headers?.length ?? 0), -(m.queryParams?.length ?? 0)];
}

function cmp(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

function stringMatch(type: string | undefined, value: string, exactName: string): Obj {
  return type === 'RegularExpression' ? { regex: value } : { [exactName]: value };
}

function headerOps(f: Obj | undefined): Obj | undefined {
  if (!f) return undefined;
  const out: Obj = {};
  if (f.set?.length) out.set = Object.fromEntries(f.set.map((h: Obj) => [h.name, h.value]));
  if (f.add?.length) out.add = Object.fromEntries(f.add.map((h: Obj) => [h.name, h.value]));
  if (f.remove?.length) out.remove = [...f.remove];
  return out;
}

function headersBlock(filters: Obj[] | undefined, where: string, errors: string[]): Obj | undefined {
  const block: Obj = {};
  for (const [i, f] of (filters ?? []).entries()) {
    if (f.type === 'RequestHeaderModifier') block.request = headerOps(f.requestHeaderModifier);
    else if (f.type === 'ResponseHeaderModifier') block.response = headerOps(f.responseHeaderModifier);
    else if (where.includes('backendRefs')) errors.push(`${where}.filters[${i}].type: "${f.type}" is not supported on a backendRef (RequestHeaderModifier, ResponseHeaderModifier)`);
  }
  return Object.keys(block).length ? block : undefined;
}

/** One HTTPRoute -> the VirtualServices (one per Service parent) it stands for; errors name the route and field. */
export function httpRouteToResources(o: KObj, errors: string[]): Resource[] {
  const ns = o.metadata?.namespace ?? 'default';
  const name = String(o.metadata?.name);
  const label = `apiserver:HTTPRoute ${nsName(o)}`;
  const fail = (path: string, msg: string) => { errors.push(`${label}: HTTPRoute/${name}: ${path}: ${msg}`); };
  const spec = o.spec ?? {};
  const before = errors.length;
  const parents = ((spec.parentRefs ?? []) as Obj[]).filter(isServiceRef);
  if (parents.length === 0) return [];
  const ranked: Ranked[] = [];
  ((spec.rules ?? []) as Obj[]).forEach((rule, ri) => {
    const at = `spec.rules[${ri}]`;
    const refs = (rule.backendRefs ?? []) as Obj[];
    for (const [bi, b] of refs.entries()) {
      if ((b.group ?? '') !== '' || (b.kind ?? 'Service') !== 'Service') fail(`${at}.backendRefs[${bi}]`, `only Service backends are supported (got ${b.group ?? ''}/${b.kind})`);
      if (typeof b.port !== 'number') fail(`${at}.backendRefs[${bi}].port`, 'is required for a Service backend');
    }
    const weights = percentages(refs.map((b) => (typeof b.weight === 'number' ? b.weight : 1)));
    const live = refs.map((b, i) => ({ b, w: weights[i], i })).filter((x) => x.w > 0);
    const base: Obj = {};
    const req = headersBlock(rule.filters, at, errors);
    if (req) base.headers = req;
    const mirrors: Obj[] = [];
    let rewrite: Obj | undefined;
    for (const [fi, f] of ((rule.filters ?? []) as Obj[]).entries()) {
      if (f.type === 'RequestHeaderModifier' || f.type === 'ResponseHeaderModifier') continue;
      if (f.type === 'RequestMirror') {
        const m = f.requestMirror ?? {};
        const pct = m.percent ?? (m.fraction ? (100 * m.fraction.numerator) / (m.fraction.denominator ?? 100) : 100);
        mirrors.push({ destination: { host: host(m.backendRef ?? {}, ns), ...(typeof m.backendRef?.port === 'number' ? { port: { number: m.backendRef.port } } : {}) }, percentage: { value: pct } });
      } else if (f.type === 'URLRewrite') {
        rewrite = { ...(f.urlRewrite?.hostname ? { authority: f.urlRewrite.hostname } : {}) };
        const p = f.urlRewrite?.path;
        if (p) rewrite.pathType = p.type, rewrite.path = p.type === 'ReplaceFullPath' ? p.replaceFullPath : p.replacePrefixMatch, rewrite.at = `${at}.filters[${fi}].urlRewrite.path`;
      } else fail(`${at}.filters[${fi}].type`, `"${f.type}" is not supported (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, URLRewrite)`);
    }
    if (mirrors.length) base.mirrors = mirrors;
    const t = rule.timeouts ?? {};
    const reqMs = t.request !== undefined ? safeMs(t.request, `${at}.timeouts.request`, fail) : undefined;
    const tryMs = t.backendRequest !== undefined ? safeMs(t.backendRequest, `${at}.timeouts.backendRequest`, fail) : undefined;
    if (reqMs && tryMs && tryMs > reqMs) fail(`${at}.timeouts.backendRequest`, `(${t.backendRequest}) must not be longer than timeouts.request (${t.request})`);
    if (t.request !== undefined) base.timeout = t.request;        // "0s" = none, as for a VirtualService
    if (tryMs) base.retries = { attempts: 2, perTryTimeout: t.backendRequest };
    const matches = ((rule.matches ?? []) as Obj[]).length ? (rule.matches as Obj[]) : [{ path: { type: 'PathPrefix', value: '/' } }];
    matches.forEach((m, mi) => {
      const match: Obj = {};
      const pt = m.path?.type ?? 'PathPrefix';
      const pv = String(m.path?.value ?? '/');
      match.uri = pt === 'Exact' ? { exact: pv } : pt === 'RegularExpression' ? { regex: pv } : { prefix: pv };
      if (m.method) match.method = { exact: m.method };
      if (m.headers?.length) match.headers = Object.fromEntries(m.headers.map((h: Obj) => [h.name, stringMatch(h.type, h.value, 'exact')]));
      if (m.queryParams?.length) match.queryParams = Object.fromEntries(m.queryParams.map((q: Obj) => [q.name, stringMatch(q.type, q.value, 'exact')]));
      const route: Obj = { name: `${name}.rules[${ri}].matches[${mi}]`, match: [match], ...structuredClone(base) };
      if (rewrite) {
        const rw: Obj = { ...(rewrite.authority ? { authority: rewrite.authority } : {}) };
        if (rewrite.pathType === 'ReplacePrefixMatch') {
          if (pt !== 'PathPrefix') fail(rewrite.at, 'ReplacePrefixMatch needs a PathPrefix match');
          else rw.uri = rewrite.path;
        } else if (rewrite.pathType === 'ReplaceFullPath') {
          // A VirtualService rewrite replaces the matched prefix, so a full-path replacement is exact only on an Exact match.
          if (pt !== 'Exact') fail(rewrite.at, 'ReplaceFullPath is supported on an Exact path match only (meshlet rewrites the matched prefix)');
          else rw.uri = rewrite.path;
        }
        if (Object.keys(rw).length) route.rewrite = rw;
      }
      if (live.length === 0) {
        // No usable backend: Gateway API answers 500. The parent Service is the (never reached) destination.
        route.route = [{ destination: { host: host(parents[0], ns) } }];
        route.fault = { abort: { httpStatus: 500, percentage: { value: 100 } } };
        delete route.retries;
      } else {
        route.route = live.map(({ b, w, i }) => {
          const d: Obj = { destination: { host: host(b, ns), ...(typeof b.port === 'number' ? { port: { number: b.port } } : {}) }, weight: w };
          const h = headersBlock(b.filters, `${at}.backendRefs[${i}]`, errors);
          if (h) d.headers = h;
          return d;
        });
      }
      ranked.push({ rule: ri, match: mi, key: precedence(m), route });
    });
  });
  if (errors.length > before) return [];
  ranked.sort((a, b) => cmp(a.key, b.key) || a.rule - b.rule || a.match - b.match);
  const out: Resource[] = [];
  for (const p of parents) {
    const doc = {
      apiVersion: 'networking.istio.io/v1', kind: 'VirtualService',
      metadata: { name: `httproute-${name}${parents.length > 1 ? `-${p.name}` : ''}`, namespace: ns },
      spec: { hosts: [host(p, ns)], http: ranked.map((r) => r.route) },
    };
    const r = parseResource(label, doc, errors);
    if (r) out.push(r);
  }
  return out;
}

function safeMs(v: unknown, path: string, fail: (p: string, m: string) => void): number | undefined {
  try { return durationMs(String(v)); } catch { fail(path, `${JSON.stringify(v)} is not a duration (GEP-2257: e.g. "10s", "500ms", "1h")`); return undefined; }
}
