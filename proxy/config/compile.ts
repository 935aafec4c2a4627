// Resources -> Snapshot. Cross-resource checks live here (a route's host and subset exist,
// weights sum to 100, one DestinationRule per host); per-field checks live in the schemas of
// resources.ts, whose types (required fields required) this file reads without assertions.
import { createHash } from 'node:crypto';
import type { Resource, DestinationRuleSpec, TrafficPolicy, HttpRoute, Destination } from './resources.ts';
import { ConfigError } from './resources.ts';
import { regexProblem } from './regex.ts';
import { durationMs } from './duration.ts';
import { Dtab, DtabParseError } from '../dtab/index.ts';
import { isPrime, MAGLEV_DEFAULT } from '../upstream/lb/hash.ts';
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
  endpoints: Array<{ address: string; ports: Record<string, number>; labels: Record<string, string>; weight?: number; identity?: Identity }>;
  targetPorts: Record<string, number>;     // port name -> targetPort (Istio: the endpoint port when the endpoint names none)
  resolution?: ClusterSpec['resolution'];  // absent = STATIC
  rule?: Extract<Resource, { kind: 'DestinationRule' }>;
}

/** A workload identity on an endpoint (snapshot EndpointSpec's optional fields). */
type Identity = Pick<EndpointSpec, 'serviceAccount' | 'namespace' | 'tlsMode'>;

/** Istio's endpoint label saying whether the workload's sidecar takes mTLS. */
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

function identity(e: { serviceAccount?: string; labels?: Record<string, string> }, namespace: string): Identity | undefined {
  const out: Identity = {};
  if (e.serviceAccount) { out.serviceAccount = e.serviceAccount; out.namespace = namespace; }
  const t = e.labels?.[TLS_MODE_LABEL];
  if (t === 'istio' || t === 'disabled') out.tlsMode = t;
  return Object.keys(out).length ? out : undefined;
}

/**
 * A host as written in a resource of `namespace`, resolved as Istio does: a bare short name
 * (`reviews`) means the service of that name in the resource's own namespace first; any other
 * name is looked up as written (FQDN, `reviews.ns`, `reviews.ns.svc`, or a unique bare alias).
 */
function lookupHost<T>(byAlias: Map<string, T>, host: string, namespace: string): T | undefined {
  const h = host.toLowerCase();
  if (!h.includes('.')) { const own = byAlias.get(`${h}.${namespace}.svc.cluster.local`); if (own) return own; }
  return byAlias.get(h);
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
  const mcs = cp?.http?.maxConcurrentStreams;
  if (mcs !== undefined && mcs > 0) p.maxConcurrentStreams = mcs;
  // Istio's defaults for a retryBudget block with fields unset: 20 %, at least 3 (envoy-semantics.md 1.1).
  const rb = tp?.retryBudget;
  if (rb) p.retryBudget = { percent: rb.percent ?? 20, minRetryConcurrency: rb.minRetryConcurrency ?? 3 };
  return p;
}

/**
 * Istio's port protocol: the declared one (upper-cased), else from the name's prefix
 * (`grpc`, `grpc-web`, `http2`, each alone or before a `-`), else HTTP.
 */
export function portProtocol(declared: string | undefined, name: string): string {
  if (declared) return declared.toUpperCase();
  const n = name.toLowerCase();
  const prefix = (p: string) => n === p || n.startsWith(`${p}-`);
  if (prefix('grpc-web')) return 'GRPC-WEB';
  if (prefix('grpc')) return 'GRPC';
  if (prefix('http2')) return 'HTTP2';
  return 'HTTP';
}

/**
 * How the cluster talks upstream, as Istio decides it: useClientProtocol keeps the downstream's;
 * GRPC, GRPC-WEB and HTTP2 ports are HTTP/2; an HTTP port only with h2UpgradePolicy UPGRADE (the
 * mesh default, DEFAULT, is DO_NOT_UPGRADE). Undefined = HTTP/1.1.
 */
function upstreamProtocol(portProto: string, tp: TrafficPolicy | undefined): ClusterSpec['protocol'] {
  const http = tp?.connectionPool?.http;
  if (http?.useClientProtocol === true) return 'client';
  if (portProto === 'GRPC' || portProto === 'GRPC-WEB' || portProto === 'HTTP2') return 'http2';
  if (http?.h2UpgradePolicy === 'UPGRADE') return 'http2';
  return undefined;
}

/** gRPC status names by code (Istio's abort.grpcStatus). */
const GRPC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

function outlier(tp: TrafficPolicy | undefined, at: string, errors: string[]): OutlierSpec | undefined {
  const od = tp?.outlierDetection;
  if (!od) return undefined; // absent block = no outlier detector (spec section 1.2)
  const split = od.splitExternalLocalOriginErrors ?? false;
  const spec: OutlierSpec = {
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
  // meshlet's extension block: Envoy's statistical detection with Envoy's defaults per field.
  const x = od.meshlet;
  if (x?.successRate) {
    const v = x.successRate;
    spec.successRate = { minimumHosts: v.minimumHosts ?? 5, requestVolume: v.requestVolume ?? 100, stdevFactor: v.stdevFactor ?? 1900, enforcing: v.enforcingPercent ?? 100 };
  }
  if (x?.failurePercentage) {
    const v = x.failurePercentage;
    spec.failurePercentage = { threshold: v.threshold ?? 85, minimumHosts: v.minimumHosts ?? 5, requestVolume: v.requestVolume ?? 50, enforcing: v.enforcingPercent ?? 100 };
  }
  if (x?.maxEjectionTime !== undefined) {
    spec.maxEjectionTimeMs = durationMs(x.maxEjectionTime);
    // Envoy refuses max_ejection_time below base_ejection_time.
    if (spec.maxEjectionTimeMs < spec.baseEjectionTimeMs) errors.push(`${at}.meshlet.maxEjectionTime: ${x.maxEjectionTime} is below baseEjectionTime (${spec.baseEjectionTimeMs} ms)`);
  }
  if (x?.successRateFloor !== undefined) spec.successRateFloor = x.successRateFloor;
  return spec;
}

/**
 * The traffic policy for one port: a portLevelSettings entry for it replaces the policy's
 * loadBalancer / connectionPool / outlierDetection blocks whole (Istio: port-level settings win).
 */
function forPort(tp: TrafficPolicy | undefined, port: number): TrafficPolicy | undefined {
  const p = tp?.portLevelSettings?.find((x) => x.port.number === port);
  if (!tp || !p) return tp;
  return {
    ...tp,
    loadBalancer: p.loadBalancer ?? tp.loadBalancer,
    connectionPool: p.connectionPool ?? tp.connectionPool,
    outlierDetection: p.outlierDetection ?? tp.outlierDetection,
  };
}

/** loadBalancer -> spec.lb (+ hash, warmupMs): simple and consistentHash are Istio's oneof. */
function applyLb(spec: ClusterSpec, tp: TrafficPolicy | undefined, at: string, errors: string[]): void {
  const b = tp?.loadBalancer;
  if (!b) return;
  const loc = b.localityLbSetting;
  if (loc) spec.locality = { enabled: loc.enabled ?? true, failover: loc.failover ?? [] };
  if (b.warmupDurationSecs !== undefined) {
    const ms = durationMs(b.warmupDurationSecs);
    if (ms > 0) spec.warmupMs = ms;
  }
  const s = b.simple;
  const ch = b.consistentHash;
  if (ch) {
    if (s !== undefined) { errors.push(`${at}: set simple or consistentHash, not both`); return; }
    const keys = [ch.httpHeaderName !== undefined, ch.httpCookie !== undefined, ch.useSourceIp === true, ch.httpQueryParameterName !== undefined].filter(Boolean).length;
    if (keys !== 1) { errors.push(`${at}.consistentHash: set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName (found ${keys})`); return; }
    if (ch.ringHash && ch.maglev) { errors.push(`${at}.consistentHash: set ringHash or maglev, not both`); return; }
    const hash: NonNullable<ClusterSpec['hash']> = {};
    if (ch.httpHeaderName !== undefined) hash.header = ch.httpHeaderName.toLowerCase();
    if (ch.httpCookie) {
      hash.cookie = { name: ch.httpCookie.name };
      if (ch.httpCookie.path !== undefined) hash.cookie.path = ch.httpCookie.path;
      if (ch.httpCookie.ttl !== undefined) hash.cookie.ttlMs = durationMs(ch.httpCookie.ttl);
    }
    if (ch.useSourceIp === true) hash.sourceIp = true;
    if (ch.httpQueryParameterName !== undefined) hash.queryParameter = ch.httpQueryParameterName;
    if (ch.maglev) {
      const size = ch.maglev.tableSize ?? MAGLEV_DEFAULT;
      if (!isPrime(size)) { errors.push(`${at}.consistentHash.maglev.tableSize: ${size} is not a prime (Maglev needs one; the default is 65537)`); return; }
      hash.tableSize = size;
      spec.lb = 'MAGLEV';
    } else {
      // Istio: ringHash (or the deprecated top-level minimumRingSize) -> RING_HASH, 1024 by default.
      hash.minimumRingSize = ch.ringHash?.minimumRingSize ?? ch.minimumRingSize ?? 1024;
      spec.lb = 'RING_HASH';
    }
    spec.hash = hash;
    return;
  }
  if (s === 'ROUND_ROBIN' || s === 'RANDOM' || s === 'PEAK_EWMA' || s === 'PASSTHROUGH') spec.lb = s;
  // else Istio's default (UNSPECIFIED, LEAST_CONN -> LEAST_REQUEST)
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
  const ambiguous = new Set<string>();                // bare short names two namespaces share

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
        spec: { host: host.toLowerCase(), aliases: [], ports: spec.ports.map((p) => ({ number: p.number, name: p.name, protocol: portProtocol(p.protocol, p.name) })), subsets: [] },
        // DNS without endpoints: the host itself is the name to resolve (Istio).
        endpoints: dns && (spec.endpoints ?? []).length === 0
          ? [{ address: host.toLowerCase(), ports: {}, labels: {} }]
          : (spec.endpoints ?? []).map((e) => ({ address: e.address, ports: e.ports ?? {}, labels: e.labels ?? {}, ...(e.weight !== undefined ? { weight: e.weight } : {}), identity: identity(e, r.namespace) })),
        targetPorts: Object.fromEntries(spec.ports.flatMap((p) => (p.targetPort !== undefined ? [[p.name, p.targetPort] as const] : []))),
      };
      if (dns) info.resolution = spec.resolution as ClusterSpec['resolution'];
      for (const a of hostAliases(host)) {
        // Two namespaces may each have `reviews`: the bare short name of a Kubernetes FQDN then
        // belongs to neither globally; a proxy resolves it in its own namespace (--namespace),
        // a resource in its own (lookupHost). Every other name must be unique.
        const short = a !== host.toLowerCase() && !a.includes('.');
        if (short && ambiguous.has(a)) continue;
        const prev = byAlias.get(a);
        if (prev && short && prev.spec.host !== a) {
          ambiguous.add(a);
          byAlias.delete(a);
          prev.spec.aliases = prev.spec.aliases.filter((x) => x !== a);
          continue;
        }
        if (prev) { errors.push(`${where(r)}: spec.hosts[${hi}]: host "${a}" is already defined by another ServiceEntry`); continue; }
        byAlias.set(a, info);
        info.spec.aliases.push(a);
      }
      services.set(info.spec.host, info);
    });
  }

  for (const r of resources) {
    if (r.kind !== 'DestinationRule') continue;
    const info = lookupHost(byAlias, r.spec.host, r.namespace);
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
          .map((e) => ({ address: e.address, port: e.ports[port.name] ?? info.targetPorts[port.name] ?? port.number, labels: e.labels, ...(e.weight !== undefined ? { weight: e.weight } : {}), ...e.identity }));
        const tp = forPort(s.tp, port.number);
        const spec: ClusterSpec = {
          name: clusterName(port.number, s.name, info.spec.host), service: info.spec.host, subset: s.name, port: port.number,
          lb: 'LEAST_REQUEST', endpoints, connectionPool: pool(tp),
        };
        const at = info.rule ? `${where(info.rule)}: ${s.name ? `subset ${s.name}, ` : ''}port ${port.number}: loadBalancer` : '';
        applyLb(spec, tp, at, errors);
        const proto = upstreamProtocol(port.protocol, tp);
        if (proto) spec.protocol = proto;
        if (info.resolution) spec.resolution = info.resolution;
        const od = outlier(tp, info.rule ? `${where(info.rule)}: outlierDetection` : '', errors);
        if (od) spec.outlier = od;
        if (s.tp?.tls) spec.tls = s.tp.tls;
        clusters.push(spec);
      }
    }
  }

  const resolveDest = (r: Resource, path: string, d: Destination): { cluster: string; host: string; subset: string } | undefined => {
    const info = lookupHost(byAlias, d.host, r.namespace);
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
      const info = lookupHost(byAlias, h, r.namespace);
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
    // A multi-port service: the port in Host selects the service port (Istio's vhost domains
    // carry "<host>:<port>"); without a port, the first.
    if (info.spec.ports.length > 1) {
      for (const p of info.spec.ports) {
        virtualHosts.push({
          name: `default:${info.spec.host}:${p.number}`, service: info.spec.host, domains: free.map((d) => `${d}:${p.number}`),
          routes: [{ name: 'default', match: [], destinations: [{ cluster: clusterName(p.number, '', info.spec.host), host: info.spec.host, subset: '', weight: 100 }], retries: ISTIO_DEFAULT_RETRY }],
        });
      }
    }
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

function mergePolicy(parent: TrafficPolicy | undefined, child: TrafficPolicy | undefined): TrafficPolicy | undefined {
  if (!child) return parent;
  return {
    loadBalancer: child.loadBalancer ?? parent?.loadBalancer,
    // The subset's port-level settings if it has any, else the parent's (Istio MergeTrafficPolicy).
    portLevelSettings: child.portLevelSettings ?? parent?.portLevelSettings,
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
    for (const p of intrinsicProblems(r)) errors.push(`${where(r)}: ${p}`);
    if (r.kind === 'AuthorizationPolicy') out.authorizationPolicies.push({ name: r.name, namespace: r.namespace, ...(r.dryRun ? { dryRun: true } : {}), spec: r.spec });
    else if (r.kind === 'PeerAuthentication') out.peerAuthentications.push({ name: r.name, namespace: r.namespace, spec: r.spec });
    else if (r.kind === 'RequestAuthentication') out.requestAuthentications.push({ name: r.name, namespace: r.namespace, spec: r.spec });
  }
  const n = out.authorizationPolicies.length + out.peerAuthentications.length + out.requestAuthentications.length;
  return n > 0 ? out : undefined;
}

/**
 * What is wrong with one resource by itself, beyond its schema (no other resource needed): a
 * source that takes objects one by one (the Kubernetes informers) rejects such an object alone and
 * keeps its last valid version, instead of the whole build failing on it.
 */
export function intrinsicProblems(r: Resource): string[] {
  const errs: string[] = [];
  if (r.kind === 'AuthorizationPolicy') {
    errs.push(...authzProblems({ name: r.name, namespace: r.namespace, ...(r.dryRun ? { dryRun: true } : {}), spec: r.spec }));
  } else if (r.kind === 'PeerAuthentication') {
    if (r.spec.portLevelMtls && !r.spec.selector) errs.push('spec.portLevelMtls: needs a workload selector (Istio)');
  } else if (r.kind === 'RequestAuthentication') {
    r.spec.jwtRules?.forEach((j, i) => {
      if (!j.jwks && !j.jwksUri) errs.push(`spec.jwtRules[${i}]: one of jwks, jwksUri is required`);
      if (j.jwks) { try { JSON.parse(j.jwks); } catch { errs.push(`spec.jwtRules[${i}].jwks: not JSON`); } }
    });
  }
  return errs;
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
    if (f.abort) {
      if (f.abort.httpStatus === undefined && f.abort.grpcStatus === undefined) errors.push(`${where(r)}: ${path}.fault.abort: set httpStatus or grpcStatus`);
      fault.abort = { httpStatus: f.abort.httpStatus ?? 503, percent: f.abort.percentage?.value ?? f.abort.percent ?? 0 };
      if (f.abort.grpcStatus !== undefined) fault.abort.grpcStatus = GRPC_CODES.indexOf(f.abort.grpcStatus);
    }
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
  if (route.upgradeConfigs) out.upgrades = route.upgradeConfigs.map((u) => ({ type: u.upgradeType.toLowerCase(), enabled: u.enabled ?? true }));
  if (route.idleTimeout !== undefined) out.idleTimeoutMs = durationMs(route.idleTimeout); // 0 = never
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
