// Parsing and validation of the resources users write: Istio-shaped YAML (a documented subset of
// networking.istio.io) plus meshlet's own Dtab kind. Each error names file, resource and field.
import { createRequire } from 'node:module';

// yaml is loaded on first use: a sidecar fed by the control server (JSON) never pays its ~13 MB.
let yamlLib: typeof import('yaml') | null = null;
const parseAllDocuments: typeof import('yaml').parseAllDocuments = (text, opts) =>
  (yamlLib ??= createRequire(import.meta.url)('yaml') as typeof import('yaml')).parseAllDocuments(text, opts);
import {
  Ctx, bool, duration, int, list, map, nonEmptyStr, num, obj, oneOf, refine, regex, str,
  type Validator,
} from './validate.ts';
import { isIP } from 'node:net';

const stringMatch = obj({ exact: str, prefix: str, regex });

const percentage = obj({ value: num(0, 100) });

const headerOps = obj({ set: map(str), add: map(str), remove: list(str) });
const headersBlock = obj({ request: headerOps, response: headerOps });

const destination = obj({
  host: nonEmptyStr,
  subset: nonEmptyStr,
  port: obj({ number: int(1, 65535) }, ['number']),
}, ['host']);

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
 * Unset is STATIC here (Istio's unset is NONE, which meshlet cannot do).
 */
function checkResolution(se: { hosts?: string[]; resolution?: string; endpoints?: Array<{ address?: string }> }, p: string, c: Ctx): boolean {
  const mode = se.resolution ?? 'STATIC';
  const before = c.errors.length;
  const eps = se.endpoints ?? [];
  if (mode === 'NONE') {
    c.fail(`${p}.resolution`, 'NONE (pass-through to the original destination of an intercepted connection) needs transparent traffic capture, which meshlet does not do; use STATIC with endpoint IP addresses, or DNS');
  } else if (mode === 'STATIC') {
    eps.forEach((e, i) => {
      const a = e.address!;
      if (a.startsWith('unix://')) c.fail(`${p}.endpoints[${i}].address`, `unix domain socket endpoints are not supported (${JSON.stringify(a)})`);
      else if (!isIP(a)) c.fail(`${p}.endpoints[${i}].address`, `${JSON.stringify(a)} is not an IP address: resolution STATIC${se.resolution ? '' : ' (the default)'} needs IP addresses; set resolution: DNS to resolve host names`);
    });
  } else {
    if (eps.length === 0) {
      (se.hosts ?? []).forEach((h, i) => {
        if (!isFqdn(h)) c.fail(`${p}.hosts[${i}]`, `hosts must be FQDN if no endpoints are provided for resolution mode ${mode} (got ${JSON.stringify(h)})`);
      });
    }
    if (mode === 'DNS_ROUND_ROBIN' && eps.length > 1) c.fail(`${p}.endpoints`, `there must only be 0 or 1 endpoint for resolution mode ${mode}, got ${eps.length}`);
    eps.forEach((e, i) => {
      const a = e.address!;
      if (!isIP(a) && !isFqdn(a)) c.fail(`${p}.endpoints[${i}].address`, `endpoint address ${JSON.stringify(a)} is not a valid FQDN or an IP address`);
    });
  }
  return c.errors.length === before;
}

const serviceEntrySpec = refine(obj({
  hosts: list(nonEmptyStr),
  ports: list(obj({
    number: int(1, 65535),
    name: nonEmptyStr,
    protocol: oneOf('HTTP', 'http'),
    targetPort: int(1, 65535),
  }, ['number', 'name'])),
  resolution: oneOf('STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'NONE'),
  endpoints: list(obj({
    address: nonEmptyStr,
    ports: map(int(1, 65535)),
    labels: map(str),
  }, ['address'])),
}, ['hosts', 'ports']), checkResolution);

const httpMatch = obj({
  name: str,
  uri: stringMatch,
  method: stringMatch,
  authority: stringMatch,
  headers: map(stringMatch),
  withoutHeaders: map(stringMatch),
  queryParams: map(stringMatch),
  ignoreUriCase: bool,
});

const httpRoute = obj({
  name: str,
  match: list(httpMatch),
  route: list(obj({ destination, weight: int(0, 100), headers: headersBlock }, ['destination'])),
  rewrite: obj({ uri: str, authority: str }),
  timeout: duration,
  retries: obj({ attempts: int(0, 1000), perTryTimeout: duration, retryOn: str, retryRemoteLocalities: bool }),
  fault: obj({
    delay: obj({ fixedDelay: duration, percentage, percent: int(0, 100) }, ['fixedDelay']),
    abort: obj({ httpStatus: int(200, 599), percentage, percent: int(0, 100) }, ['httpStatus']),
  }),
  mirror: destination,
  mirrorPercentage: percentage,
  mirrors: list(obj({ destination, percentage }, ['destination'])),
  headers: headersBlock,
}, ['route']);

const virtualServiceSpec = obj({
  hosts: list(nonEmptyStr),
  http: list(httpRoute),
}, ['hosts', 'http']);

const connectionPool = obj({
  tcp: obj({ maxConnections: int(0), connectTimeout: duration }),
  http: obj({
    http1MaxPendingRequests: int(0),
    http2MaxRequests: int(0),
    maxRequestsPerConnection: int(0),
    maxRetries: int(0),
    idleTimeout: duration,
  }),
});

const outlierDetection = obj({
  consecutive5xxErrors: int(0),
  consecutiveGatewayErrors: int(0),
  consecutiveLocalOriginFailures: int(0),
  splitExternalLocalOriginErrors: bool,
  interval: duration,
  baseEjectionTime: duration,
  maxEjectionPercent: int(0, 100),
  minHealthPercent: int(0, 100),
});

const trafficPolicy = obj({
  loadBalancer: obj({ simple: oneOf('ROUND_ROBIN', 'LEAST_REQUEST', 'LEAST_CONN', 'RANDOM', 'UNSPECIFIED') }),
  connectionPool,
  outlierDetection,
  retryBudget: obj({ percent: num(0, 100), minRetryConcurrency: int(0) }),
});

const destinationRuleSpec = obj({
  host: nonEmptyStr,
  trafficPolicy,
  subsets: list(obj({ name: nonEmptyStr, labels: map(str), trafficPolicy }, ['name'])),
}, ['host']);

const dtabSpec = obj({ dtab: str }, ['dtab']);

export type ServiceEntrySpec = NonNullable<ReturnType<typeof serviceEntrySpec>>;
export type VirtualServiceSpec = NonNullable<ReturnType<typeof virtualServiceSpec>>;
export type HttpRoute = NonNullable<ReturnType<typeof httpRoute>>;
export type HttpMatch = NonNullable<ReturnType<typeof httpMatch>>;
export type Destination = NonNullable<ReturnType<typeof destination>>;
export type DestinationRuleSpec = NonNullable<ReturnType<typeof destinationRuleSpec>>;
export type TrafficPolicy = NonNullable<ReturnType<typeof trafficPolicy>>;
export type DtabSpec = NonNullable<ReturnType<typeof dtabSpec>>;

const KINDS: Record<string, { apiVersions: string[]; spec: Validator<unknown> }> = {
  ServiceEntry: { apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'], spec: serviceEntrySpec },
  VirtualService: { apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'], spec: virtualServiceSpec },
  DestinationRule: { apiVersions: ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'], spec: destinationRuleSpec },
  Dtab: { apiVersions: ['meshlet.io/v1alpha1'], spec: dtabSpec },
};

export type Resource =
  | { kind: 'ServiceEntry'; name: string; namespace: string; file: string; spec: ServiceEntrySpec }
  | { kind: 'VirtualService'; name: string; namespace: string; file: string; spec: VirtualServiceSpec }
  | { kind: 'DestinationRule'; name: string; namespace: string; file: string; spec: DestinationRuleSpec }
  | { kind: 'Dtab'; name: string; namespace: string; file: string; spec: DtabSpec };

export class ConfigError extends Error {
  errors: string[];
  constructor(errors: string[]) {
    super(errors.length === 1 ? errors[0] : `${errors.length} config errors:\n  ${errors.join('\n  ')}`);
    this.errors = errors;
  }
}

const metadata = obj({ name: nonEmptyStr, namespace: str, labels: map(str), annotations: map(str) }, ['name']);

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
  const ctx = new Ctx();
  const def = kind ? KINDS[kind] : undefined;
  if (!def) {
    ctx.fail('kind', kind ? `unknown kind "${kind}" (known: ${Object.keys(KINDS).join(', ')})` : 'is required');
  } else {
    if (typeof v.apiVersion !== 'string' || !def.apiVersions.includes(v.apiVersion)) {
      ctx.fail('apiVersion', `must be one of ${def.apiVersions.join(', ')}, got ${JSON.stringify(v.apiVersion)}`);
    }
    for (const k of Object.keys(v)) {
      if (!['apiVersion', 'kind', 'metadata', 'spec'].includes(k)) ctx.fail(k, 'unknown field (known: apiVersion, kind, metadata, spec)');
    }
    const meta = v.metadata === undefined ? ctx.fail('metadata', 'is required') : metadata(v.metadata, 'metadata', ctx);
    const spec = v.spec === undefined ? ctx.fail('spec', 'is required') : def.spec(v.spec, 'spec', ctx);
    if (ctx.errors.length === 0 && meta && spec) {
      return { kind, name: meta.name!, namespace: meta.namespace ?? 'default', file, spec } as Resource;
    }
  }
  for (const e of ctx.errors) errors.push(`${file}: ${label}: ${e}`);
  return undefined;
}
