// The snapshot's schema, defined once with TypeBox: the JSON Schema a proxy checks every pushed
// snapshot against (proxy/xds/validate-snapshot.ts), published as docs/schema/snapshot.json, and
// through Static<> the TypeScript types that proxy/config/schema.ts exports. Objects are closed
// (additionalProperties: false): a field this proxy does not know is a newer control server's,
// and ignoring it silently would lie.
//
// Not imported at run time: `npm run schema` (scripts/gen-schema.ts) compiles it ahead of time
// into proxy/config/checks.generated.ts, so a sidecar does not load the schema builder (~14 MB
// RSS, ~200 ms of start-up per proxy); a test fails when the generated files are stale.
import Type, { type TProperties, type TSchema } from 'typebox';
import { SecuritySpec, ClientTlsSpec } from './security.schema.ts';

const U32 = 4294967295;
const MS = { minimum: 0, maximum: 1e12 };
const closed = <P extends TProperties>(properties: P, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
const int = (minimum: number, maximum: number) => Type.Integer({ minimum, maximum });
const num = (minimum: number, maximum: number) => Type.Number({ minimum, maximum });
const dict = <T extends TSchema>(t: T) => Type.Record(Type.String(), t);
const opt = Type.Optional;

export const StringMatchSpec = closed({ exact: opt(Type.String()), prefix: opt(Type.String()), regex: opt(Type.String()) });

export const MatchSpec = closed({
  uri: opt(StringMatchSpec),
  method: opt(StringMatchSpec),
  authority: opt(StringMatchSpec),
  headers: opt(dict(StringMatchSpec)),          // lower-case names
  withoutHeaders: opt(dict(StringMatchSpec)),
  queryParams: opt(dict(StringMatchSpec)),
  ignoreUriCase: opt(Type.Boolean()),
});

export const HeaderOpsSpec = closed({
  set: opt(dict(Type.String())),
  add: opt(dict(Type.String())),
  remove: opt(Type.Array(Type.String())),
});

const HeadersBlock = closed({ request: opt(HeaderOpsSpec), response: opt(HeaderOpsSpec) });

export const RetrySpec = closed({
  attempts: int(0, 1000),
  perTryTimeoutMs: opt(num(MS.minimum, MS.maximum)),
  retryOn: Type.String({ description: "Envoy retry_on string (Istio's default when the route sets none)" }),
  retriableStatusCodes: Type.Array(int(100, 599)),
});

export const FaultSpec = closed({
  delay: opt(closed({ fixedDelayMs: num(MS.minimum, MS.maximum), percent: num(0, 100) })),
  abort: opt(closed({ httpStatus: int(200, 599), percent: num(0, 100), grpcStatus: opt(int(0, 16)) })),
});

export const MirrorSpec = closed({ cluster: Type.String(), host: Type.String(), percent: num(0, 100) });

export const RouteDestinationSpec = closed({
  cluster: Type.String({ description: 'outbound|<port>|<subset>|<host>' }),
  host: Type.String(),
  subset: Type.String(),
  weight: int(0, 100),      // destinations of a route sum to 100
  headers: opt(HeadersBlock),
});

export const RouteSpec = closed({
  name: Type.String(),
  match: Type.Array(MatchSpec, { description: 'OR of ANDs; empty = match all' }),
  destinations: Type.Array(RouteDestinationSpec),
  rewrite: opt(closed({ uri: opt(Type.String()), authority: opt(Type.String()) })),
  headers: opt(HeadersBlock),
  timeoutMs: opt(num(MS.minimum, MS.maximum)),  // none = no route timeout (Istio disables Envoy's 15 s default)
  retries: opt(RetrySpec),                      // absent = no retries (attempts: 0)
  fault: opt(FaultSpec),
  mirrors: opt(Type.Array(MirrorSpec)),
  /** Per-route upgrade switches (Envoy's RouteAction.upgrade_configs); type lower-case ("connect" for CONNECT). */
  upgrades: opt(Type.Array(closed({ type: Type.String(), enabled: Type.Boolean() }))),
  idleTimeoutMs: opt(num(MS.minimum, MS.maximum)),  // tunnels on this route: closed after this long idle
});

export const VirtualHostSpec = closed({
  name: Type.String({ description: 'the VirtualService (or "default:<host>")' }),
  service: Type.String({ description: 'canonical host of the service this vhost belongs to' }),
  domains: Type.Array(Type.String(), { description: 'lower-case names without port' }),
  routes: Type.Array(RouteSpec),
});

export const ConnectionPoolSpec = closed({
  maxConnections: int(0, U32),
  connectTimeoutMs: num(MS.minimum, MS.maximum),
  maxPendingRequests: int(0, U32),
  maxRequests: int(0, U32),
  maxRetries: int(0, U32),
  maxRequestsPerConnection: int(0, U32),  // 0 = unlimited
  idleTimeoutMs: num(MS.minimum, MS.maximum),
  /** HTTP/2 upstreams: streams per connection (Istio maxConcurrentStreams); absent = 2147483647, and never above the peer's SETTINGS. */
  maxConcurrentStreams: opt(int(1, 2147483647)),
  /**
   * Istio's trafficPolicy.retryBudget = Envoy's circuit-breaker retry_budget: concurrent retries
   * may be `percent` of the active + pending requests, at least `minRetryConcurrency`. Replaces
   * maxRetries when set. Absent (Istio's default) = maxRetries alone.
   */
  retryBudget: opt(closed({ percent: num(0, 100), minRetryConcurrency: int(0, U32) })),
});

export const OutlierSpec = closed({
  consecutive5xx: int(0, U32),            // 0 = not enforced
  consecutiveGatewayErrors: int(0, U32),  // detected at 5 by default, enforced only when set (Istio)
  enforceGateway: Type.Boolean(),
  consecutiveLocalOriginFailures: int(0, U32),
  splitExternalLocalOriginErrors: Type.Boolean(),
  intervalMs: num(MS.minimum, MS.maximum),
  baseEjectionTimeMs: num(MS.minimum, MS.maximum),
  maxEjectionPercent: num(0, 100),
  minHealthPercent: num(0, 100),
  /** Envoy max_ejection_time; absent = max(300 s, baseEjectionTimeMs). */
  maxEjectionTimeMs: opt(num(MS.minimum, MS.maximum)),
  /**
   * Envoy success-rate ejection (outlier_detection_impl.cc): absent = computed with Envoy's
   * defaults (5 hosts, 100 requests, factor 1900) for /clusters but not enforced (Istio sends
   * enforcing_success_rate 0).
   */
  successRate: opt(closed({
    minimumHosts: int(0, U32), requestVolume: int(0, U32), stdevFactor: int(0, U32), enforcing: num(0, 100),
  })),
  /** Envoy failure-percentage ejection: absent = computed, never enforced (Envoy's default enforcing 0). */
  failurePercentage: opt(closed({
    threshold: num(0, 100), minimumHosts: int(0, U32), requestVolume: int(0, U32), enforcing: num(0, 100),
  })),
  /** meshlet: a host whose success rate (percent) is at or above this is never ejected by either statistic. */
  successRateFloor: opt(num(0, 100)),
});

/** The consistent-hash key (exactly one) and the table (RING_HASH minimumRingSize, MAGLEV tableSize). */
export const HashSpec = closed({
  header: opt(Type.String({ description: 'lower-case header name' })),
  cookie: opt(closed({
    name: Type.String(),
    path: opt(Type.String()),
    ttlMs: opt(num(MS.minimum, MS.maximum)),  // set = generate the cookie when absent (0 = a session cookie)
  })),
  sourceIp: opt(Type.Boolean()),
  queryParameter: opt(Type.String()),
  minimumRingSize: opt(int(1, 8 * 1024 * 1024)),
  tableSize: opt(int(2, 5_000_011)),  // a prime
});

export const EndpointSpec = closed({
  address: Type.String({ description: "an IP; in a DNS cluster's spec, the host name (or IP) to resolve" }),
  port: int(1, 65535),
  labels: dict(Type.String()),
  weight: opt(int(1, U32)),  // absent = 1
  // The workload identity behind the endpoint (Kubernetes discovery, or a ServiceEntry endpoint's
  // serviceAccount): what mTLS and authorization check. Absent = unknown (not a meshed workload).
  serviceAccount: opt(Type.String()),
  namespace: opt(Type.String()),
  tlsMode: opt(Type.Enum(['istio', 'disabled'], { description: "Istio's security.istio.io/tlsMode: 'istio' when the pod runs a meshlet sidecar" })),
});

export const ClusterSpec = closed({
  name: Type.String({ description: 'outbound|<port>|<subset>|<host>' }),
  service: Type.String(),
  subset: Type.String(),
  port: int(1, 65535),
  lb: Type.Enum(['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'PEAK_EWMA', 'RING_HASH', 'MAGLEV', 'PASSTHROUGH'], {
    description: 'PEAK_EWMA is a meshlet extension (Linkerd\'s balancer); RING_HASH/MAGLEV need `hash`',
  }),
  hash: opt(HashSpec),
  warmupMs: opt(num(MS.minimum, MS.maximum)),  // slow start for endpoints that join later; absent = none
  /** Locality failover (Istio localityLbSetting): absent = enabled without failover targets. */
  locality: opt(closed({ enabled: Type.Boolean(), failover: Type.Array(closed({ from: Type.String(), to: Type.String() })) })),
  endpoints: Type.Array(EndpointSpec),
  connectionPool: ConnectionPoolSpec,
  outlier: opt(OutlierSpec),    // absent = no outlier detector
  /**
   * Absent = STATIC: endpoints are IP addresses. DNS (Envoy STRICT_DNS): each endpoint address
   * is re-resolved periodically and every address becomes a host; DNS_ROUND_ROBIN (Envoy
   * LOGICAL_DNS): only the first address of the latest answer (proxy/upstream/dns.ts).
   */
  resolution: opt(Type.Enum(['DNS', 'DNS_ROUND_ROBIN'])),
  /**
   * The upstream protocol. Absent = HTTP/1.1. `http2`: every request over HTTP/2 (h2c), as Istio
   * for ports whose protocol is GRPC, GRPC-WEB or HTTP2, or h2UpgradePolicy UPGRADE; `client`:
   * the downstream's protocol (useClientProtocol).
   */
  protocol: opt(Type.Enum(['http2', 'client'])),
  /** DestinationRule trafficPolicy.tls; absent = Istio's auto mTLS (ISTIO_MUTUAL to endpoints with tlsMode istio). */
  tls: opt(ClientTlsSpec),
});

export const ServiceSpec = closed({
  host: Type.String({ description: 'the first host listed in the ServiceEntry: the canonical name' }),
  aliases: Type.Array(Type.String(), { description: 'every name that selects this service (lower-case, no port)' }),
  ports: Type.Array(closed({ number: int(1, 65535), name: Type.String(), protocol: Type.String() })),
  subsets: Type.Array(Type.String(), { description: 'subset names from its DestinationRule' }),
});

export const Snapshot = Type.Object({
  version: Type.String({ description: 'monotonically increasing per source' }),
  hash: Type.String({ description: 'sha256 of the canonical content (not of version/source)' }),
  source: Type.String({ description: 'e.g. "file:/etc/meshlet", "control:http://127.0.0.1:15010"' }),
  services: Type.Array(ServiceSpec),
  clusters: Type.Array(ClusterSpec),
  virtualHosts: Type.Array(VirtualHostSpec),
  dtab: Type.String({ description: 'base dtab (Finagle syntax)' }),
  security: opt(SecuritySpec),
}, {
  additionalProperties: false,
  title: 'meshlet snapshot',
  description: 'What a meshlet proxy executes: the control server streams it, the proxy checks it against this schema before applying it.',
});
