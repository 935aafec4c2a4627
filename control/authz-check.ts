// `meshlet ctl authz check`: what the server sidecar of a service would decide for a request,
// from the snapshot the control server serves. The decision is the proxy's own evaluator
// (proxy/filters/authz/policy.ts) over the policies that select each workload of the service
// (its endpoints' namespace and labels), so the answer names the policy and rule that decided.
import type { Snapshot } from '../proxy/config/schema.ts';
import { ROOT_NAMESPACE, WorkloadAuthz, type AuthzAttributes } from '../proxy/filters/authz/policy.ts';
import { normalizePath } from '../proxy/filters/authz/match.ts';

export interface CheckRequest {
  to: string;
  fromPrincipal?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  sourceIp?: string;
  port?: number;
}

export interface CheckAnswer {
  service: string;
  workloads: Array<{ namespace: string; labels: Record<string, string>; allowed: boolean; policy: string | null; rule: number | null; reason: string; dryRun: { allowed: boolean; policy: string | null } | null }>;
}

export class CheckError extends Error {}

export function authzCheck(snap: Snapshot, q: CheckRequest): CheckAnswer {
  const to = q.to.toLowerCase();
  const svc = snap.services.find((s) => s.aliases.includes(to) || s.host === to);
  if (!svc) throw new CheckError(`no service "${q.to}" (known: ${snap.services.map((s) => s.host).join(', ') || 'none'})`);
  const cluster = snap.clusters.find((c) => c.service === svc.host && c.subset === '') ?? snap.clusters.find((c) => c.service === svc.host);
  const seen = new Map<string, { namespace: string; labels: Record<string, string>; port: number }>();
  for (const e of cluster?.endpoints ?? []) {
    const ns = e.namespace ?? 'default';
    const labels = Object.fromEntries(Object.entries(e.labels).filter(([k]) => k !== 'security.istio.io/tlsMode'));
    seen.set(`${ns}|${JSON.stringify(labels)}`, { namespace: ns, labels, port: e.port });
  }
  if (seen.size === 0) throw new CheckError(`service "${svc.host}" has no endpoints to decide for`);
  const sec = snap.security;
  let principal = q.fromPrincipal ?? null;
  if (principal?.startsWith('spiffe://')) principal = principal.slice(9);
  const headers: string[] = [];
  for (const [k, v] of Object.entries(q.headers ?? {})) headers.push(k, v);
  const out: CheckAnswer = { service: svc.host, workloads: [] };
  for (const w of seen.values()) {
    const authz = new WorkloadAuthz(sec?.authorizationPolicies ?? [], w.namespace, w.labels, sec?.rootNamespace || ROOT_NAMESPACE);
    const a: AuthzAttributes = {
      method: q.method ?? 'GET', path: normalizePath(q.path ?? '/'), host: svc.host, headers,
      sourceIp: q.sourceIp ?? '127.0.0.1', remoteIp: q.sourceIp ?? '127.0.0.1', destinationIp: '127.0.0.1',
      destinationPort: q.port ?? w.port, principal, sni: null, jwt: null,
    };
    const d = authz.decide(a);
    out.workloads.push({
      namespace: w.namespace, labels: w.labels, allowed: d.allowed, policy: d.policy, rule: d.rule, reason: d.reason,
      dryRun: d.shadow ? { allowed: d.shadow.allowed, policy: d.shadow.policy } : null,
    });
  }
  return out;
}
