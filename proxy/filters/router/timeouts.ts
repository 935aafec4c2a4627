// The router's timeouts, configured per route (Istio `timeout`, none by default: Istio turns
// Envoy's 15 s off) and overridable by trusted callers (x-envoy-upstream-rq-timeout-ms). The
// per-try timeout comes with the retry policy (retries.perTryTimeout or its header).
import type { HttpStream } from '../../listener/stream.ts';
import { getRaw } from '../../listener/headers.ts';

/** The request's global timeout in ms (0 = none): the route's, or a trusted caller's header. */
export function routeTimeoutMs(s: HttpStream): number {
  if (s.owner.trustEnvoyHeaders) {
    const t = getRaw(s.req.rawHeaders, 'x-envoy-upstream-rq-timeout-ms');
    if (t !== undefined && /^\d+$/.test(t)) return Number(t);
  }
  return s.route?.timeoutMs ?? 0;
}

/** A per-try timeout at or above a non-zero global timeout is ignored (Envoy). */
export function perTryArmed(perTryMs: number, globalMs: number): boolean {
  return perTryMs > 0 && (globalMs === 0 || perTryMs < globalMs);
}
