// Retry policy pieces: which failures a retry_on string accepts, Envoy's jittered backoff, and a
// Linkerd-style retry budget so retries cannot amplify an outage.
import type { RetrySpec } from '../config/schema.ts';
import { listTokens } from '../engine/http1.ts';

export type FailureKind = 'connect' | 'reset' | 'per_try_timeout' | 'status';

export interface RetryPolicy {
  numRetries: number;
  on: Set<string>;
  codes: number[];
  perTryTimeoutMs: number;
  /** Could retry after the request was sent, so a body must be kept for replay. */
  replayNeeded: boolean;
}

const cache = new WeakMap<RetrySpec, RetryPolicy | null>();

/** The policy of a route's spec, compiled once (shared and read-only; header overrides get their own). */
export function routePolicy(spec: RetrySpec | null): RetryPolicy | null {
  if (spec === null) return null;
  let p = cache.get(spec);
  if (p === undefined) { p = policyFrom(spec); cache.set(spec, p); }
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
  return { numRetries, on, codes, perTryTimeoutMs: spec?.perTryTimeoutMs ?? 0, replayNeeded: needsReplay(on, codes) };
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
  }
}

/** Envoy's JitteredExponentialBackOffStrategy: retry k waits uniform [0, base*2^(k-1)), capped at max. */
export class Backoff {
  private interval: number;
  private readonly max: number;
  constructor(baseMs = 25, maxMs = baseMs * 10) { this.interval = baseMs; this.max = maxMs; }
  next(random = Math.random): number {
    const b = this.interval;
    this.interval = this.interval < this.max / 2 ? 2 * this.interval : this.max;
    return Math.floor(random() * b);
  }
}

/**
 * Linkerd's retry budget: retries may add at most `ratio` of the requests seen in the last `ttl`
 * plus a floor of `minPerSecond` per second. Counted in one-second buckets.
 */
export class RetryBudget {
  readonly ratio: number;
  readonly minPerSecond: number;
  private readonly ttlS: number;
  private requests: number[];
  private retries: number[];
  private second = -1;
  private idx = 0;
  constructor(ratio = 0.2, minPerSecond = 10, ttlS = 10) {
    this.ratio = ratio;
    this.minPerSecond = minPerSecond;
    this.ttlS = ttlS;
    this.requests = new Array(ttlS).fill(0);
    this.retries = new Array(ttlS).fill(0);
  }
  private roll(): void {
    const s = Math.floor(performance.now() / 1000);
    if (s === this.second) return;
    const steps = this.second < 0 ? this.ttlS : Math.min(this.ttlS, s - this.second);
    for (let i = 0; i < steps; i++) {
      this.idx = (this.idx + 1) % this.ttlS;
      this.requests[this.idx] = 0;
      this.retries[this.idx] = 0;
    }
    this.second = s;
  }
  onRequest(): void { this.roll(); this.requests[this.idx]++; }
  tryWithdraw(): boolean {
    this.roll();
    let req = 0, ret = 0;
    for (let i = 0; i < this.ttlS; i++) { req += this.requests[i]; ret += this.retries[i]; }
    if (ret + 1 > this.ratio * req + this.minPerSecond * this.ttlS) return false;
    this.retries[this.idx]++;
    return true;
  }
}
