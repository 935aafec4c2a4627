// One request's retries: what is left of its policy, the breaker slot it holds between
// scheduling a retry and that retry's result, the budget, and Envoy's jittered backoff.
// Made by the router at a request's first failure, when its route (or headers) has a policy.
import type { Cluster } from '../../upstream/cluster.ts';
import { retryLimit } from '../../upstream/pool.ts';
import { Flag, type StreamInfo } from '../../core/stream-info.ts';
import { accepts, type FailureKind, type RetryPolicy } from './policy.ts';

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
 * Envoy's shouldRetry for a failure: retry = scheduled (the caller waits `nextDelayMs()`);
 * no = the policy does not retry this result; refused = it would, but the limit, the breaker or
 * the budget said no. Either way but retry the failure goes to the client.
 */
export type Decision = 'retry' | 'no' | 'refused';

export class RetryState {
  readonly policy: RetryPolicy;
  private retriesLeft: number;
  /** Retry breaker slots held (0 or 1): from scheduling a retry until its result. */
  private held = 0;
  /** A retry was made (Envoy's "retried and the latest reset reason" wording, retry_success). */
  retried = false;
  private backoff: Backoff | null = null;

  constructor(policy: RetryPolicy) {
    this.policy = policy;
    this.retriesLeft = policy.numRetries;
  }

  /** A retry was scheduled and its result has not come yet (its breaker slot is held). */
  get holding(): boolean { return this.held > 0; }

  decide(kind: FailureKind, status: number, cluster: Cluster, replayable: boolean, info: StreamInfo): Decision {
    // Envoy's resetRetry(): the slot taken for the previous retry is given back at this result.
    if (this.held > 0) this.release(cluster);
    if (!accepts(this.policy, kind, status)) return 'no';
    // A streamed body already sent cannot be replayed; connect failures never consumed it.
    if (!replayable) return 'no';
    const stats = cluster.stats;
    if (this.retriesLeft === 0) {
      stats.upstream_rq_retry_limit_exceeded++;
      info.addFlag(Flag.URX);
      return 'refused';
    }
    this.retriesLeft--;
    const br = cluster.br;
    // The breaker (max_retries, or Istio's retryBudget in its place), then meshlet's rate budget if
    // one was configured (--retry-budget-*): none by default, as Istio configures none.
    const limit = retryLimit(br);
    if (br.retriesActive >= limit || (cluster.budget !== null && !cluster.budget.tryWithdraw())) {
      stats.upstream_rq_retry_overflow++;
      info.addFlag(Flag.UO);
      return 'refused';
    }
    br.retriesActive++;
    this.held = 1;
    if (br.retriesActive >= limit) stats['circuit_breakers.default.rq_retry_open'] = 1;
    stats.upstream_rq_retry++;
    stats.upstream_rq_retry_backoff_exponential++;
    if (kind === 'status') stats.retryCodes.set(status, (stats.retryCodes.get(status) ?? 0) + 1);
    this.retried = true;
    return 'retry';
  }

  nextDelayMs(): number { return (this.backoff ??= new Backoff()).next(); }

  /** Give back the breaker slot (the retry's result arrived, or the request ended). */
  release(cluster: Cluster): void {
    if (this.held === 0) return;
    const br = cluster.br;
    br.retriesActive -= this.held;
    this.held = 0;
    cluster.stats['circuit_breakers.default.rq_retry_open'] = br.retriesActive >= retryLimit(br) ? 1 : 0;
  }
}
