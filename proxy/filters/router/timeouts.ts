// The router's timeouts, configured per route (Istio `timeout`, none by default: Istio turns
// Envoy's 15 s off) and overridable by trusted callers (x-envoy-upstream-rq-timeout-ms). The
// per-try timeout comes with the retry policy (retries.perTryTimeout or its header).
import type { HttpStream } from '../../listener/stream.ts';
import { getRaw } from '../../listener/headers.ts';
import { parseGrpcTimeout } from '../../grpc.ts';

/**
 * The request's global timeout in ms (0 = none): the route's, or a trusted caller's header. A
 * gRPC request's `grpc-timeout` is its deadline, capped by that (Envoy's max_grpc_timeout, which
 * Istio sets to the route timeout: 0 = no cap).
 */
export function routeTimeoutMs(s: HttpStream): number {
  const t = configuredTimeoutMs(s);
  if (!s.info.grpc) return t;
  const g = parseGrpcTimeout(getRaw(s.req.rawHeaders, 'grpc-timeout'));
  if (g === undefined || g <= 0) return t;
  return t > 0 ? Math.min(t, g) : Math.max(1, Math.ceil(g));
}

function configuredTimeoutMs(s: HttpStream): number {
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
