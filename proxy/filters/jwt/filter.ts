// RequestAuthentication (Istio) = Envoy's jwt_authn filter with allow_missing: a request with no
// token passes with no request identity (pair it with an AuthorizationPolicy on
// requestPrincipals); a request with a token must carry a valid one, else 401 with Envoy's body
// (`Jwt verification fails`, `Jwt is expired`, `Audiences in Jwt are not allowed`, `Jwt issuer is
// not configured`). Verification is jose's; remote key sets are cached and refreshed by jose
// (createRemoteJWKSet: refetched on an unknown `kid`, at most every 30 s). The verified identity
// goes on the stream (`s.jwt`) for the authz filter: principal `<iss>/<sub>`, audiences, `azp`,
// the claims.
import type { JWTPayload } from 'jose';
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import type { Runtime } from '../../runtime.ts';
import type { Snapshot } from '../../config/schema.ts';
import { selects, ROOT_NAMESPACE, type AuthzPolicyEntry } from '../authz/policy.ts';
import type { Workload } from '../authz/filter.ts';

type Ra = NonNullable<Snapshot['security']>['requestAuthentications'][number];
type Rule = NonNullable<Ra['spec']['jwtRules']>[number];
type Jose = typeof import('jose');
type KeySet = ReturnType<Jose['createLocalJWKSet']>;

// jose is loaded on the first token a workload with RequestAuthentication sees: a sidecar
// without JWT rules never pays for it.
let josePromise: Promise<Jose> | null = null;
const loadJose = (): Promise<Jose> => (josePromise ??= import('jose'));

export interface JwtOptions {
  runtime: () => Runtime | null;
  workload: Workload;
}

interface Location { header?: string; prefix?: string; param?: string }
interface CompiledRule { rule: Rule; keys: KeySet | null; locations: Location[] }

/** Key sets by their source, kept across snapshots so a refresh of a remote set is not lost. */
const remoteSets = new Map<string, KeySet>();

export class JwtFilter implements HttpFilter {
  readonly name = 'jwt';
  readonly stats = { 'jwt_authn.allowed': 0, 'jwt_authn.denied': 0 };
  private readonly opts: JwtOptions;
  private compiledFor: Snapshot | null = null;
  private rules: CompiledRule[] = [];

  constructor(opts: JwtOptions) { this.opts = opts; }

  private current(): CompiledRule[] {
    const snap = this.opts.runtime()?.snapshot ?? null;
    if (snap !== this.compiledFor) {
      this.compiledFor = snap;
      const sec = snap?.security;
      const w = this.opts.workload;
      this.rules = (sec?.requestAuthentications ?? [])
        .filter((r) => selects(r as unknown as AuthzPolicyEntry, w.namespace, w.labels, sec?.rootNamespace || ROOT_NAMESPACE))
        .flatMap((r) => r.spec.jwtRules ?? [])
        .map(compileRule);
    }
    return this.rules;
  }

  onRequest(s: HttpStream): boolean {
    const rules = this.current();
    if (rules.length === 0) return true;
    const found = findToken(s, rules);
    if (found === null) return true; // missing: passes without identity (Istio)
    const iss = unverifiedIssuer(found.token);
    if (iss === null) { this.reject(s, 'Jwt verification fails'); return false; }
    // The rule for the token's issuer that reads the location it came from (rules may share locations).
    const cr = rules.find((r) => r.rule.issuer === iss && r.locations.some((l) => l.header === found.at.header && l.param === found.at.param));
    if (cr === undefined) { this.reject(s, 'Jwt issuer is not configured'); return false; }
    const aud = cr.rule.audiences;
    let joseErrors: Jose['errors'] | null = null;
    loadJose()
      .then((j) => {
        joseErrors = j.errors;
        cr.keys ??= makeKeys(j, cr.rule);
        return j.jwtVerify(found.token, cr.keys, { issuer: cr.rule.issuer, ...(aud && aud.length > 0 ? { audience: aud } : {}), clockTolerance: 60 });
      })
      .then(({ payload }) => {
        if (s.done) return;
        this.accept(s, cr, payload, found);
        s.continue();
      }, (e: unknown) => {
        if (s.done) return;
        const msg = joseErrors === null ? 'Jwt verification fails'
          : e instanceof joseErrors.JWTExpired ? 'Jwt is expired'
          : e instanceof joseErrors.JWTClaimValidationFailed && (e as { claim?: string }).claim === 'aud' ? 'Audiences in Jwt are not allowed'
            : 'Jwt verification fails';
        this.reject(s, msg);
      })
      .catch((e) => s.fail(this.name, e));
    return false;
  }

  private accept(s: HttpStream, cr: CompiledRule, p: JWTPayload, found: { at: Location }): void {
    this.stats['jwt_authn.allowed']++;
    const aud = p.aud === undefined ? [] : Array.isArray(p.aud) ? p.aud : [p.aud];
    s.jwt = { principal: `${p.iss}/${p.sub ?? ''}`, audiences: aud, presenter: typeof p.azp === 'string' ? p.azp : '', claims: p as Record<string, unknown> };
    s.info.requestPrincipal = s.jwt.principal;
    const r = cr.rule;
    // forwardOriginalToken unset = false: the app does not get the token (Envoy forward: false).
    if (!r.forwardOriginalToken && found.at.header) removeHeader(s.headers, found.at.header);
    for (const o of r.outputClaimToHeaders ?? []) {
      const v = p[o.claim];
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') { removeHeader(s.headers, o.header); s.headers.push(o.header.toLowerCase(), String(v)); }
    }
    if (r.outputPayloadToHeader) {
      removeHeader(s.headers, r.outputPayloadToHeader);
      s.headers.push(r.outputPayloadToHeader.toLowerCase(), Buffer.from(JSON.stringify(p)).toString('base64url'));
    }
  }

  private reject(s: HttpStream, msg: string): void {
    this.stats['jwt_authn.denied']++;
    // Envoy's answer: 401, the message as the body, and a Bearer challenge.
    s.sendLocalReply(401, msg, 0, { 'www-authenticate': `Bearer realm="http://${s.req.host ?? ''}${s.req.url.split('?')[0]}", error="invalid_token"` });
  }
}

/** The rule's key set: inline, or remote (one per URI, kept across snapshots: its cache survives). */
function makeKeys(j: Jose, rule: Rule): KeySet {
  if (rule.jwks) return j.createLocalJWKSet(JSON.parse(rule.jwks));
  const uri = rule.jwksUri!;
  let k = remoteSets.get(uri);
  if (k === undefined) {
    k = j.createRemoteJWKSet(new URL(uri), { cacheMaxAge: 5 * 60_000, cooldownDuration: 30_000, timeoutDuration: 5_000 }) as unknown as KeySet;
    remoteSets.set(uri, k);
  }
  return k;
}

/** The `iss` of a compact JWS, read without verifying (to pick the rule); null when it is not one. */
function unverifiedIssuer(token: string): string | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const p = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as { iss?: unknown };
    return typeof p?.iss === 'string' ? p.iss : null;
  } catch { return null; }
}

function compileRule(rule: Rule): CompiledRule {
  const keys = null;
  const locations: Location[] = [];
  for (const h of rule.fromHeaders ?? []) locations.push({ header: h.name.toLowerCase(), prefix: h.prefix ?? '' });
  for (const q of rule.fromParams ?? []) locations.push({ param: q });
  // Envoy's defaults when a rule names no location: Authorization: Bearer, then ?access_token=.
  if (locations.length === 0) locations.push(DEFAULT_HEADER, DEFAULT_PARAM);
  return { rule, keys, locations };
}

const DEFAULT_HEADER: Location = { header: 'authorization', prefix: 'Bearer ' };
const DEFAULT_PARAM: Location = { param: 'access_token' };

function findToken(s: HttpStream, rules: CompiledRule[]): { token: string; at: Location } | null {
  const raw = s.req.rawHeaders;
  let query: URLSearchParams | null = null;
  for (const r of rules) {
    for (const at of r.locations) {
      if (at.header !== undefined) {
        for (let i = 0; i < raw.length; i += 2) {
          if (raw[i].toLowerCase() !== at.header) continue;
          const v = raw[i + 1];
          if (at.prefix && !v.startsWith(at.prefix)) continue;
          const t = v.slice(at.prefix?.length ?? 0).trim();
          if (t) return { token: t, at };
        }
      } else if (at.param !== undefined) {
        const q = s.req.url.indexOf('?');
        if (q < 0) continue;
        query ??= new URLSearchParams(s.req.url.slice(q + 1));
        const t = query.get(at.param);
        if (t) return { token: t, at };
      }
    }
  }
  return null;
}

function removeHeader(h: string[], name: string): void {
  const l = name.toLowerCase();
  for (let i = h.length - 2; i >= 0; i -= 2) if (h[i].toLowerCase() === l) h.splice(i, 2);
}
