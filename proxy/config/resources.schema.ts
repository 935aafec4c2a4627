// The resources users write, defined once with TypeBox: Istio-shaped (a documented subset of
// networking.istio.io) plus meshlet's own Dtab kind. One definition gives the types compile.ts
// reads (Static<>, in resources.ts), the check parseResource runs, and the JSON Schemas an editor
// validates with (docs/schema/<Kind>.json). Objects are closed: a misspelt field silently
// ignored is a config that lies, so an unknown field is an error that lists the known ones.
// Defaults are compile.ts's (Istio's), said here in descriptions where an editor shows them.
//
// Not imported at run time: `npm run schema` (scripts/gen-schema.ts) compiles it ahead of time
// into proxy/config/checks.generated.ts; a test fails when that file is stale.
import Type, { type TProperties, type TSchema } from 'typebox';
import Format from 'typebox/format';
import { DURATION_PATTERN } from './duration.ts';
import { regexProblem } from './regex.ts';
import { authorizationPolicySpec, peerAuthenticationSpec, requestAuthenticationSpec, ClientTlsSpec } from './security.schema.ts';

const closed = <P extends TProperties>(properties: P, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
const opt = Type.Optional;
const d = (description?: string) => (description ? { description } : {});
const str = (description?: string) => Type.String(d(description));
const nonEmptyStr = (description?: string) => Type.String({ minLength: 1, ...d(description) });
const bool = (description?: string) => Type.Boolean(d(description));
const int = (minimum?: number, maximum?: number, description?: string) =>
  Type.Integer({ ...(minimum !== undefined ? { minimum } : {}), ...(maximum !== undefined ? { maximum } : {}), ...d(description) });
const num = (minimum: number, maximum: number, description?: string) => Type.Number({ minimum, maximum, ...d(description) });
const map = <T extends TSchema>(t: T, description?: string) => Type.Record(Type.String(), t, d(description));
const list = <T extends TSchema>(t: T, description?: string) => Type.Array(t, d(description));
/** A Go/protobuf duration string ("1s", "250ms", "1m30s"): compile.ts converts it (durationMs). */
const duration = (description: string) => Type.String({ pattern: DURATION_PATTERN, description: `${description} (a duration like "1s", "250ms", "1m30s")` });
/** An RE2 pattern (Istio StringMatch.regex), checked by RE2's parser: errors carry its message. */
const regex = Type.String({ format: 're2', description: 'an RE2 regular expression (Istio\'s syntax; not JavaScript\'s)' });
const port = (description?: string) => int(1, 65535, description);
/** Istio treats connection-pool values <= 0 as unset. */
const limit = (what: string) => opt(int(0, undefined, `${what}; unset or 0 = unlimited (4294967295, Istio's default)`));

const stringMatch = Type.Object(
  { exact: opt(str()), prefix: opt(str()), regex: opt(regex) },
  { additionalProperties: false, minProperties: 1, maxProperties: 1, description: 'exactly one of exact, prefix, regex' },
);

const percentage = (what: string) => closed({ value: num(0, 100, 'percent, 0-100; fractions allowed') }, what);

const headerOps = closed({
  set: opt(map(str(), 'headers to set, replacing any value')),
  add: opt(map(str(), 'headers to append')),
  remove: opt(list(str(), 'header names to remove')),
});
const headersBlock = closed({ request: opt(headerOps), response: opt(headerOps) }, 'header manipulation');

export const destination = closed({
  host: nonEmptyStr('a host (or short name) a ServiceEntry defines'),
  subset: opt(nonEmptyStr('a subset its DestinationRule defines; unset = every endpoint')),
  port: opt(closed({ number: port() }, 'required when the host has more than one port')),
});

export const serviceEntrySpec = closed({
  hosts: list(nonEmptyStr(), 'the first is the canonical name; a Kubernetes FQDN (name.ns.svc.cluster.local) also answers to its short forms'),
  ports: list(closed({
    number: port(),
    name: nonEmptyStr(),
    protocol: opt(Type.Enum(['HTTP', 'http', 'HTTP2', 'http2', 'GRPC', 'grpc', 'GRPC-WEB', 'grpc-web'], {
      description: 'unset: from the name prefix (grpc-, http2-, grpc-web-), else HTTP. HTTP2, GRPC and GRPC-WEB are sent upstream over HTTP/2 (h2c), HTTP over HTTP/1.1 unless the DestinationRule upgrades it',
    })),
    targetPort: opt(port('the endpoint port for endpoints that name none; unset = number')),
  })),
  resolution: opt(Type.Enum(['STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'NONE'], {
    description: 'unset = STATIC (endpoint IP addresses). DNS re-resolves each endpoint (or, with none, each host) and uses every address; DNS_ROUND_ROBIN the first. NONE is refused: it needs transparent capture',
  })),
  endpoints: opt(list(closed({
    address: nonEmptyStr('an IP address (STATIC) or a host name (DNS)'),
    ports: opt(map(port(), 'service port name -> port of this endpoint')),
    labels: opt(map(str(), 'matched by DestinationRule subsets; security.istio.io/tlsMode: istio = the endpoint has a sidecar (mTLS is originated to it)')),
    weight: opt(int(1, 4294967295, 'relative share for weighted balancing (Istio WorkloadEntry weight); unset = 1')),
    serviceAccount: opt(nonEmptyStr("the workload's service account (Istio WorkloadEntry.serviceAccount), in the ServiceEntry's namespace: its mesh identity")),
  }))),
});

export const httpMatch = closed({
  name: opt(str()),
  uri: opt(stringMatch),
  method: opt(stringMatch),
  authority: opt(stringMatch),
  headers: opt(map(stringMatch, 'header name (any case) -> match')),
  withoutHeaders: opt(map(stringMatch, 'matches when these headers do not match')),
  queryParams: opt(map(stringMatch, 'query parameter -> match')),
  ignoreUriCase: opt(bool('uri matches fold ASCII case')),
}, 'every condition must hold; a route matches if any of its match blocks does (none = every request)');

export const httpRoute = closed({
  name: opt(str('unset = spec.http[i]')),
  match: opt(list(httpMatch)),
  route: list(closed({
    destination,
    weight: opt(int(0, 100, "percent of requests; a route's weights sum to 100; unset = 100 for a single destination, else 0")),
    headers: opt(headersBlock),
  })),
  rewrite: opt(closed({ uri: opt(str('replaces the matched uri prefix (or the whole path)')), authority: opt(str()) })),
  timeout: opt(duration('the whole request, retries included; unset or 0 = none (Istio disables Envoy\'s 15 s default)')),
  retries: opt(closed({
    attempts: opt(int(0, 1000, 'retries after the first try; unset or 0 = no retries')),
    perTryTimeout: opt(duration('each try')),
    retryOn: opt(str('Envoy retry_on conditions and HTTP status codes, comma-separated; unset = connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes')),
    retryRemoteLocalities: opt(bool('accepted; no effect (with locality balancing a retry moves to another locality only when the chosen one has no untried endpoint)')),
  }, 'unset = Istio\'s default: 2 attempts on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes')),
  fault: opt(closed({
    delay: opt(closed({
      fixedDelay: duration('delay before forwarding'),
      percentage: opt(percentage('share of requests delayed; wins over percent')),
      percent: opt(int(0, 100, 'deprecated integer percentage; neither set = 0 (no fault)')),
    })),
    abort: opt(closed({
      httpStatus: opt(int(200, 599, 'status answered instead of forwarding; a gRPC request gets it as a gRPC error (HTTP 200, grpc-status mapped as Envoy)')),
      grpcStatus: opt(Type.Enum(['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
        'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'],
      { description: 'gRPC status answered to gRPC requests (HTTP 200, trailers-only); a request that is not gRPC gets httpStatus, else 503' })),
      percentage: opt(percentage('share of requests aborted; wins over percent')),
      percent: opt(int(0, 100, 'deprecated integer percentage; neither set = 0 (no fault)')),
    })),
  }, 'fault injection')),
  mirror: opt(closed({ ...destination.properties }, 'a copy of each request goes here, its response dropped; not with mirrors')),
  mirrorPercentage: opt(percentage('share of requests mirrored; unset = 100')),
  mirrors: opt(list(closed({ destination, percentage: opt(percentage('share of requests mirrored; unset = 100')) }), 'several mirrors; not with mirror')),
  headers: opt(headersBlock),
  // meshlet extensions (Envoy's RouteAction fields; Istio has no VirtualService field for them).
  upgradeConfigs: opt(list(closed({
    upgradeType: nonEmptyStr('the Upgrade protocol (any case), e.g. "websocket", or "CONNECT"'),
    enabled: opt(bool('unset = true')),
  }), "Envoy's per-route upgrade_configs: enable or disable upgrades on this route; unset = the listener's defaults (outbound: websocket and CONNECT, inbound: websocket)")),
  idleTimeout: opt(duration("Envoy's route idle_timeout, for tunnels: an upgraded connection or CONNECT tunnel on this route with no bytes either way for this long is closed; 0 = never; unset = the listener's stream idle timeout")),
});

export const virtualServiceSpec = closed({
  hosts: list(nonEmptyStr(), 'names this VirtualService routes (hosts or short names of ServiceEntries)'),
  http: list(httpRoute, 'routes, tried in order: the first that matches wins'),
});

const connectionPool = closed({
  tcp: opt(closed({
    maxConnections: limit('connections to the cluster, all its endpoints together'),
    connectTimeout: opt(duration('unset = 10s')),
  })),
  http: opt(closed({
    http1MaxPendingRequests: limit('requests queued for a connection'),
    http2MaxRequests: limit('active requests'),
    maxRequestsPerConnection: opt(int(0, undefined, 'then the connection closes; unset or 0 = unlimited')),
    maxRetries: limit('concurrent retries'),
    idleTimeout: opt(duration('an idle upstream connection closes after; unset = 4s (meshlet: below common server keep-alives)')),
    h2UpgradePolicy: opt(Type.Enum(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE'], { description: 'UPGRADE: HTTP ports go upstream over HTTP/2; DEFAULT = the mesh default, DO_NOT_UPGRADE' })),
    useClientProtocol: opt(bool('send each request upstream in the protocol it arrived in (HTTP/1.1 or HTTP/2); h2UpgradePolicy is then ignored')),
    maxConcurrentStreams: opt(int(1, 2147483647, 'streams per HTTP/2 upstream connection; unset = 2147483647 (and the peer\'s SETTINGS)')),
  })),
});

const outlierDetection = closed({
  consecutive5xxErrors: opt(int(0, undefined, 'unset = 5; 0 = not enforced')),
  consecutiveGatewayErrors: opt(int(0, undefined, '502/503/504 in a row; enforced only when > 0')),
  consecutiveLocalOriginFailures: opt(int(0, undefined, 'with splitExternalLocalOriginErrors only; unset or 0 = 5')),
  splitExternalLocalOriginErrors: opt(bool('count connect failures and resets apart from 5xx; unset = false')),
  interval: opt(duration('ejection analysis interval; unset = 10s')),
  baseEjectionTime: opt(duration('unset = 30s; multiplied by the times an endpoint was ejected')),
  maxEjectionPercent: opt(int(0, 100, 'unset or 0 = 10')),
  minHealthPercent: opt(int(0, 100, 'below this share of healthy endpoints nothing is ejected; unset = 0')),
  meshlet: opt(closed({
    successRate: opt(closed({
      minimumHosts: opt(int(0, undefined, 'hosts with enough requests needed for the check; unset = 5')),
      requestVolume: opt(int(0, undefined, 'requests in an interval for a host to count; unset = 100')),
      stdevFactor: opt(int(0, undefined, 'threshold = mean - stdevFactor/1000 x stdev; unset = 1900')),
      enforcingPercent: opt(int(0, 100, 'chance an outlier is ejected; unset = 100')),
    }, 'Envoy success-rate ejection; absent = computed for /clusters, not enforced (Istio)')),
    failurePercentage: opt(closed({
      threshold: opt(int(0, 100, 'failure percent at or above which a host is ejected; unset = 85')),
      minimumHosts: opt(int(0, undefined, 'unset = 5')),
      requestVolume: opt(int(0, undefined, 'unset = 50')),
      enforcingPercent: opt(int(0, 100, 'unset = 100 when this block is present (Envoy: 0 when absent)')),
    }, 'Envoy failure-percentage ejection; absent = not enforced')),
    maxEjectionTime: opt(duration('cap on base x ejections; unset = max(300s, baseEjectionTime)')),
    successRateFloor: opt(num(0, 100, 'a host at or above this success rate (percent) is never ejected by either statistic')),
  }, "meshlet's extension: Envoy's success-rate and failure-percentage detection, which Istio does not expose")),
}, 'absent = no outlier detection');

const loadBalancer = closed({
  simple: opt(Type.Enum(['ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN', 'RANDOM', 'UNSPECIFIED', 'PASSTHROUGH', 'PEAK_EWMA'], {
    description: "unset, UNSPECIFIED and LEAST_CONN = LEAST_REQUEST (Istio's default); PASSTHROUGH = the request's authority when it is an IP literal; PEAK_EWMA = meshlet's extension (Linkerd's latency-aware P2C)",
  })),
  consistentHash: opt(closed({
    httpHeaderName: opt(nonEmptyStr('hash this request header')),
    httpCookie: opt(closed({
      name: nonEmptyStr(),
      path: opt(str('the generated cookie\'s Path')),
      ttl: opt(duration('set = generate the cookie when absent, with this Max-Age (0 = a session cookie)')),
    }, 'hash this cookie')),
    useSourceIp: opt(bool('hash the client address')),
    httpQueryParameterName: opt(nonEmptyStr('hash this query parameter')),
    ringHash: opt(closed({ minimumRingSize: opt(int(1, 8388608, 'unset = 1024')) }, 'Ketama ring (the default)')),
    maglev: opt(closed({ tableSize: opt(int(2, 5000011, 'a prime; unset = 65537')) }, 'Maglev table')),
    minimumRingSize: opt(int(1, 8388608, 'deprecated: ringHash.minimumRingSize')),
  }, 'sticky sessions: exactly one key (httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName); not with simple')),
  warmupDurationSecs: opt(duration('slow start: an endpoint that joins ramps from 10 % to full weight over this (ROUND_ROBIN, LEAST_REQUEST)')),
  localityLbSetting: opt(closed({
    enabled: opt(bool('unset = true (Istio); takes effect with outlierDetection and a proxy started with --zone/--region')),
    failover: opt(list(closed({ from: nonEmptyStr('a region'), to: nonEmptyStr('the region to fail over to') }))),
  }, 'prefer endpoints in this proxy\'s zone, then region, then failover regions (topology.kubernetes.io labels)')),
});

const trafficPolicyOf = (description?: string) => closed({
  loadBalancer: opt(loadBalancer),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  portLevelSettings: opt(list(closed({
    port: closed({ number: port() }),
    loadBalancer: opt(loadBalancer),
    connectionPool: opt(connectionPool),
    outlierDetection: opt(outlierDetection),
  }), "per service port: each block set here replaces the policy's block for that port")),
  retryBudget: opt(closed({
    percent: opt(num(0, 100, 'concurrent retries as a percent of active + pending requests; unset = 20')),
    minRetryConcurrency: opt(int(0, undefined, 'unset = 3')),
  }, 'replaces connectionPool.http.maxRetries when set')),
  tls: opt(ClientTlsSpec),
}, description);
export const trafficPolicy = trafficPolicyOf();

export const destinationRuleSpec = closed({
  host: nonEmptyStr('a host (or short name) a ServiceEntry defines; one DestinationRule per host'),
  trafficPolicy: opt(trafficPolicy),
  subsets: opt(list(closed({
    name: nonEmptyStr(),
    labels: opt(map(str(), 'endpoints with all these labels')),
    trafficPolicy: opt(trafficPolicyOf("replaces the parent's blocks whole (loadBalancer, connectionPool, ...): no field-level merge")),
  }))),
});

export const dtabSpec = closed({ dtab: str('the base delegation table, Finagle syntax (/svc/a => /svc/b;); replaces the default') });

const metadata = closed({
  name: nonEmptyStr(),
  namespace: opt(str('unset = default')),
  labels: opt(map(str())),
  annotations: opt(map(str())),
});

const ISTIO_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];
const SECURITY_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'];

/** A whole document of one kind: what a file holds, and what docs/schema/<Kind>.json describes. */
function resourceSchema<K extends string, S extends TSchema>(kind: K, apiVersions: string[], spec: S, description: string) {
  return Type.Object({
    apiVersion: Type.Enum(apiVersions),
    kind: Type.Literal(kind),
    metadata,
    spec,
  }, { additionalProperties: false, title: `meshlet ${kind}`, description });
}

/** Every kind meshlet reads, by kind (cross-field rules a JSON Schema cannot say live in resources.ts). */
export const RESOURCE_SCHEMAS = {
  ServiceEntry: resourceSchema('ServiceEntry', ISTIO_VERSIONS, serviceEntrySpec,
    'An Istio ServiceEntry (networking.istio.io), the subset meshlet implements: a service, its ports and endpoints.'),
  VirtualService: resourceSchema('VirtualService', ISTIO_VERSIONS, virtualServiceSpec,
    'An Istio VirtualService (networking.istio.io), the subset meshlet implements: HTTP routes, retries, timeouts, faults, mirrors.'),
  DestinationRule: resourceSchema('DestinationRule', ISTIO_VERSIONS, destinationRuleSpec,
    'An Istio DestinationRule (networking.istio.io), the subset meshlet implements: subsets, load balancing, connection pool, outlier detection, retry budget.'),
  Dtab: resourceSchema('Dtab', ['meshlet.io/v1alpha1'], dtabSpec,
    "meshlet's base delegation table (Finagle dtab syntax), overridable per request with l5d-dtab."),
  AuthorizationPolicy: resourceSchema('AuthorizationPolicy', SECURITY_VERSIONS, authorizationPolicySpec,
    'An Istio AuthorizationPolicy (security.istio.io): CUSTOM, DENY, ALLOW and AUDIT rules on sources, operations and conditions; annotation istio.io/dry-run: "true" = shadow.'),
  PeerAuthentication: resourceSchema('PeerAuthentication', SECURITY_VERSIONS, peerAuthenticationSpec,
    'An Istio PeerAuthentication (security.istio.io): whether a workload accepts mutual TLS, plaintext, or both.'),
  RequestAuthentication: resourceSchema('RequestAuthentication', SECURITY_VERSIONS, requestAuthenticationSpec,
    'An Istio RequestAuthentication (security.istio.io): JWT rules; an invalid token is refused, a missing one passes without identity.'),
};

/** The 're2' format: Istio's StringMatch.regex is RE2, checked by RE2's own parser (errors carry its message). */
export function isRe2(s: string): boolean {
  return regexProblem(s) === undefined;
}
Format.Set('re2', isRe2);
