// Istio's AuthorizationPolicy, compiled per workload and evaluated exactly as the proto's header
// comment says (istio/api security/v1beta1/authorization_policy.proto):
//   1. a matching CUSTOM policy whose extension denies -> deny
//   2. any matching DENY policy -> deny
//   3. no ALLOW policy applies to the workload -> allow
//   4. any matching ALLOW policy -> allow
//   5. otherwise deny
// AUDIT never changes the decision; it marks the request. A policy matches when one of its rules
// does; a policy with no rules never matches (so ALLOW with no rules denies everything). A rule
// matches when at least one `from`, at least one `to` and every `when` match; an empty rule always
// matches. Fields inside a source or an operation are ANDed; the values of one field are ORed; a
// `not*` field matches when none of its values does. An attribute the request lacks (no peer
// certificate, no JWT, no header) matches no positive value and every negative one.
//
// Dry-run policies (annotation `istio.io/dry-run: "true"`, Envoy's shadow rules) are evaluated
// beside the enforced ones: the shadow decision is what the decision would be if they were enforced.
//
// One difference from Istio, on purpose: an unknown `when` key is an error naming the key (Istio
// ignores it silently, which turns a typo in a DENY policy into an allow).
import { anyCidr, anyOf, anyPath, portValue, type IpMatch, type StrMatch } from './match.ts';

export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

export interface AuthzSource {
  principals?: string[]; notPrincipals?: string[];
  requestPrincipals?: string[]; notRequestPrincipals?: string[];
  namespaces?: string[]; notNamespaces?: string[];
  serviceAccounts?: string[]; notServiceAccounts?: string[];
  ipBlocks?: string[]; notIpBlocks?: string[];
  remoteIpBlocks?: string[]; notRemoteIpBlocks?: string[];
}
export interface AuthzOperation {
  hosts?: string[]; notHosts?: string[];
  ports?: string[]; notPorts?: string[];
  methods?: string[]; notMethods?: string[];
  paths?: string[]; notPaths?: string[];
}
export interface AuthzCondition { key: string; values?: string[]; notValues?: string[] }
export interface AuthzRule {
  from?: Array<{ source?: AuthzSource }>;
  to?: Array<{ operation?: AuthzOperation }>;
  when?: AuthzCondition[];
}
export interface AuthorizationPolicySpec {
  selector?: { matchLabels?: Record<string, string> };
  action?: AuthzAction;
  provider?: { name: string };
  rules?: AuthzRule[];
}
/** A policy as the snapshot carries it. */
export interface AuthzPolicyEntry { name: string; namespace: string; dryRun?: boolean; spec: AuthorizationPolicySpec }

/** The facts one decision reads (built by the filter from the stream, or by `meshlet ctl authz check`). */
export interface AuthzAttributes {
  method: string;
  /** Normalised, without the query (match.ts normalizePath). */
  path: string;
  /** The Host / :authority as sent. */
  host: string;
  /** Raw request headers as received (name, value, ...). */
  headers: string[];
  /** The peer of the connection. */
  sourceIp: string;
  /** The client per X-Forwarded-For and numTrustedProxies (= sourceIp when 0). */
  remoteIp: string;
  destinationIp: string;
  destinationPort: number;
  /** The peer certificate's identity without `spiffe://` (`cluster.local/ns/demo/sa/sleep`); null = no mTLS. */
  principal: string | null;
  sni: string | null;
  /** The request's verified JWT (RequestAuthentication); null = none. */
  jwt: JwtFacts | null;
}
export interface JwtFacts {
  /** `<iss>/<sub>` */
  principal: string;
  audiences: string[];
  /** The `azp` claim. */
  presenter: string;
  claims: Record<string, unknown>;
}

export interface AuthzDecision {
  allowed: boolean;
  /** `ns/name` of the policy that decided, null when none did (no ALLOW policy, or none matched). */
  policy: string | null;
  /** The index of the rule that matched in that policy. */
  rule: number | null;
  /** One line saying why, for ctl and the debug log. */
  reason: string;
  /** A matching AUDIT policy (`ns/name`), or null. */
  audit: string | null;
  /** With dry-run policies on the workload: the decision if they were enforced. */
  shadow: { allowed: boolean; policy: string | null; rule: number | null } | null;
  /** A matching CUSTOM policy: the provider to ask (the filter asks it before the rest counts). */
  custom: { provider: string; policy: string; rule: number } | null;
}

/** Istio's default root namespace: policies there apply to every namespace. */
export const ROOT_NAMESPACE = 'istio-system';

/** The `when` keys meshlet evaluates (istio.io conditions reference); `[…]` keys take a name. */
const WHEN_KEYS = new Set([
  'source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'request.auth.principal',
  'request.auth.audiences', 'request.auth.presenter', 'destination.ip', 'destination.port', 'connection.sni',
]);
const KEYED = /^(request\.headers|request\.auth\.claims)((?:\[[^\][]+\])+)$/;

// --- validation (Istio's ValidateAuthorizationPolicy, plus the when-key check) ---

/** Problems of one policy, each `field.path: message`; empty = valid. */
export function authzProblems(e: AuthzPolicyEntry): string[] {
  const errs: string[] = [];
  const spec = e.spec;
  const action = spec.action ?? 'ALLOW';
  if (action === 'CUSTOM' && !spec.provider?.name) errs.push('spec.provider: a CUSTOM policy must name its provider');
  if (action !== 'CUSTOM' && spec.provider) errs.push(`spec.provider: only a CUSTOM policy has a provider (action is ${action})`);
  const tryit = (path: string, f: () => unknown) => { try { f(); } catch (x) { errs.push(`${path}: ${(x as Error).message}`); } };
  (spec.rules ?? []).forEach((r, i) => {
    const p = `spec.rules[${i}]`;
    if (r.from !== undefined && r.from.length === 0) errs.push(`${p}.from: must not be empty (omit it to allow any source)`);
    r.from?.forEach((f, j) => {
      const s = f.source;
      const sp = `${p}.from[${j}].source`;
      if (s === undefined) { errs.push(`${sp}: must not be nil`); return; }
      if (Object.values(s).every((v) => v === undefined || (v as string[]).length === 0)) errs.push(`${sp}: must not be empty`);
      for (const k of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const) tryit(`${sp}.${k}`, () => anyCidr(s[k]));
      const sa = [...(s.serviceAccounts ?? []), ...(s.notServiceAccounts ?? [])];
      if (sa.length > 0) {
        if (s.principals?.length || s.notPrincipals?.length || s.namespaces?.length || s.notNamespaces?.length) {
          errs.push(`${sp}.serviceAccounts: cannot be set with principals or namespaces`);
        }
        if ((s.serviceAccounts?.length ?? 0) > 16 || (s.notServiceAccounts?.length ?? 0) > 16) errs.push(`${sp}.serviceAccounts: at most 16`);
        for (const a of sa) if (!/^[^/*]+\/[^/*]+$/.test(a)) errs.push(`${sp}.serviceAccounts: ${JSON.stringify(a)} must be "<namespace>/<name>" without wildcards`);
      }
    });
    if (r.to !== undefined && r.to.length === 0) errs.push(`${p}.to: must not be empty (omit it to allow any operation)`);
    r.to?.forEach((t, j) => {
      const o = t.operation;
      const op = `${p}.to[${j}].operation`;
      if (o === undefined) { errs.push(`${op}: must not be nil`); return; }
      if (Object.values(o).every((v) => v === undefined || (v as string[]).length === 0)) errs.push(`${op}: must not be empty`);
      for (const k of ['ports', 'notPorts'] as const) for (const v of o[k] ?? []) tryit(`${op}.${k}`, () => portValue(v));
      for (const k of ['paths', 'notPaths'] as const) tryit(`${op}.${k}`, () => anyPath(o[k]));
    });
    r.when?.forEach((c, j) => {
      const cp = `${p}.when[${j}]`;
      tryit(`${cp}.key`, () => conditionValue(c.key));
      if (!(c.values?.length) && !(c.notValues?.length)) errs.push(`${cp}: at least one of values or notValues must be set`);
      if (c.key === 'source.ip' || c.key === 'remote.ip' || c.key === 'destination.ip') {
        tryit(`${cp}.values`, () => anyCidr(c.values));
        tryit(`${cp}.notValues`, () => anyCidr(c.notValues));
      }
      if (c.key === 'destination.port') for (const v of [...(c.values ?? []), ...(c.notValues ?? [])]) tryit(`${cp}.values`, () => portValue(v));
    });
  });
  return errs;
}

// --- compiled form ---

type Pred = (a: AuthzAttributes) => boolean;
const ALWAYS: Pred = () => true;

/** AND of predicates (the fields of a source or an operation; the `when` list). */
function all(ps: Pred[]): Pred {
  if (ps.length === 0) return ALWAYS;
  if (ps.length === 1) return ps[0];
  return (a) => { for (let i = 0; i < ps.length; i++) if (!ps[i](a)) return false; return true; };
}
/** OR of predicates (the `from` list; the `to` list); an unset list matches. */
function some(ps: Pred[] | null): Pred {
  if (ps === null) return ALWAYS;
  return (a) => { for (let i = 0; i < ps.length; i++) if (ps[i](a)) return true; return false; };
}

/** A positive and a negative value set on one attribute (absent = ''). */
function field<M extends StrMatch | IpMatch>(yes: M | null, no: M | null, get: (a: AuthzAttributes) => string, out: Pred[]): void {
  if (yes !== null) out.push((a) => yes(get(a)));
  if (no !== null) out.push((a) => !no(get(a)));
}

const NS = /\/ns\/([^/]+)\/sa\/([^/]+)$/;
const principalOf = (a: AuthzAttributes): string => a.principal ?? '';
// The principal's parts, parsed once per distinct principal in a row (one decision reads them
// for every policy; consecutive requests mostly come from the same peer).
let lastPrincipal: string | null = null;
let lastNs = '';
let lastSa = '';
function parsePrincipal(p: string | null): void {
  if (p === lastPrincipal) return;
  lastPrincipal = p;
  const m = p !== null ? NS.exec(p) : null;
  lastNs = m ? m[1] : '';
  lastSa = m ? `${m[1]}/${m[2]}` : '';
}
const namespaceOf = (a: AuthzAttributes): string => { parsePrincipal(a.principal); return lastNs; };
const serviceAccountOf = (a: AuthzAttributes): string => { parsePrincipal(a.principal); return lastSa; };
const requestPrincipalOf = (a: AuthzAttributes): string => a.jwt?.principal ?? '';

function compileSource(s: AuthzSource): Pred {
  const ps: Pred[] = [];
  field(anyOf(s.principals), anyOf(s.notPrincipals), principalOf, ps);
  field(anyOf(s.requestPrincipals), anyOf(s.notRequestPrincipals), requestPrincipalOf, ps);
  field(anyOf(s.namespaces), anyOf(s.notNamespaces), namespaceOf, ps);
  field(exactSet(s.serviceAccounts), exactSet(s.notServiceAccounts), serviceAccountOf, ps);
  field(anyCidr(s.ipBlocks), anyCidr(s.notIpBlocks), (a) => a.sourceIp, ps);
  field(anyCidr(s.remoteIpBlocks), anyCidr(s.notRemoteIpBlocks), (a) => a.remoteIp, ps);
  return all(ps);
}

function exactSet(vs: string[] | undefined): StrMatch | null {
  if (!vs || vs.length === 0) return null;
  const set = new Set(vs);
  return (v) => set.has(v);
}

function portSet(vs: string[] | undefined): StrMatch | null {
  if (!vs || vs.length === 0) return null;
  const set = new Set(vs.map((v) => String(portValue(v))));
  return (v) => set.has(v);
}

function compileOperation(o: AuthzOperation): Pred {
  const ps: Pred[] = [];
  field(anyOf(o.hosts, true), anyOf(o.notHosts, true), (a) => a.host, ps);
  field(portSet(o.ports), portSet(o.notPorts), (a) => String(a.destinationPort), ps);
  field(anyOf(o.methods), anyOf(o.notMethods), (a) => a.method, ps);
  field(anyPath(o.paths), anyPath(o.notPaths), (a) => a.path, ps);
  return all(ps);
}

/** A `when` key as a reader of the request's value(s); throws for a key meshlet does not know. */
function conditionValue(key: string): (a: AuthzAttributes) => string[] {
  if (WHEN_KEYS.has(key)) {
    switch (key) {
      case 'source.ip': return (a) => [a.sourceIp];
      case 'remote.ip': return (a) => [a.remoteIp];
      case 'destination.ip': return (a) => [a.destinationIp];
      case 'destination.port': return (a) => [String(a.destinationPort)];
      case 'source.namespace': return (a) => [namespaceOf(a)];
      case 'source.principal': return (a) => [principalOf(a)];
      case 'request.auth.principal': return (a) => [requestPrincipalOf(a)];
      case 'request.auth.audiences': return (a) => a.jwt?.audiences ?? [''];
      case 'request.auth.presenter': return (a) => [a.jwt?.presenter ?? ''];
      case 'connection.sni': return (a) => [a.sni ?? ''];
    }
  }
  const m = KEYED.exec(key);
  if (m === null) {
    throw new Error(`unknown condition key ${JSON.stringify(key)} (meshlet refuses what Istio would silently ignore); known: ${[...WHEN_KEYS].join(', ')}, request.headers[<name>], request.auth.claims[<claim>]`);
  }
  const names = m[2].slice(1, -1).split('][');
  if (m[1] === 'request.headers') {
    if (names.length !== 1) throw new Error(`${JSON.stringify(key)}: request.headers takes one header name`);
    const h = names[0].toLowerCase();
    return (a) => {
      // Several fields of one name are one value joined with ',' (Envoy's header matcher).
      let v: string | null = null;
      const raw = a.headers;
      for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === h) v = v === null ? raw[i + 1] : `${v},${raw[i + 1]}`;
      return [v ?? ''];
    };
  }
  // request.auth.claims[a][b]: a nested claim; a list claim matches when any of its strings does.
  return (a) => {
    let v: unknown = a.jwt?.claims;
    for (const n of names) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[n] : undefined;
    if (Array.isArray(v)) return v.filter((x) => typeof x === 'string') as string[];
    if (typeof v === 'string') return [v];
    if (typeof v === 'number' || typeof v === 'boolean') return [String(v)];
    return [''];
  };
}

function compileCondition(c: AuthzCondition): Pred {
  const get = conditionValue(c.key);
  const ip = c.key === 'source.ip' || c.key === 'remote.ip' || c.key === 'destination.ip';
  const yes: ((v: string) => boolean) | null = ip ? anyCidr(c.values) : c.key === 'destination.port' ? portSet(c.values) : anyOf(c.values);
  const no: ((v: string) => boolean) | null = ip ? anyCidr(c.notValues) : c.key === 'destination.port' ? portSet(c.notValues) : anyOf(c.notValues);
  return (a) => {
    const vs = get(a);
    if (yes !== null && !vs.some(yes)) return false;
    if (no !== null && vs.some(no)) return false;
    return true;
  };
}

function compileRule(r: AuthzRule): Pred {
  const from = r.from ? some(r.from.map((f) => compileSource(f.source ?? {}))) : ALWAYS;
  const to = r.to ? some(r.to.map((t) => compileOperation(t.operation ?? {}))) : ALWAYS;
  const when = all((r.when ?? []).map(compileCondition));
  return (a) => from(a) && to(a) && when(a);
}

interface CompiledPolicy {
  id: string;
  action: AuthzAction;
  dryRun: boolean;
  provider: string;
  rules: Pred[];
}

/** The first rule of `p` that matches, or -1 (a policy with no rules never matches). */
function firstRule(p: CompiledPolicy, a: AuthzAttributes): number {
  for (let i = 0; i < p.rules.length; i++) if (p.rules[i](a)) return i;
  return -1;
}

/** Does policy `e` apply to a workload in `namespace` with `labels`? */
export function selects(e: AuthzPolicyEntry, namespace: string, labels: Record<string, string>, root = ROOT_NAMESPACE): boolean {
  if (e.namespace !== namespace && e.namespace !== root) return false;
  const want = e.spec.selector?.matchLabels;
  if (want === undefined) return true;
  for (const k of Object.keys(want)) if (labels[k] !== want[k]) return false;
  return true;
}

/** The policies that apply to one workload, compiled; `decide` is one decision. */
export class WorkloadAuthz {
  private readonly custom: CompiledPolicy[] = [];
  private readonly deny: CompiledPolicy[] = [];
  private readonly allow: CompiledPolicy[] = [];
  private readonly audit: CompiledPolicy[] = [];
  /** Dry-run DENY / ALLOW policies. */
  private readonly shadowDeny: CompiledPolicy[] = [];
  private readonly shadowAllow: CompiledPolicy[] = [];
  readonly hasShadow: boolean;
  /** Enforced and dry-run together: the shadow decision's lists. */
  private readonly withShadowDeny: CompiledPolicy[];
  private readonly withShadowAllow: CompiledPolicy[];
  /** How many policies apply (enforced + dry-run). */
  readonly size: number;

  /** Throws an Error listing every problem (the snapshot is then refused whole). */
  constructor(entries: AuthzPolicyEntry[], namespace: string, labels: Record<string, string>, root = ROOT_NAMESPACE) {
    const problems: string[] = [];
    let n = 0;
    for (const e of entries) {
      if (!selects(e, namespace, labels, root)) continue;
      const id = `${e.namespace}/${e.name}`;
      const errs = authzProblems(e);
      if (errs.length > 0) { for (const x of errs) problems.push(`AuthorizationPolicy ${id}: ${x}`); continue; }
      const action = e.spec.action ?? 'ALLOW';
      const p: CompiledPolicy = { id, action, dryRun: e.dryRun === true, provider: e.spec.provider?.name ?? '', rules: (e.spec.rules ?? []).map(compileRule) };
      n++;
      if (action === 'AUDIT') this.audit.push(p);
      else if (action === 'CUSTOM') this.custom.push(p);
      else if (p.dryRun) (action === 'DENY' ? this.shadowDeny : this.shadowAllow).push(p);
      else (action === 'DENY' ? this.deny : this.allow).push(p);
    }
    if (problems.length > 0) throw new Error(problems.join('; '));
    this.hasShadow = this.shadowDeny.length + this.shadowAllow.length > 0;
    this.withShadowDeny = [...this.deny, ...this.shadowDeny];
    this.withShadowAllow = [...this.allow, ...this.shadowAllow];
    this.size = n;
  }

  /** No policy applies: every request is allowed without evaluating anything. */
  get empty(): boolean { return this.size === 0; }

  decide(a: AuthzAttributes): AuthzDecision {
    let custom: AuthzDecision['custom'] = null;
    for (const p of this.custom) {
      if (p.dryRun) continue;
      const r = firstRule(p, a);
      if (r >= 0) { custom = { provider: p.provider, policy: p.id, rule: r }; break; }
    }
    let audit: string | null = null;
    for (const p of this.audit) if (firstRule(p, a) >= 0) { audit = p.id; break; }
    const d = evaluate(this.deny, this.allow, a);
    const shadow = this.hasShadow
      ? evaluate(this.withShadowDeny, this.withShadowAllow, a)
      : null;
    return {
      allowed: d.allowed, policy: d.policy, rule: d.rule, reason: d.reason, audit, custom,
      shadow: shadow === null ? null : { allowed: shadow.allowed, policy: shadow.policy, rule: shadow.rule },
    };
  }
}

function evaluate(deny: CompiledPolicy[], allow: CompiledPolicy[], a: AuthzAttributes): { allowed: boolean; policy: string | null; rule: number | null; reason: string } {
  for (const p of deny) {
    const r = firstRule(p, a);
    if (r >= 0) return { allowed: false, policy: p.id, rule: r, reason: `denied by DENY policy ${p.id}, rule ${r}` };
  }
  if (allow.length === 0) return { allowed: true, policy: null, rule: null, reason: 'allowed: no ALLOW policy applies to the workload' };
  for (const p of allow) {
    const r = firstRule(p, a);
    if (r >= 0) return { allowed: true, policy: p.id, rule: r, reason: `allowed by ALLOW policy ${p.id}, rule ${r}` };
  }
  return { allowed: false, policy: null, rule: null, reason: `denied: no ALLOW policy matched (${allow.map((p) => p.id).join(', ')} apply)` };
}
