// Who is this sidecar? The one place that decides (the discovery server uses it now; the CA's CSR
// signing reuses it): the bearer token a sidecar presents is its projected service-account token
// (audience MESHLET_AUDIENCE, minted by the kubelet, rotated, bound to the pod), checked with a
// TokenReview against the API server, as Linkerd's identity controller does (audience
// identity.l5d.io) and Istio's istiod does for CSRs. No hand-made secret is needed in the pod.
import { createHash } from 'node:crypto';
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';

/** The audience of the token the injector projects into each pod (control/inject.ts). */
export const MESHLET_AUDIENCE = 'meshlet-control';

export interface SidecarIdentity { namespace: string; serviceAccount: string; podName?: string }

/** A bearer token -> the workload it belongs to, or null when it is not valid for meshlet. */
export type Authenticator = (token: string) => Promise<SidecarIdentity | null>;

/** `system:serviceaccount:<ns>:<sa>` -> {namespace, serviceAccount}; any other user is not a workload. */
export function serviceAccountOf(username: string | undefined): SidecarIdentity | null {
  const m = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(username ?? '');
  return m ? { namespace: m[1], serviceAccount: m[3] } : null;
}

/**
 * TokenReview-backed authenticator. Answers are cached briefly (by the token's hash, never the
 * token) so a reconnecting fleet does not turn into a TokenReview per request; a failed review
 * (API server down) is not cached and denies.
 */
export function tokenReviewAuthenticator(kc: KubeConfig, opts: { audience?: string; cacheMs?: number; log?: Logger } = {}): Authenticator {
  const api = kc.makeApiClient(AuthenticationV1Api);
  const audience = opts.audience ?? MESHLET_AUDIENCE;
  const cacheMs = opts.cacheMs ?? 10_000;
  const cache = new Map<string, { at: number; id: SidecarIdentity | null }>();
  return async (token: string) => {
    if (!token) return null;
    const key = createHash('sha256').update(token).digest('base64');
    const hit = cache.get(key);
    const now = Date.now();
    if (hit && now - hit.at < cacheMs) return hit.id;
    let id: SidecarIdentity | null = null;
    try {
      const r = await api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } } });
      const st = r.status;
      // Authenticated AND bound to our audience: a token minted for another audience (the
      // default API token, another system's) is not accepted here.
      if (st?.authenticated && (st.audiences ?? []).includes(audience)) {
        id = serviceAccountOf(st.user?.username);
        const pod = (st.user?.extra as Record<string, string[]> | undefined)?.['authentication.kubernetes.io/pod-name']?.[0];
        if (id && pod) id.podName = pod;
      }
    } catch (e) {
      opts.log?.warn({ err: (e as Error).message }, 'TokenReview failed; the sidecar is denied until it retries');
      return null;
    }
    if (cache.size > 10_000) cache.clear();
    cache.set(key, { at: now, id });
    return id;
  };
}
