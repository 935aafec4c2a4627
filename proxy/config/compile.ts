// Resources -> Snapshot. Cross-resource checks live here (a route's host and subset exist,
// weights sum to 100, one DestinationRule per host); per-field checks live in the schemas of
// resources.ts, whose types (required fields required) this file reads without assertions.
import { createHash } from 'node:crypto';
import type { Resource, DestinationRuleSpec, TrafficPolicy, HttpRoute, Destination } from './resources.ts';
import { ConfigError } from './resources.ts';
import { regexProblem } from './regex.ts';
import { durationMs } from './duration.ts';
import { Dtab, DtabParseError } from '../dtab/index.ts';
import { authzProblems, ROOT_NAMESPACE } from '../filters/authz/policy.ts';
import {
  DEFAULT_CONNECTION_POOL, clusterName,
  type ClusterSpec, type ConnectionPoolSpec, type EndpointSpec, type MatchSpec, type OutlierSpec,
  type RetrySpec, type RouteSpec, type ServiceSpec, type Snapshot, type StringMatchSpec, type VirtualHostSpec,
  type FaultSpec, type MirrorSpec,
} from './schema.ts';

export { DEFAULT_BASE_DTAB } from '../dtab/index.ts';
import { DEFAULT_BASE_DTAB } from '../dtab/index.ts';

/** Istio's route retry policy when a VirtualService route sets no `retries` (spec section 4.4, Istio >= 1.24). */
export const ISTIO_DEFAULT_RETRY: RetrySpec = {
  attempts: 2,
  retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  retriableStatusCodes: [],
};

/** Every name a host is reachable by: the name itself and, for Kubernetes FQDNs, the short forms. */
export function hostAliases(host: string): string[] {
  const h = host.toLowerCase();
  const out = [h];
  const m = /^([^.]+)\.([^.]+)\.svc\.cluster\.local$/.exec(h);
  if (m) out.push(m[1], `${m[1]}.${m[2]}`, `${m[1]}.${m[2]}.svc`);
  return out;
}

interface ServiceInfo {
  spec: ServiceSpec;
  endpoints: Array<{ address: string; ports: Record<string, number>; labels: Record<string, string>; id?: Pick<EndpointSpec, 'serviceAccount' | 'namespace' | 'tlsMode'> }>;
  targetPorts: Record<string, number>;     // port name -> targetPort (Istio: the endpoint port when the endpoint names none)
  resolution?: ClusterSpec['resolution'];  // absent = STATIC
  rule?: Extract<Resource, { kind: 'DestinationRule' }>;
}

function where(r: Resource): string {
  return `${r.file}: ${r.kind}/${r.name}`;
}

function pool(tp: TrafficPolicy | undefined): ConnectionPoolSpec {
  const cp = tp?.connectionPool;
  const p = { ...DEFAULT_CONNECTION_POOL };
  // Istio treats values <= 0 as unset (a source FIXME: zero is not expressible).
  const set = (k: Exclude<keyof ConnectionPoolSpec, 'retryBudget'>, v: number | string | undefined) => {
    const n = typeof v === 'string' ? durationMs(v) : v;
    if (n !== undefined && n > 0) p[k] = n;
  };
  set('maxConnections', cp?.tcp?.maxConnections);
  set('connectTimeoutMs', cp?.tcp?.connectTimeout);
  set('maxPendingRequests', cp?.http?.http1MaxPendingRequests);
  set('maxRequests', cp?.http?.http2MaxRequests);
  set('maxRetries', cp?.http?.maxRetries);
  set('maxRequestsPerConnection', cp?.http?.maxRequestsPerConnection);
  set('idleTimeoutMs', cp?.http?.idleTimeout);
  // Istio's defaults for a retryBudget block with fields unset: 20 %, at least 3 (envoy-semantics.md 1.1).
  const rb = tp?.retryBudget;
  if (rb) p.retryBudget = { percent: rb.percent ?? 20, minRetryConcurrency: rb.minRetryConcurrency ?? 3 };
  return p;
}

function outlier(tp: TrafficPolicy | undefined): OutlierSpec | undefined {
  const od = tp?.outlierDetection;
  if (!od) return undefined; // absent block = no outlier detector (spec section 1.2)
  const split = od.splitExternalLocalOriginErrors ?? false;
  return {
    consecutive5xx: od.consecutive5xxErrors ?? 5,
    consecutiveGatewayErrors: od.consecutiveGatewayErrors || 5,
    enforceGateway: (od.consecutiveGatewayErrors ?? 0) > 0,
    // Istio sends it only when split and > 0; otherwise Envoy's default applies (5, enforced).
    consecutiveLocalOriginFailures: split ? (od.consecutiveLocalOriginFailures || 5) : 0,
    splitExternalLocalOriginErrors: split,
    intervalMs: od.interval !== undefined ? durationMs(od.interval) : 10_000,
    baseEjectionTimeMs: od.baseEjectionTime !== undefined ? durationMs(od.baseEjectionTime) : 30_000,
    maxEjectionPercent: od.maxEjectionPercent && od.maxEjectionPercent > 0 ? od.maxEjectionPercent : 10,
    minHealthPercent: od.minHealthPercent ?? 0,
  };
}

function lb(tp: TrafficPolicy | undefined): ClusterSpec['lb'] {
  const s = tp?.loadBalancer?.simple;
  if (s === 'ROUND_ROBIN' || s === 'RANDOM') return s;
  return 'LEAST_REQUEST'; // Istio's default (UNSPECIFIED, LEAST_CONN -> LEAST_REQUEST)
}

function parseRetryOn(s: string): { retryOn: string; codes: number[] } {
  const tokens: string[] = [];
  const codes: number[] = [];
  for (const t of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (/^\d+$/.test(t)) codes.push(Number(t)); else tokens.push(t);
  }
  if (codes.length > 0 && !tokens.includes('retriable-status-codes')) tokens.push('retriable-status-codes');
  return { retryOn: tokens.join(','), codes };
}

const RETRY_ON = new Set(['5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'envoy-ratelimited', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable']);

export function compile(resources: Resource[], opts: { version: string; source: string }): Snapshot {
  const errors: string[] = [];
  const services = new Map<string, ServiceInfo>();   // canonical host -> info
  const byAlias = new Map<string, ServiceInfo>();

  for (const r of resources) {
    if (r.kind !== 'ServiceEntry') continue;
    const spec = r.spec;
    const portNames = new Set(spec.ports.map((p) => p.name));
    spec.endpoints?.forEach((ep, i) => {
      for (const name of Object.keys(ep.ports ?? {})) {
        if (!portNames.has(name)) errors.push(`${where(r)}: spec.endpoints[${i}].ports.${name}: no service port is named "${name}"`);
      }
    });
    spec.hosts.forEach((host, hi) => {
      const dns = spec.resolution === 'DNS' || spec.resolution === 'DNS_ROUND_ROBIN';
      const info: ServiceInfo = {
        spec: { host: host.toLowerCase(), aliases: [], ports: spec.ports.map((p) => ({ number: p.number, name: p.name, protocol: 'HTTP' })), subsets: [] },
        // DNS without endpoints: the host itself is the name to resolve (Istio).
        endpoints: dns && (spec.endpoints ?? []).length === 0
          ? [{ address: host.toLowerCase(), ports: {}, labels: {} }]
          : (spec.endpoints ?? []).map((e) => ({ address: e.address, ports: e.ports ?? {}, labels: e.labels ?? {}, id: endpointIdentity(e, r.namespace) })),
        targetPorts: Object.fromEntries(spec.ports.flatMap((p) => (p.targetPort !== undefined ? [[p.name, p.targetPort] as const] : []))),
      };
      if (dns) info.resolution = spec.resolution as ClusterSpec['resolution'];
      for (const a of hostAliases(host)) {
        const prev = byAlias.get(a);
        if (prev) { errors.push(`${where(r)}: spec.hosts[${hi}]: host "${a}" is already defined by another ServiceEntry`); continue; }
        byAlias.set(a, info);
        info.spec.aliases.push(a);
      }
      services.set(info.spec.host, info);
    });
  }

  for (const r of resources) {
    if (r.kind !== 'DestinationRule') continue;
    const info = byAlias.get(r.spec.host.toLowerCase());
    if (!info) { errors.push(`${where(r)}: spec.host: no ServiceEntry defines host "${r.spec.host}"`); continue; }
    if (info.rule) { errors.push(`${where(r)}: spec.host: host "${r.spec.host}" already has DestinationRule/${info.rule.name}`); continue; }
    info.rule = r;
    const seen = new Set<string>();
    r.spec.subsets?.forEach((s, i) => {
      if (seen.has(s.name)) errors.push(`${where(r)}: spec.subsets[${i}].name: duplicate subset "${s.name}"`);
      seen.add(s.name);
    });
    info.spec.subsets = [...seen];
  }

  // Clusters: one per service x port x (no subset | each subset). A subset's trafficPolicy replaces
  // the parent's blocks whole (Istio's MergeTrafficPolicy: no field-level merge).
  const clusters: ClusterSpec[] = [];
  for (const info of services.values()) {
    const dr: DestinationRuleSpec | undefined = info.rule?.spec;
    const subsets: Array<{ name: string; labels: Record<string, string>; tp?: TrafficPolicy }> = [
      { name: '', labels: {}, tp: dr?.trafficPolicy },
      ...(dr?.subsets ?? []).map((s) => ({
        name: s.name, labels: s.labels ?? {},
        tp: mergePolicy(dr?.trafficPolicy, s.trafficPolicy),
      })),
    ];
    for (const port of info.spec.ports) {
      for (const s of subsets) {
        const endpoints: EndpointSpec[] = info.endpoints
          .filter((e) => Object.entries(s.labels).every(([k, v]) => e.labels[k] === v))
          .map((e) => ({ address: e.address, port: e.ports[port.name] ?? info.targetPorts[port.name] ?? port.number, labels: e.labels, ...e.id }));
        const spec: ClusterSpec = {
          name: clusterName(port.number, s.name, info.spec.host), service: info.spec.host, subset: s.name, port: port.number,
          lb: lb(s.tp), endpoints, connectionPool: pool(s.tp),
        };
        if (info.resolution) spec.resolution = info.resolution;
        const od = outlier(s.tp);
        if (od) spec.outlier = od;
        if (s.tp?.tls) spec.tls = s.tp.tls;
        clusters.push(spec);
      }
    }
  }

  const resolveDest = (r: Resource, path: string, d: Destination): { cluster: string; host: string; subset: string } | undefined => {
    const info = byAlias.get(d.host.toLowerCase());
    if (!info) { errors.push(`${where(r)}: ${path}.host: no ServiceEntry defines host "${d.host}"`); return undefined; }
    const subset = d.subset ?? '';
    if (subset && !info.spec.subsets.includes(subset)) {
      errors.push(`${where(r)}: ${path}.subset: subset "${subset}" is not defined by a DestinationRule for host "${info.spec.host}"`);
      return undefined;
    }
    let port = d.port?.number;
    if (port === undefined) {
      if (info.spec.ports.length !== 1) { errors.push(`${where(r)}: ${path}.port: host "${info.spec.host}" has ${info.spec.ports.length} ports; choose one`); return undefined; }
      port = info.spec.ports[0].number;
    } else if (!info.spec.ports.some((p) => p.number === port)) {
      errors.push(`${where(r)}: ${path}.port.number: host "${info.spec.host}" has no port ${port}`);
      return undefined;
    }
    return { cluster: clusterName(port, subset, info.spec.host), host: info.spec.host, subset };
  };

  const virtualHosts: VirtualHostSpec[] = [];
  const claimed = new Map<string, string>();
  for (const r of resources) {
    if (r.kind !== 'VirtualService') continue;
    const domains: string[] = [];
    let service = '';
    r.spec.hosts.forEach((h, i) => {
      const info = byAlias.get(h.toLowerCase());
      const names = info ? info.spec.aliases : [h.toLowerCase()];
      if (info && !service) service = info.spec.host;
      for (const n of names) {
        const prev = claimed.get(n);
        if (prev) errors.push(`${where(r)}: spec.hosts[${i}]: host "${n}" is already routed by VirtualService/${prev}`);
        else { claimed.set(n, r.name); domains.push(n); }
      }
    });
    const routes: RouteSpec[] = [];
    r.spec.http.forEach((route, i) => {
      const compiled = compileRoute(r, `spec.http[${i}]`, route, resolveDest, errors);
      if (compiled) routes.push(compiled);
    });
    virtualHosts.push({ name: `${r.namespace}/${r.name}`, service, domains, routes });
  }
  // Services no VirtualService claims get default routing: everything to the subset-less cluster.
  for (const info of services.values()) {
    const free = info.spec.aliases.filter((a) => !claimed.has(a));
    if (free.length === 0) continue;
    const port = info.spec.ports[0].number;
    virtualHosts.push({
      name: `default:${info.spec.host}`, service: info.spec.host, domains: free,
      routes: [{ name: 'default', match: [], destinations: [{ cluster: clusterName(port, '', info.spec.host), host: info.spec.host, subset: '', weight: 100 }], retries: ISTIO_DEFAULT_RETRY }],
    });
  }

  const dtabs = resources.filter((r) => r.kind === 'Dtab');
  if (dtabs.length > 1) errors.push(`${where(dtabs[1])}: only one Dtab resource is allowed (another is ${dtabs[0].file}: Dtab/${dtabs[0].name})`);
  const dtab = dtabs.length > 0 ? (dtabs[0] as Extract<Resource, { kind: 'Dtab' }>).spec.dtab : DEFAULT_BASE_DTAB;
  if (dtabs.length > 0) {
    try { Dtab.parse(dtab); } catch (e) { if (e instanceof DtabParseError) errors.push(`${where(dtabs[0])}: spec.dtab: ${e.message}`); else throw e; }
  }

  const security = compileSecurity(resources, errors);

  if (errors.length > 0) throw new ConfigError(errors);
  const body: Omit<Snapshot, 'version' | 'hash' | 'source'> = { services: [...services.values()].map((s) => s.spec), clusters, virtualHosts, dtab };
  if (security) body.security = security;
  const hash = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16);
  return { version: opts.version, hash, source: opts.source, ...body };
}

/** Istio's WorkloadEntry identity: serviceAccount in the entry's namespace; label security.istio.io/tlsMode. */
function endpointIdentity(e: { serviceAccount?: string; labels?: Record<string, string> }, namespace: string): Pick<EndpointSpec, 'serviceAccount' | 'namespace' | 'tlsMode'> | undefined {
  const mode = e.labels?.['security.istio.io/tlsMode'];
  if (!e.serviceAccount && mode === undefined) return undefined;
  return {
    ...(e.serviceAccount ? { serviceAccount: e.serviceAccount, namespace } : {}),
    ...(mode === 'istio' || mode === 'disabled' ? { tlsMode: mode } : {}),
  };
}

function mergePolicy(parent: TrafficPolicy | undefined, child: TrafficPolicy | undefined): TrafficPolicy | undefined {
  if (!child) return parent;
  return {
    loadBalancer: child.loadBalancer ?? parent?.loadBalancer,
    connectionPool: child.connectionPool ?? parent?.connectionPool,
    outlierDetection: child.outlierDetection ?? parent?.outlierDetection,
    retryBudget: child.retryBudget ?? parent?.retryBudget,
    tls: child.tls ?? parent?.tls,
  };
}

/**
 * The security.istio.io resources, carried whole (each proxy selects its workload's): checked
 * here so a bad policy is an error naming its file and field, never a proxy that denies or allows
 * by surprise. Absent from the snapshot when there are none (older snapshots stay byte-equal).
 */
function compileSecurity(resources: Resource[], errors: string[]): Snapshot['security'] {
  const out: NonNullable<Snapshot['security']> = { rootNamespace: ROOT_NAMESPACE, authorizationPolicies: [], peerAuthentications: [], requestAuthentications: [] };
  for (const r of resources) {
    if (r.kind === 'AuthorizationPolicy') {
      const e = { name: r.name, namespace: r.namespace, ...(r.dryRun ? { dryRun: true } : {}), spec: r.spec };
      for (const p of authzProblems(e)) errors.push(`${where(r)}: ${p}`);
      out.authorizationPolicies.push(e);
    } else if (r.kind === 'PeerAuthentication') {
      if (r.spec.portLevelMtls && !r.spec.selector) errors.push(`${where(r)}: spec.portLevelMtls: needs a workload selector (Istio)`);
      out.peerAuthentications.push({ name: r.name, namespace: r.namespace, spec: r.spec });
    } else if (r.kind === 'RequestAuthentication') {
      r.spec.jwtRules?.forEach((j, i) => {
        if (!j.jwks && !j.jwksUri) errors.push(`${where(r)}: spec.jwtRules[${i}]: one of jwks, jwksUri is required`);
        if (j.jwks) { try { JSON.parse(j.jwks); } catch { errors.push(`${where(r)}: spec.jwtRules[${i}].jwks: not JSON`); } }
      });
      out.requestAuthentications.push({ name: r.name, namespace: r.namespace, spec: r.spec });
    }
  }
  const n = out.authorizationPolicies.length + out.peerAuthentications.length + out.requestAuthentications.length;
  return n > 0 ? out : undefined;
}

function compileRoute(
  r: Resource, path: string, route: HttpRoute,
  resolveDest: (r: Resource, path: string, d: Destination) => { cluster: string; host: string; subset: string } | undefined,
  errors: string[],
): RouteSpec | undefined {
  const before = errors.length;
  const match: MatchSpec[] = (route.match ?? []).map((m) => {
    const out: MatchSpec = {};
    // Exactly one of exact/prefix/regex, and a regex RE2 accepts: the schema checked both.
    if (m.uri) out.uri = m.uri;
    if (m.method) out.method = m.method;
    if (m.authority) out.authority = m.authority;
    for (const key of ['headers', 'withoutHeaders', 'queryParams'] as const) {
      const src = m[key];
      if (!src) continue;
      const dst: Record<string, StringMatchSpec> = {};
      for (const [k, v] of Object.entries(src)) dst[key === 'queryParams' ? k : k.toLowerCase()] = v;
      out[key] = dst;
    }
    if (m.ignoreUriCase) out.ignoreUriCase = true;
    return out;
  });
  const dests = route.route;
  if (dests.length === 0) errors.push(`${where(r)}: ${path}.route: at least one destination is required`);
  const destinations = dests.flatMap((d, k): RouteSpec['destinations'] => {
    const res = resolveDest(r, `${path}.route[${k}].destination`, d.destination);
    const weight = d.weight ?? (dests.length === 1 ? 100 : 0);
    return res ? [{ ...res, weight, ...(d.headers ? { headers: d.headers } : {}) }] : [];
  });
  const sum = dests.reduce((s, d) => s + (d.weight ?? (dests.length === 1 ? 100 : 0)), 0);
  if (dests.length > 0 && sum !== 100) errors.push(`${where(r)}: ${path}.route: weights sum to ${sum}, must be 100`);

  let retries: RetrySpec | undefined = ISTIO_DEFAULT_RETRY;
  if (route.retries) {
    const rt = route.retries;
    const attempts = rt.attempts ?? 0;
    if (attempts <= 0) retries = undefined;
    else {
      const parsed = rt.retryOn !== undefined ? parseRetryOn(rt.retryOn) : { retryOn: ISTIO_DEFAULT_RETRY.retryOn, codes: [] };
      for (const t of parsed.retryOn.split(',').filter(Boolean)) {
        if (!RETRY_ON.has(t)) errors.push(`${where(r)}: ${path}.retries.retryOn: unknown retry condition "${t}"`);
      }
      retries = { attempts, retryOn: parsed.retryOn, retriableStatusCodes: parsed.codes };
      if (rt.perTryTimeout !== undefined) retries.perTryTimeoutMs = durationMs(rt.perTryTimeout);
    }
  }

  let fault: FaultSpec | undefined;
  if (route.fault) {
    const f = route.fault;
    fault = {};
    // No percentage -> the deprecated integer `percent` (default 0) -> no fault (spec section 6).
    if (f.delay) fault.delay = { fixedDelayMs: durationMs(f.delay.fixedDelay), percent: f.delay.percentage?.value ?? f.delay.percent ?? 0 };
    if (f.abort) fault.abort = { httpStatus: f.abort.httpStatus, percent: f.abort.percentage?.value ?? f.abort.percent ?? 0 };
  }

  const mirrors: MirrorSpec[] = [];
  if (route.mirror) {
    const res = resolveDest(r, `${path}.mirror`, route.mirror);
    if (res) mirrors.push({ cluster: res.cluster, host: res.host, percent: route.mirrorPercentage?.value ?? 100 });
  }
  route.mirrors?.forEach((m, k) => {
    const res = resolveDest(r, `${path}.mirrors[${k}].destination`, m.destination);
    if (res) mirrors.push({ cluster: res.cluster, host: res.host, percent: m.percentage?.value ?? 100 });
  });
  if (route.mirror && route.mirrors) errors.push(`${where(r)}: ${path}: set mirror or mirrors, not both`);

  if (errors.length > before) return undefined;
  const out: RouteSpec = { name: route.name ?? `${path}`, match, destinations };
  if (route.rewrite) out.rewrite = route.rewrite;
  if (route.headers) out.headers = route.headers;
  const timeoutMs = route.timeout !== undefined ? durationMs(route.timeout) : 0;
  if (timeoutMs > 0) out.timeoutMs = timeoutMs;
  if (retries) out.retries = retries;
  if (fault) out.fault = fault;
  if (mirrors.length) out.mirrors = mirrors;
  return out;
}

// Regexes were checked field by field when compiled from files; a snapshot from a control
// server is checked again here (a proxy must not trust the wire), every regex of every match,
// each error naming where it is.
export function checkRegexes(snapshot: Snapshot): void {
  const errors: string[] = [];
  snapshot.virtualHosts.forEach((vh, i) => vh.routes.forEach((rt, j) => rt.match.forEach((m, k) => {
    const at = `virtualHosts[${i}] (${vh.name}).routes[${j}] (${rt.name}).match[${k}]`;
    const check = (path: string, sm: StringMatchSpec | undefined) => {
      if (sm?.regex === undefined) return;
      const problem = regexProblem(sm.regex);
      if (problem !== undefined) errors.push(`${at}.${path}.regex: invalid regex: ${problem}`);
    };
    check('uri', m.uri);
    check('method', m.method);
    check('authority', m.authority);
    for (const key of ['headers', 'withoutHeaders', 'queryParams'] as const) {
      for (const [name, sm] of Object.entries(m[key] ?? {})) check(`${key}.${name}`, sm);
    }
  })));
  if (errors.length > 0) throw new ConfigError(errors);
}
