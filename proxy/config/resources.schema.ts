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

const closed = <P extends TProperties>(properties: P, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
const opt = Type.Optional;
const str = Type.String();
const nonEmptyStr = Type.String({ minLength: 1 });
const bool = Type.Boolean();
const int = (minimum?: number, maximum?: number) =>
  Type.Integer({ ...(minimum !== undefined ? { minimum } : {}), ...(maximum !== undefined ? { maximum } : {}) });
const num = (minimum: number, maximum: number) => Type.Number({ minimum, maximum });
const map = <T extends TSchema>(t: T) => Type.Record(Type.String(), t);
const list = <T extends TSchema>(t: T) => Type.Array(t);
/** A Go/protobuf duration string ("1s", "250ms", "1m30s"): compile.ts converts it (durationMs). */
const duration = Type.String({ pattern: DURATION_PATTERN, description: 'a duration like "1s", "250ms", "1m30s"' });
/** An RE2 pattern (Istio StringMatch.regex), checked by RE2's parser: errors carry its message. */
const regex = Type.String({ format: 're2', description: 'an RE2 regular expression' });
const port = int(1, 65535);

const stringMatch = Type.Object(
  { exact: opt(str), prefix: opt(str), regex: opt(regex) },
  { additionalProperties: false, minProperties: 1, maxProperties: 1, description: 'exactly one of exact, prefix, regex' },
);

const percentage = closed({ value: num(0, 100) });

const headerOps = closed({ set: opt(map(str)), add: opt(map(str)), remove: opt(list(str)) });
const headersBlock = closed({ request: opt(headerOps), response: opt(headerOps) });

export const destination = closed({
  host: nonEmptyStr,
  subset: opt(nonEmptyStr),
  port: opt(closed({ number: port })),
});

export const serviceEntrySpec = closed({
  hosts: list(nonEmptyStr),
  ports: list(closed({
    number: port,
    name: nonEmptyStr,
    protocol: opt(Type.Enum(['HTTP', 'http'])),
    targetPort: opt(port),
  })),
  resolution: opt(Type.Enum(['STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'NONE'], { description: 'unset = STATIC (meshlet cannot do NONE)' })),
  endpoints: opt(list(closed({
    address: nonEmptyStr,
    ports: opt(map(port)),
    labels: opt(map(str)),
  }))),
});

export const httpMatch = closed({
  name: opt(str),
  uri: opt(stringMatch),
  method: opt(stringMatch),
  authority: opt(stringMatch),
  headers: opt(map(stringMatch)),
  withoutHeaders: opt(map(stringMatch)),
  queryParams: opt(map(stringMatch)),
  ignoreUriCase: opt(bool),
});

export const httpRoute = closed({
  name: opt(str),
  match: opt(list(httpMatch)),
  route: list(closed({ destination, weight: opt(int(0, 100)), headers: opt(headersBlock) })),
  rewrite: opt(closed({ uri: opt(str), authority: opt(str) })),
  timeout: opt(duration),
  retries: opt(closed({ attempts: opt(int(0, 1000)), perTryTimeout: opt(duration), retryOn: opt(str), retryRemoteLocalities: opt(bool) })),
  fault: opt(closed({
    delay: opt(closed({ fixedDelay: duration, percentage: opt(percentage), percent: opt(int(0, 100)) })),
    abort: opt(closed({ httpStatus: int(200, 599), percentage: opt(percentage), percent: opt(int(0, 100)) })),
  })),
  mirror: opt(destination),
  mirrorPercentage: opt(percentage),
  mirrors: opt(list(closed({ destination, percentage: opt(percentage) }))),
  headers: opt(headersBlock),
});

export const virtualServiceSpec = closed({
  hosts: list(nonEmptyStr),
  http: list(httpRoute),
});

const connectionPool = closed({
  tcp: opt(closed({ maxConnections: opt(int(0)), connectTimeout: opt(duration) })),
  http: opt(closed({
    http1MaxPendingRequests: opt(int(0)),
    http2MaxRequests: opt(int(0)),
    maxRequestsPerConnection: opt(int(0)),
    maxRetries: opt(int(0)),
    idleTimeout: opt(duration),
  })),
});

const outlierDetection = closed({
  consecutive5xxErrors: opt(int(0)),
  consecutiveGatewayErrors: opt(int(0)),
  consecutiveLocalOriginFailures: opt(int(0)),
  splitExternalLocalOriginErrors: opt(bool),
  interval: opt(duration),
  baseEjectionTime: opt(duration),
  maxEjectionPercent: opt(int(0, 100)),
  minHealthPercent: opt(int(0, 100)),
});

export const trafficPolicy = closed({
  loadBalancer: opt(closed({ simple: opt(Type.Enum(['ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN', 'RANDOM', 'UNSPECIFIED'])) })),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  retryBudget: opt(closed({ percent: opt(num(0, 100)), minRetryConcurrency: opt(int(0)) })),
});

export const destinationRuleSpec = closed({
  host: nonEmptyStr,
  trafficPolicy: opt(trafficPolicy),
  subsets: opt(list(closed({ name: nonEmptyStr, labels: opt(map(str)), trafficPolicy: opt(trafficPolicy) }))),
});

export const dtabSpec = closed({ dtab: str });


const metadata = closed({ name: nonEmptyStr, namespace: opt(str), labels: opt(map(str)), annotations: opt(map(str)) });

const ISTIO_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];

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
};

/** The 're2' format: Istio's StringMatch.regex is RE2, checked by RE2's own parser (errors carry its message). */
export function isRe2(s: string): boolean {
  return regexProblem(s) === undefined;
}
Format.Set('re2', isRe2);
