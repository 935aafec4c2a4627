// The snapshot: what a proxy executes. Owned by the proxy; the control server imports it.
// It is plain JSON (regexes as strings) so it can be streamed; the proxy compiles matchers
// from it once per snapshot (proxy/filters/route.ts), never per request.

export interface Snapshot {
  version: string;          // monotonically increasing per source
  hash: string;             // sha256 of the canonical content (not of version/source)
  source: string;           // e.g. "file:/etc/meshlet", "control:http://127.0.0.1:15010"
  services: ServiceSpec[];
  clusters: ClusterSpec[];
  virtualHosts: VirtualHostSpec[];
  dtab: string;             // base dtab (Finagle syntax)
}

export interface ServiceSpec {
  host: string;             // the first host listed in the ServiceEntry: the canonical name
  aliases: string[];        // every name that selects this service (lower-case, no port)
  ports: Array<{ number: number; name: string; protocol: string }>;
  subsets: string[];        // subset names from its DestinationRule
}

export interface StringMatchSpec {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface MatchSpec {
  uri?: StringMatchSpec;
  method?: StringMatchSpec;
  authority?: StringMatchSpec;
  headers?: Record<string, StringMatchSpec>;          // lower-case names
  withoutHeaders?: Record<string, StringMatchSpec>;
  queryParams?: Record<string, StringMatchSpec>;
  ignoreUriCase?: boolean;
}

export interface HeaderOpsSpec {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

export interface RetrySpec {
  attempts: number;
  perTryTimeoutMs?: number;
  retryOn: string;          // Envoy retry_on string (Istio's default when the route sets none)
  retriableStatusCodes: number[];
}

export interface FaultSpec {
  delay?: { fixedDelayMs: number; percent: number };
  abort?: { httpStatus: number; percent: number };
}

export interface MirrorSpec {
  cluster: string;
  host: string;
  percent: number;          // 0..100
}

export interface RouteDestinationSpec {
  cluster: string;          // outbound|<port>|<subset>|<host>
  host: string;
  subset: string;
  weight: number;           // integer, destinations of a route sum to 100
  headers?: { request?: HeaderOpsSpec; response?: HeaderOpsSpec };
}

export interface RouteSpec {
  name: string;
  match: MatchSpec[];       // OR of ANDs; empty = match all
  destinations: RouteDestinationSpec[];
  rewrite?: { uri?: string; authority?: string };
  headers?: { request?: HeaderOpsSpec; response?: HeaderOpsSpec };
  timeoutMs?: number;       // none = no route timeout (Istio disables Envoy's 15 s default)
  retries?: RetrySpec;      // absent = no retries (attempts: 0)
  fault?: FaultSpec;
  mirrors?: MirrorSpec[];
}

export interface VirtualHostSpec {
  name: string;             // the VirtualService (or "default:<host>")
  service: string;          // canonical host of the service this vhost belongs to
  domains: string[];        // lower-case names without port
  routes: RouteSpec[];
}

export interface ConnectionPoolSpec {
  maxConnections: number;
  connectTimeoutMs: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
  maxRequestsPerConnection: number;  // 0 = unlimited
  idleTimeoutMs: number;
  /**
   * Istio's trafficPolicy.retryBudget = Envoy's circuit-breaker retry_budget: concurrent retries
   * may be `percent` of the active + pending requests, at least `minRetryConcurrency`. Replaces
   * maxRetries when set. Absent (Istio's default) = maxRetries alone.
   */
  retryBudget?: { percent: number; minRetryConcurrency: number };
}

export interface OutlierSpec {
  consecutive5xx: number;            // 0 = not enforced
  consecutiveGatewayErrors: number;  // detected at 5 by default, enforced only when set (Istio)
  enforceGateway: boolean;
  consecutiveLocalOriginFailures: number;
  splitExternalLocalOriginErrors: boolean;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
  minHealthPercent: number;
}

export interface EndpointSpec {
  address: string;          // an IP; in a DNS cluster's spec, the host name (or IP) to resolve
  port: number;
  labels: Record<string, string>;
  hostname?: string;        // a host resolved from this name (DNS clusters, at run time only)
}

export interface ClusterSpec {
  name: string;             // outbound|<port>|<subset>|<host>
  service: string;
  subset: string;
  port: number;
  lb: 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';
  endpoints: EndpointSpec[];
  connectionPool: ConnectionPoolSpec;
  outlier?: OutlierSpec;    // absent = no outlier detector
  /**
   * Absent = STATIC: endpoints are IP addresses. DNS (Envoy STRICT_DNS): each endpoint address
   * is re-resolved periodically and every address becomes a host; DNS_ROUND_ROBIN (Envoy
   * LOGICAL_DNS): only the first address of the latest answer (proxy/upstream/dns.ts).
   */
  resolution?: 'DNS' | 'DNS_ROUND_ROBIN';
}

/** Istio's values when connectionPool fields are unset (envoy-semantics.md section 1.1). */
export const ISTIO_UNLIMITED = 4294967295;
export const DEFAULT_CONNECTION_POOL: ConnectionPoolSpec = {
  maxConnections: ISTIO_UNLIMITED,
  connectTimeoutMs: 10_000,
  maxPendingRequests: ISTIO_UNLIMITED,
  maxRequests: ISTIO_UNLIMITED,
  maxRetries: ISTIO_UNLIMITED,
  maxRequestsPerConnection: 0,
  // Envoy's default is 1 h; a Node upstream closes idle sockets after 5 s, so a pool that kept
  // them longer would race the server's close. Shorter than every common server keep-alive.
  idleTimeoutMs: 4_000,
};

export function clusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}
