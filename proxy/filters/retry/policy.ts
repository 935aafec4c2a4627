// Retry policy: compiled once per route when the snapshot is built (proxy/filters/route/table.ts
// calls compileRetry), overridden per request by trusted callers' x-envoy-* headers, and the test
// of which failures a policy accepts (Envoy's retry_state_impl, docs/spec/envoy-semantics.md §4.3).
import type { RetrySpec } from '../../config/schema.ts';
import { listTokens } from '../../engine/http1.ts';
import { getRaw } from '../../listener/headers.ts';
import { GRPC_RETRY_CODES } from '../../grpc.ts';

/** `grpc`: a response whose headers carry a grpc-status (trailers-only); `status` is then that code. */
export type FailureKind = 'connect' | 'reset' | 'per_try_timeout' | 'status' | 'grpc';

export interface RetryPolicy {
  numRetries: number;
  on: Set<string>;
  codes: number[];
  perTryTimeoutMs: number;
  /** Could retry after the request was sent, so a body must be kept for replay. */
  replayNeeded: boolean;
  /** Has gRPC conditions (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable): a gRPC request's body is kept for replay. */
  grpcOn: boolean;
}

/** A route's retry config: the spec (header overrides start from it) and its compiled policy. */
export interface RouteRetry {
  spec: RetrySpec | null;
  policy: RetryPolicy | null;
}

export const NO_RETRY: RouteRetry = { spec: null, policy: null };

/** Compile a route's retries (once per snapshot). */
export function compileRetry(spec: RetrySpec | null | undefined): RouteRetry {
  if (!spec) return NO_RETRY;
  return { spec, policy: policyFrom(spec) };
}

/**
 * The policy for one request: the route's, unless a trusted caller sent x-envoy-retry-on,
 * x-envoy-max-retries or x-envoy-upstream-rq-per-try-timeout-ms (then a policy of its own).
 */
export function requestPolicy(route: RouteRetry, raw: string[], trust: boolean): RetryPolicy | null {
  if (!trust) return route.policy;
  const retryOn = getRaw(raw, 'x-envoy-retry-on');
  const grpcOn = getRaw(raw, 'x-envoy-retry-grpc-on');
  const maxRetries = getRaw(raw, 'x-envoy-max-retries');
  const perTry = getRaw(raw, 'x-envoy-upstream-rq-per-try-timeout-ms');
  if (retryOn === undefined && grpcOn === undefined && maxRetries === undefined && perTry === undefined) return route.policy;
  // x-envoy-retry-grpc-on names gRPC conditions only; it is OR-ed in like x-envoy-retry-on.
  const grpcOnly = grpcOn === undefined ? '' : listTokens(grpcOn, false).filter((t) => Object.hasOwn(GRPC_RETRY_CODES, t)).join(',');
  const on = [retryOn, grpcOnly].filter((v) => v !== undefined && v !== '').join(',');
  const p = policyFrom(route.spec, on === '' ? undefined : on, maxRetries);
  if (p !== null && perTry !== undefined && /^\d+$/.test(perTry)) p.perTryTimeoutMs = Number(perTry);
  return p;
}

/** Conditions that only ever fire before the request was sent need no body buffer. */
function needsReplay(on: Set<string>, codes: number[]): boolean {
  for (const c of on) {
    if (c === 'connect-failure' || c === 'refused-stream' || c === 'reset-before-request') continue;
    // gRPC conditions and an empty status list never match an HTTP/1.1 response either.
    if (c === 'unavailable' || c === 'cancelled' || c === 'deadline-exceeded' || c === 'internal' || c === 'resource-exhausted') continue;
    if (c === 'retriable-status-codes' && codes.length === 0) continue;
    return true;
  }
  return false;
}

export function policyFrom(spec: RetrySpec | null, headerRetryOn?: string, headerMaxRetries?: string): RetryPolicy | null {
  let on = spec ? new Set(spec.retryOn.split(',').filter(Boolean)) : null;
  let numRetries = spec?.attempts ?? 0;
  if (headerRetryOn) {
    // OR-ed into the route policy; 1 retry if the route had none (spec section 4.2).
    on ??= new Set();
    for (const v of listTokens(headerRetryOn, false)) on.add(v); // OWS is SP/HTAB only; case-sensitive, as Envoy
    if (!spec) numRetries = 1;
  }
  if (!on || on.size === 0) return null;
  if (headerMaxRetries !== undefined && /^\d+$/.test(headerMaxRetries)) numRetries = Number(headerMaxRetries);
  if (numRetries <= 0) return null;
  const codes = spec?.retriableStatusCodes ?? [];
  let grpcOn = false;
  for (const c of on) if (Object.hasOwn(GRPC_RETRY_CODES, c)) grpcOn = true;
  return { numRetries, on, codes, perTryTimeoutMs: spec?.perTryTimeoutMs ?? 0, replayNeeded: needsReplay(on, codes), grpcOn };
}

/** Does the policy accept this failure? (Envoy retry_state_impl, envoy-semantics.md section 4.3.) */
export function accepts(p: RetryPolicy, kind: FailureKind, status = 0): boolean {
  const on = p.on;
  switch (kind) {
    case 'connect':
      return on.has('connect-failure') || on.has('reset') || on.has('5xx') || on.has('gateway-error') || on.has('reset-before-request');
    case 'reset':
      return on.has('reset') || on.has('5xx') || on.has('gateway-error');
    case 'per_try_timeout':
      return on.has('5xx') || on.has('gateway-error') || on.has('reset');
    case 'status':
      return (on.has('5xx') && status >= 500)
        || (on.has('gateway-error') && status >= 502 && status <= 504)
        || (on.has('retriable-4xx') && status === 409)
        || (on.has('retriable-status-codes') && p.codes.includes(status));
    case 'grpc':
      return (status === 1 && on.has('cancelled')) || (status === 4 && on.has('deadline-exceeded'))
        || (status === 8 && on.has('resource-exhausted')) || (status === 13 && on.has('internal'))
        || (status === 14 && on.has('unavailable'));
  }
}
