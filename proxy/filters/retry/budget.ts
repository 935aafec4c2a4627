// Linkerd's retry budget (meshlet's --retry-budget-*): retries may add at most `ratio` of the
// requests seen in the last `ttl` plus a floor of `minPerSecond` per second. Counted in one-second
// buckets. A cluster holds one through its own RetryBudgetLike interface (upstream/cluster.ts).
import type { RetryBudgetLike } from '../../upstream/cluster.ts';

export class RetryBudget implements RetryBudgetLike {
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

/** The factory a cluster calls for its budget (the composition root passes it in ClusterOptions). */
export function retryBudgetFactory(cfg: { ratio: number; minPerSecond: number } | null): (() => RetryBudgetLike) | undefined {
  return cfg === null ? undefined : () => new RetryBudget(cfg.ratio, cfg.minPerSecond);
}
