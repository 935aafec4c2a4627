// The route table, the logical level: Host -> virtual host -> first matching route -> weighted
// destination. Everything is compiled once per snapshot, including each filter's per-route config
// (retry policy, fault, mirrors: compiled by the filter's own config module); a request does map
// lookups and precompiled tests.
import type { HeaderOpsSpec, MatchSpec, RouteSpec, Snapshot, StringMatchSpec, VirtualHostSpec } from '../../config/schema.ts';
import { fullMatchTest, wireForm, type InputForm } from '../../config/regex.ts';
import { ISTIO_DEFAULT_RETRY } from '../../config/compile.ts';
import { asciiLower } from '../../engine/http1.ts';
import type { Cluster } from '../../upstream/cluster.ts';
import { compileRetry, type RouteRetry } from '../retry/policy.ts';
import { compileFault, type FaultConfig } from '../fault/config.ts';
import { compileMirrors, type MirrorTarget } from '../mirror/config.ts';
import { compileUpgrades, type RouteUpgrades } from '../router/upgrade-config.ts';

type Test = (v: string) => boolean;

// ignoreCase applies to exact and prefix only: Envoy's RouteMatch.case_sensitive is "ignored for
// safe_regex matching" and Istio maps ignoreUriCase to it, so a regex says `(?i)` itself.
// Header values and the path arrive as wire bytes (latin1 strings), so exact/prefix strings from
// the config are compared as their UTF-8 bytes (once, here); query values arrive decoded (`text`).
// Case is folded for ASCII letters only, as Envoy (absl ASCII folding): JS toLowerCase on a latin1
// string would also fold the bytes of UTF-8 sequences (0xC3 'Ã' -> 0xE3 'ã') into other characters.
function stringTest(m: StringMatchSpec, ignoreCase = false, input: InputForm = 'wire'): Test {
  const form = input === 'wire' ? wireForm : (x: string) => x;
  if (m.exact !== undefined) {
    const x = ignoreCase ? asciiLower(form(m.exact)) : form(m.exact);
    return ignoreCase ? (v) => asciiLower(v) === x : (v) => v === x;
  }
  if (m.prefix !== undefined) {
    const x = ignoreCase ? asciiLower(form(m.prefix)) : form(m.prefix);
    return ignoreCase ? (v) => asciiLower(v).startsWith(x) : (v) => v.startsWith(x);
  }
  // RE2, full match, linear time (proxy/config/regex.ts).
  return fullMatchTest(m.regex!, input);
}

/** What the matcher may look at; the query is parsed only if some route needs it. */
export interface RequestView {
  method: string;
  path: string;        // without query
  query: string;       // without '?'
  authority: string;
  /** One request header by lower-case name (repeated fields joined with ", "). */
  req: { header(lower: string): string | undefined };
}

type Matcher = (r: RequestView, q: () => URLSearchParams) => boolean;

function compileMatch(m: MatchSpec): Matcher {
  const tests: Matcher[] = [];
  if (m.uri) { const t = stringTest(m.uri, m.ignoreUriCase); tests.push((r) => t(r.path)); }
  if (m.method) { const t = stringTest(m.method); tests.push((r) => t(r.method)); }
  if (m.authority) { const t = stringTest(m.authority); tests.push((r) => t(r.authority)); }
  for (const [name, sm] of Object.entries(m.headers ?? {})) {
    const t = stringTest(sm);
    const lower = name.toLowerCase();
    tests.push((r) => { const v = r.req.header(lower); return v !== undefined && t(v); });
  }
  for (const [name, sm] of Object.entries(m.withoutHeaders ?? {})) {
    const t = stringTest(sm);
    const lower = name.toLowerCase();
    tests.push((r) => { const v = r.req.header(lower); return v === undefined || !t(v); });
  }
  for (const [name, sm] of Object.entries(m.queryParams ?? {})) {
    const t = stringTest(sm, false, 'text');
    tests.push((_r, q) => { const v = q().get(name); return v !== null && t(v); });
  }
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0];
  return (r, q) => { for (const t of tests) if (!t(r, q)) return false; return true; };
}

export interface Destination {
  cluster: Cluster;
  host: string;
  subset: string;
  weight: number;
  headers?: { request?: HeaderOpsSpec; response?: HeaderOpsSpec };
}

export interface CompiledRoute {
  name: string;
  vhost: string;
  service: string;
  matches: Matcher[];
  destinations: Destination[];
  totalWeight: number;
  rewrite?: { uri?: string; authority?: string };
  prefixMatch?: string;         // for prefix rewrites: the matched prefix of the first uri.prefix match
  headers?: { request?: HeaderOpsSpec; response?: HeaderOpsSpec };
  timeoutMs: number;            // 0 = none (the router's global timeout)
  retry: RouteRetry;            // the retry filter's config: spec + compiled policy
  fault: FaultConfig | null;    // the fault filter's config
  mirrors: MirrorTarget[] | null; // the mirror filter's config
  upgrades?: RouteUpgrades;     // the router's upgrade switches and tunnel idle timeout (unset = listener defaults)
}

export interface CompiledVHost {
  name: string;
  service: string;
  routes: CompiledRoute[];
  needsQuery: boolean;
}

export class RouteTable {
  private byDomain = new Map<string, CompiledVHost>();
  private byService = new Map<string, CompiledVHost>();

  // The proxy's Kubernetes namespace (--namespace): short names resolve in it first, as a pod's
  // DNS search path does (`reviews` -> reviews.<ns>.svc.cluster.local, `reviews.other` ->
  // reviews.other.svc.cluster.local), so two namespaces may each have `reviews`.
  private readonly nsSuffix: string | null;
  // Some domains carry a port ("<host>:<port>", multi-port services): only then is the port of
  // Host looked at.
  private readonly portDomains: boolean;

  constructor(snapshot: Snapshot, clusters: Map<string, Cluster>, namespace?: string) {
    this.nsSuffix = namespace ? `.${namespace.toLowerCase()}.svc.cluster.local` : null;
    this.portDomains = snapshot.virtualHosts.some((vh) => vh.domains.some((d) => d.includes(':') && !d.startsWith('[')));
    for (const vh of snapshot.virtualHosts) {
      const c = compileVHost(vh, clusters);
      for (const d of vh.domains) this.byDomain.set(d, c);
      // A service's own VirtualService wins over its default vhost.
      if (vh.service && (!this.byService.has(vh.service) || !vh.name.startsWith('default:'))) this.byService.set(vh.service, c);
    }
  }

  /** Host header value (may carry a port, any case) -> virtual host. */
  forHost(host: string): CompiledVHost | undefined {
    let h = host;
    let port = '';
    const colon = h.lastIndexOf(':');
    if (colon > 0 && h.indexOf(']') < colon) { port = h.slice(colon); h = h.slice(0, colon); }
    if (port && this.portDomains) { const v = this.byName(h, port); if (v) return v; }
    return this.byName(h, '');
  }

  /** A host name (no port) plus `port` (":9080" or ""), expanded in the proxy's namespace first. */
  private byName(h: string, port: string): CompiledVHost | undefined {
    if (this.nsSuffix !== null) {
      const l = h.toLowerCase();
      const dot = l.indexOf('.');
      const expanded = dot < 0 ? this.byDomain.get(l + this.nsSuffix + port)
        : l.indexOf('.', dot + 1) < 0 ? this.byDomain.get(`${l}.svc.cluster.local${port}`) : undefined;
      if (expanded) return expanded;
    }
    return this.byDomain.get(h + port) ?? this.byDomain.get(h.toLowerCase() + port);
  }

  forService(service: string): CompiledVHost | undefined { return this.byService.get(service); }
}

function compileVHost(vh: VirtualHostSpec, clusters: Map<string, Cluster>): CompiledVHost {
  let needsQuery = false;
  const routes = vh.routes.map((r: RouteSpec): CompiledRoute => {
    if (r.match.some((m) => m.queryParams && Object.keys(m.queryParams).length > 0)) needsQuery = true;
    const destinations = r.destinations.map((d) => {
      const cluster = clusters.get(d.cluster);
      if (!cluster) throw new Error(`route ${r.name}: cluster ${d.cluster} missing from snapshot`);
      return { cluster, host: d.host, subset: d.subset, weight: d.weight, headers: d.headers };
    });
    const prefixMatch = r.match.find((m) => m.uri?.prefix !== undefined)?.uri?.prefix;
    return {
      name: r.name, vhost: vh.name, service: vh.service,
      matches: r.match.map(compileMatch),
      destinations, totalWeight: destinations.reduce((s, d) => s + d.weight, 0),
      rewrite: r.rewrite, prefixMatch, headers: r.headers,
      timeoutMs: r.timeoutMs ?? 0, retry: compileRetry(r.retries), fault: compileFault(r.fault), mirrors: compileMirrors(r.mirrors, clusters, r.name),
      upgrades: compileUpgrades(r),
    };
  });
  return { name: vh.name, service: vh.service, routes, needsQuery };
}

/** First route whose match list (OR of ANDs) accepts the request; undefined = no route (404 NR). */
export function matchRoute(vh: CompiledVHost, r: RequestView): CompiledRoute | undefined {
  let params: URLSearchParams | null = null;
  const q = () => (params ??= new URLSearchParams(r.query));
  for (const route of vh.routes) {
    if (route.matches.length === 0) return route;
    for (const m of route.matches) if (m(r, q)) return route;
  }
  return undefined;
}

/** Envoy's weighted cluster pick: a random point in [0, total) over cumulative integer weights. */
export function pickDestination(route: CompiledRoute, random = Math.random): Destination | undefined {
  const ds = route.destinations;
  if (ds.length === 1) return ds[0].weight > 0 ? ds[0] : undefined;
  let point = Math.floor(random() * route.totalWeight);
  for (const d of ds) {
    if (point < d.weight) return d;
    point -= d.weight;
  }
  return undefined;
}

/** A route straight to one cluster (dtab subset and address targets): weights bypassed, Istio's default retries. */
export function directRoute(name: string, service: string, cluster: Cluster): CompiledRoute {
  return {
    name, vhost: name, service, matches: [],
    destinations: [{ cluster, host: service, subset: cluster.spec.subset, weight: 100 }], totalWeight: 100,
    timeoutMs: 0, retry: DEFAULT_RETRY, fault: null, mirrors: null,
  };
}

const DEFAULT_RETRY = compileRetry(ISTIO_DEFAULT_RETRY);
