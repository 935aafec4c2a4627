// The one decision of who a CSR may be signed for: credential -> allowed identity. Today the
// credential is the control server's bootstrap token (checked before the request gets here), and
// the identity is what the proxy names with --namespace / --service-account: a development mode,
// since anyone holding the token may claim any identity. In Kubernetes a TokenReview
// authenticator plugs in here (Linkerd's identity controller: TokenReview of the projected
// service-account token, then "requested identity == token identity").
export interface Credential {
  /** `bootstrap`: the caller passed the control server's token check. */
  kind: 'bootstrap' | 'token-review';
  /** What the proxy asks to be. */
  requested: { namespace?: string; serviceAccount?: string };
  /** token-review: the identity the reviewed token belongs to. */
  reviewed?: { namespace: string; serviceAccount: string };
}

export class IdentityRefused extends Error {}

/** DNS-1123 label (Kubernetes names of namespaces and service accounts). */
const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function grantIdentity(c: Credential): { namespace: string; serviceAccount: string } {
  const ns = c.requested.namespace ?? c.reviewed?.namespace ?? 'default';
  const sa = c.requested.serviceAccount ?? c.reviewed?.serviceAccount ?? 'default';
  if (!NAME.test(ns)) throw new IdentityRefused(`namespace ${JSON.stringify(ns)} is not a DNS-1123 label`);
  if (!NAME.test(sa.replace(/\./g, '-'))) throw new IdentityRefused(`service account ${JSON.stringify(sa)} is not a valid name`);
  if (c.kind === 'token-review') {
    const r = c.reviewed;
    if (r === undefined) throw new IdentityRefused('the token was not reviewed');
    if (r.namespace !== ns || r.serviceAccount !== sa) throw new IdentityRefused(`the token belongs to ${r.namespace}/${r.serviceAccount}, not ${ns}/${sa}`);
  }
  return { namespace: ns, serviceAccount: sa };
}
