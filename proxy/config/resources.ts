// Parsing and validation of the resources users write: Istio-shaped YAML (a documented subset of
// networking.istio.io) plus meshlet's own Dtab kind. Each error names file, resource and field.
import { createRequire } from 'node:module';

// yaml is loaded on first use: a sidecar fed by the control server (JSON) never pays its ~13 MB.
let yamlLib: typeof import('yaml') | null = null;
const parseAllDocuments: typeof import('yaml').parseAllDocuments = (text, opts) =>
  (yamlLib ??= createRequire(import.meta.url)('yaml') as typeof import('yaml')).parseAllDocuments(text, opts);
import Type, { type Static, type TProperties, type TSchema } from 'typebox';
import { DURATION_PATTERN, checker, dropNullFields, type Checker } from './validate.ts';
import { isIP } from 'node:net';

// The schemas below are the single definition of what users may write: the types compile.ts
// reads (Static<>), the check parseResource runs, and the JSON Schemas an editor validates with
// (docs/schema/, `npm run schema`). Objects are closed: a misspelt field silently ignored is a
// config that lies, so an unknown field is an error that lists the known ones.
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

const destination = closed({
  host: nonEmptyStr,
  subset: opt(nonEmptyStr),
  port: opt(closed({ number: port })),
});

const serviceEntrySpec = closed({
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

const httpMatch = closed({
  name: opt(str),
  uri: opt(stringMatch),
  method: opt(stringMatch),
  authority: opt(stringMatch),
  headers: opt(map(stringMatch)),
  withoutHeaders: opt(map(stringMatch)),
  queryParams: opt(map(stringMatch)),
  ignoreUriCase: opt(bool),
});

const httpRoute = closed({
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

const virtualServiceSpec = closed({
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

const trafficPolicy = closed({
  loadBalancer: opt(closed({ simple: opt(Type.Enum(['ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN', 'RANDOM', 'UNSPECIFIED'])) })),
  connectionPool: opt(connectionPool),
  outlierDetection: opt(outlierDetection),
  retryBudget: opt(closed({ percent: opt(num(0, 100)), minRetryConcurrency: opt(int(0)) })),
});

const destinationRuleSpec = closed({
  host: nonEmptyStr,
  trafficPolicy: opt(trafficPolicy),
  subsets: opt(list(closed({ name: nonEmptyStr, labels: opt(map(str)), trafficPolicy: opt(trafficPolicy) }))),
});

const dtabSpec = closed({ dtab: str });

export type ServiceEntrySpec = Static<typeof serviceEntrySpec>;
export type VirtualServiceSpec = Static<typeof virtualServiceSpec>;
export type HttpRoute = Static<typeof httpRoute>;
export type HttpMatch = Static<typeof httpMatch>;
export type Destination = Static<typeof destination>;
export type DestinationRuleSpec = Static<typeof destinationRuleSpec>;
export type TrafficPolicy = Static<typeof trafficPolicy>;
export type DtabSpec = Static<typeof dtabSpec>;

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

/** Every kind meshlet reads, its schema, and for ServiceEntry the cross-field rules a schema cannot say. */
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
type Kind = keyof typeof RESOURCE_SCHEMAS;

const CHECKERS = Object.fromEntries(
  Object.entries(RESOURCE_SCHEMAS).map(([k, s]) => [k, checker(s, 'resource')]),
) as { [K in Kind]: Checker<(typeof RESOURCE_SCHEMAS)[K]> };

/** A DNS name as Istio's ValidateFQDN wants it: dot-separated labels of letters, digits, '-' (no wildcard). */
function isFqdn(s: string): boolean {
  const n = s.endsWith('.') ? s.slice(0, -1) : s;
  return n.length > 0 && n.length <= 253 && n.split('.').every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

/**
 * Istio's per-resolution rules (pkg/config/validation ValidateServiceEntry): STATIC endpoints
 * are IP addresses (a host name would fail per request, ENOTFOUND); DNS endpoints are IPs or
 * FQDNs, and without endpoints the hosts themselves are resolved, so they must be FQDNs;
 * DNS_ROUND_ROBIN takes 0 or 1 endpoint. NONE forwards to the original destination of an
 * intercepted connection: meshlet has no transparent capture, so there is none to forward to.
 * Unset is STATIC here (Istio's unset is NONE, which meshlet cannot do). Runs on a spec the
 * schema accepted; returns its errors (field path: message).
 */
function resolutionProblems(se: ServiceEntrySpec, p: string): string[] {
  const errs: string[] = [];
  const fail = (path: string, message: string) => { errs.push(`${path}: ${message}`); };
  const mode = se.resolution ?? 'STATIC';
  const eps = se.endpoints ?? [];
  if (mode === 'NONE') {
    fail(`${p}.resolution`, 'NONE (pass-through to the original destination of an intercepted connection) needs transparent traffic capture, which meshlet does not do; use STATIC with endpoint IP addresses, or DNS');
  } else if (mode === 'STATIC') {
    eps.forEach((e, i) => {
      const a = e.address;
      if (a.startsWith('unix://')) fail(`${p}.endpoints[${i}].address`, `unix domain socket endpoints are not supported (${JSON.stringify(a)})`);
      else if (!isIP(a)) fail(`${p}.endpoints[${i}].address`, `${JSON.stringify(a)} is not an IP address: resolution STATIC${se.resolution ? '' : ' (the default)'} needs IP addresses; set resolution: DNS to resolve host names`);
    });
  } else {
    if (eps.length === 0) {
      se.hosts.forEach((h, i) => {
        if (!isFqdn(h)) fail(`${p}.hosts[${i}]`, `hosts must be FQDN if no endpoints are provided for resolution mode ${mode} (got ${JSON.stringify(h)})`);
      });
    }
    if (mode === 'DNS_ROUND_ROBIN' && eps.length > 1) fail(`${p}.endpoints`, `there must only be 0 or 1 endpoint for resolution mode ${mode}, got ${eps.length}`);
    eps.forEach((e, i) => {
      const a = e.address;
      if (!isIP(a) && !isFqdn(a)) fail(`${p}.endpoints[${i}].address`, `endpoint address ${JSON.stringify(a)} is not a valid FQDN or an IP address`);
    });
  }
  return errs;
}

type Common = { name: string; namespace: string; file: string };
export type Resource =
  | Common & { kind: 'ServiceEntry'; spec: ServiceEntrySpec }
  | Common & { kind: 'VirtualService'; spec: VirtualServiceSpec }
  | Common & { kind: 'DestinationRule'; spec: DestinationRuleSpec }
  | Common & { kind: 'Dtab'; spec: DtabSpec };

export class ConfigError extends Error {
  errors: string[];
  constructor(errors: string[]) {
    super(errors.length === 1 ? errors[0] : `${errors.length} config errors:\n  ${errors.join('\n  ')}`);
    this.errors = errors;
  }
}

/** Parse one file's text (multi-document YAML). Errors are appended to `errors`, never thrown. */
export function parseResourceText(file: string, text: string, errors: string[]): Resource[] {
  const out: Resource[] = [];
  let docs;
  try {
    docs = parseAllDocuments(text, { prettyErrors: true });
  } catch (e) {
    errors.push(`${file}: invalid YAML: ${(e as Error).message}`);
    return out;
  }
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${file} (document ${i + 1})` : file;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) errors.push(`${where}: invalid YAML: ${err.message.split('\n')[0]}`);
      return;
    }
    const value = doc.toJS();
    if (value === null || value === undefined) return; // empty document (e.g. a trailing ---)
    const r = parseResource(where, value, errors);
    if (r) out.push(r);
  });
  return out;
}

export function parseResource(file: string, value: unknown, errors: string[]): Resource | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    errors.push(`${file}: a resource must be a YAML mapping with apiVersion, kind, metadata and spec`);
    return undefined;
  }
  const v = value as Record<string, unknown>;
  const kind = typeof v.kind === 'string' ? v.kind : undefined;
  const name = (v.metadata as { name?: unknown } | undefined)?.name;
  const label = `${kind ?? '<no kind>'}/${typeof name === 'string' ? name : '<no name>'}`;
  const report = (errs: string[]) => { for (const e of errs) errors.push(`${file}: ${label}: ${e}`); };
  if (kind === undefined || !Object.hasOwn(CHECKERS, kind)) {
    report([`kind: ${kind ? `unknown kind "${kind}" (known: ${Object.keys(CHECKERS).join(', ')})` : 'is required'}`]);
    return undefined;
  }
  const check = CHECKERS[kind as Kind];
  dropNullFields(check.schema, v);
  if (!check.check(v)) { report(check.errors(v, '')); return undefined; }
  const common = { name: v.metadata.name, namespace: v.metadata.namespace ?? 'default', file };
  if (v.kind === 'ServiceEntry') {
    const problems = resolutionProblems(v.spec, 'spec');
    if (problems.length > 0) { report(problems); return undefined; }
  }
  return { ...common, kind: v.kind, spec: v.spec } as Resource;
}
