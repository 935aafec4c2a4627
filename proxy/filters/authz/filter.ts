// The inbound authorization filter (Envoy's RBAC filter as Istio configures it): the workload's
// AuthorizationPolicies, compiled once per snapshot for this proxy's namespace and labels, decide
// each request before it reaches the app. A denial is Envoy's exact answer: 403 with the body
// `RBAC: access denied`. Stats are Envoy's (`http.inbound.rbac.allowed`, `.denied`,
// `.shadow_allowed`, `.shadow_denied`); dry-run policies only count shadow decisions.
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import type { Runtime } from '../../runtime.ts';
import type { Snapshot } from '../../config/schema.ts';
import { ROOT_NAMESPACE, WorkloadAuthz, type AuthzAttributes, type AuthzDecision } from './policy.ts';
import { normalizePath } from './match.ts';
import { ExtAuthz } from './ext-authz.ts';

export interface Workload {
  namespace: string;
  labels: Record<string, string>;
}

export interface AuthzOptions {
  runtime: () => Runtime | null;
  workload: Workload;
  /** Istio's meshConfig numTrustedProxies: how many X-Forwarded-For hops to trust for remote.ip. */
  numTrustedProxies: number;
  /** The workload's port (destination.port, `ports`): the app port; else the listener's. */
  destinationPort?: number;
  /** CUSTOM: the ext-authz providers by name. */
  extAuthz?: Record<string, ExtAuthz>;
  /** A denial or an audit mark, for the debug log. */
  onDecision?: (d: AuthzDecision, s: HttpStream) => void;
}

export class AuthzFilter implements HttpFilter {
  readonly name = 'authz';
  readonly stats = { 'rbac.allowed': 0, 'rbac.denied': 0, 'rbac.shadow_allowed': 0, 'rbac.shadow_denied': 0, 'ext_authz.ok': 0, 'ext_authz.denied': 0, 'ext_authz.error': 0 };
  private readonly opts: AuthzOptions;
  private compiledFor: Snapshot | null = null;
  private compiled: WorkloadAuthz | null = null;

  constructor(opts: AuthzOptions) { this.opts = opts; }

  /** The policies of this workload under the current snapshot (recompiled when it changes). */
  policies(): WorkloadAuthz | null {
    const snap = this.opts.runtime()?.snapshot ?? null;
    if (snap !== this.compiledFor) {
      this.compiledFor = snap;
      const sec = snap?.security;
      // Runtime.build checked every policy, so this cannot throw for a snapshot that was applied.
      this.compiled = sec ? new WorkloadAuthz(sec.authorizationPolicies, this.opts.workload.namespace, this.opts.workload.labels, sec.rootNamespace || ROOT_NAMESPACE) : null;
    }
    return this.compiled;
  }

  onRequest(s: HttpStream): boolean {
    const w = this.policies();
    if (w === null || w.empty) return true; // no policy: no work, no stats (Envoy has no RBAC filter then)
    const d = w.decide(this.attributes(s));
    if (d.audit !== null) s.info.audit = d.audit;
    if (d.shadow !== null) this.stats[d.shadow.allowed ? 'rbac.shadow_allowed' : 'rbac.shadow_denied']++;
    if (d.custom !== null) {
      const ext = this.opts.extAuthz?.[d.custom.provider];
      if (ext === undefined) {
        // A CUSTOM policy whose provider is not configured: Istio denies (fails closed).
        this.deny(s, d);
        return false;
      }
      ext.check(s, (verdict) => {
        if (s.done) return;
        if (verdict.kind === 'error') this.stats['ext_authz.error']++;
        if (verdict.kind === 'deny') {
          this.stats['ext_authz.denied']++;
          this.stats['rbac.denied']++;
          s.info.authzPolicy = d.custom!.policy;
          s.sendLocalReply(verdict.status, verdict.body, 0, verdict.headers);
          return;
        }
        if (verdict.kind === 'ok') this.stats['ext_authz.ok']++;
        if (!this.finish(s, d)) return;
        s.continue();
      });
      return false;
    }
    return this.finish(s, d);
  }

  private finish(s: HttpStream, d: AuthzDecision): boolean {
    s.info.authzPolicy = d.policy;
    if (d.allowed) { this.stats['rbac.allowed']++; return true; }
    this.deny(s, d);
    return false;
  }

  private deny(s: HttpStream, d: AuthzDecision): void {
    this.stats['rbac.denied']++;
    this.opts.onDecision?.(d, s);
    s.sendLocalReply(403, 'RBAC: access denied', 0);
  }

  /** The request's facts as the policies read them. */
  attributes(s: HttpStream): AuthzAttributes {
    const req = s.req;
    const peer = req.peer;
    const id = peer?.identity ?? null;
    return {
      method: req.method,
      path: normalizePath(req.url),
      host: req.host ?? '',
      headers: req.rawHeaders,
      sourceIp: req.remoteAddress,
      remoteIp: remoteIp(req.rawHeaders, req.remoteAddress, this.opts.numTrustedProxies),
      destinationIp: req.localAddress,
      destinationPort: this.opts.destinationPort ?? req.localPort,
      principal: id !== null && id.startsWith('spiffe://') ? id.slice(9) : id,
      sni: peer?.sni ?? null,
      jwt: s.jwt,
    };
  }
}

/**
 * Envoy's trusted client address with xff_num_trusted_hops = n: the n-th address from the right
 * of X-Forwarded-For (as received); the connection's peer when n is 0 or the header is shorter.
 */
export function remoteIp(raw: string[], peer: string, n: number): string {
  if (n <= 0) return peer;
  const all: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() !== 'x-forwarded-for') continue;
    for (const p of raw[i + 1].split(',')) { const t = p.trim(); if (t) all.push(t); }
  }
  return all.length >= n ? all[all.length - n] : peer;
}
