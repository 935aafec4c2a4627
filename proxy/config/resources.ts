// Parsing and validation of the resources users write: Istio-shaped YAML (a documented subset of
// networking.istio.io) plus meshlet's own Dtab kind. Each error names file, resource and field.
import { createRequire } from 'node:module';

// yaml is loaded on first use: a sidecar fed by the control server (JSON) never pays its ~13 MB.
let yamlLib: typeof import('yaml') | null = null;
const parseAllDocuments: typeof import('yaml').parseAllDocuments = (text, opts) =>
  (yamlLib ??= createRequire(import.meta.url)('yaml') as typeof import('yaml')).parseAllDocuments(text, opts);
import type { Static } from 'typebox';
import type * as R from './resources.schema.ts';
import type * as S from './security.schema.ts';
import { checker, dropNullFields, type Checker } from './validate.ts';
import { isIP } from 'node:net';

// The types are derived from the schemas of resources.schema.ts (type-only: no schema library
// is loaded to parse a file; the check is the ahead-of-time compiled one, checks.generated.ts).
export type ServiceEntrySpec = Static<typeof R.serviceEntrySpec>;
export type VirtualServiceSpec = Static<typeof R.virtualServiceSpec>;
export type HttpRoute = Static<typeof R.httpRoute>;
export type HttpMatch = Static<typeof R.httpMatch>;
export type Destination = Static<typeof R.destination>;
export type DestinationRuleSpec = Static<typeof R.destinationRuleSpec>;
export type TrafficPolicy = Static<typeof R.trafficPolicy>;
export type DtabSpec = Static<typeof R.dtabSpec>;
export type AuthorizationPolicyResourceSpec = Static<typeof S.authorizationPolicySpec>;
export type PeerAuthenticationSpec = Static<typeof S.peerAuthenticationSpec>;
export type RequestAuthenticationSpec = Static<typeof S.requestAuthenticationSpec>;

// The kinds, listed here because RESOURCE_SCHEMAS is not loaded at run time; tsc fails if the
// list and the definitions disagree.
const KINDS = ['ServiceEntry', 'VirtualService', 'DestinationRule', 'Dtab', 'AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication'] as const;
type Kind = (typeof KINDS)[number];
type Defined = keyof typeof R.RESOURCE_SCHEMAS;
const KINDS_ARE_THE_DEFINED_ONES: [Kind] extends [Defined] ? ([Defined] extends [Kind] ? true : never) : never = true;
void KINDS_ARE_THE_DEFINED_ONES;
const CHECKERS = Object.fromEntries(KINDS.map((k) => [k, checker(k, 'resource')])) as {
  [K in Kind]: Checker<Static<(typeof R.RESOURCE_SCHEMAS)[K]>>
};

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
 * intercepted connection, which Node cannot read (no SO_ORIGINAL_DST): there is none to forward to.
 * Unset is STATIC here (Istio's unset is NONE, which meshlet cannot do). Runs on a spec the
 * schema accepted; returns its errors (field path: message).
 */
function resolutionProblems(se: ServiceEntrySpec, p: string): string[] {
  const errs: string[] = [];
  const fail = (path: string, message: string) => { errs.push(`${path}: ${message}`); };
  const mode = se.resolution ?? 'STATIC';
  const eps = se.endpoints ?? [];
  if (mode === 'NONE') {
    fail(`${p}.resolution`, 'NONE (pass-through to the original destination of an intercepted connection) is not possible: a Node process cannot read that destination (SO_ORIGINAL_DST); use STATIC with endpoint IP addresses, or DNS');
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

/** Kinds in the same directory that the control server reads itself (Canary: control/canary/). */
export const CONTROL_KINDS: ReadonlySet<string> = new Set(['Canary', 'MetricTemplate']);

type Common = { name: string; namespace: string; file: string };
export type Resource =
  | Common & { kind: 'ServiceEntry'; spec: ServiceEntrySpec }
  | Common & { kind: 'VirtualService'; spec: VirtualServiceSpec }
  | Common & { kind: 'DestinationRule'; spec: DestinationRuleSpec }
  | Common & { kind: 'Dtab'; spec: DtabSpec }
  /** dryRun: the annotation istio.io/dry-run: "true" (Envoy shadow rules). */
  | Common & { kind: 'AuthorizationPolicy'; spec: AuthorizationPolicyResourceSpec; dryRun: boolean }
  | Common & { kind: 'PeerAuthentication'; spec: PeerAuthenticationSpec }
  | Common & { kind: 'RequestAuthentication'; spec: RequestAuthenticationSpec };

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
  // Kinds only the control server reads (control/canary): the proxy, and the snapshot build, skip them.
  if (kind !== undefined && CONTROL_KINDS.has(kind)) return undefined;
  if (kind === undefined || !Object.hasOwn(CHECKERS, kind)) {
    report([`kind: ${kind ? `unknown kind "${kind}" (known: ${Object.keys(CHECKERS).join(', ')})` : 'is required'}`]);
    return undefined;
  }
  const check = CHECKERS[kind as Kind];
  // YAML `field:` with no value is null, meant as unset: a null fails the check, so only then
  // are known fields set to null dropped (dropNullFields) and the value checked again.
  if (!check.check(v)) {
    dropNullFields(check.schema(), v);
    if (!check.check(v)) { report(check.errors(v, '')); return undefined; }
  }
  const common = { name: v.metadata.name, namespace: v.metadata.namespace ?? 'default', file };
  if (v.kind === 'ServiceEntry') {
    const problems = resolutionProblems(v.spec, 'spec');
    if (problems.length > 0) { report(problems); return undefined; }
  }
  if (v.kind === 'AuthorizationPolicy') {
    return { ...common, kind: v.kind, spec: v.spec, dryRun: v.metadata.annotations?.['istio.io/dry-run'] === 'true' };
  }
  return { ...common, kind: v.kind, spec: v.spec } as Resource;
}
