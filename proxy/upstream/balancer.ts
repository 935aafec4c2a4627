// Host choice within one cluster: Envoy's ROUND_ROBIN, RANDOM and LEAST_REQUEST (power of two
// choices over active requests) over the hosts that should take a request now.
//
// A host is a candidate when it is usable (not ejected, or the cluster is in panic), not one this
// request already tried (Envoy's previous_hosts retry predicate, which Istio always sets), and
// not in connect backoff (its last connect failed: see CONNECT_BACKOFF_* in pool.ts). When no host
// qualifies the conditions are relaxed in that order of importance: first the backoff (all live
// hosts are backing off: try one anyway), then the previous hosts. Envoy re-picks up to
// host_selection_retry_max_attempts (Istio: 5) times and may still land on a previous host; here
// the exclusion is exact, so a retry never returns to the host that just failed while another
// exists.
//
// Cheap on the hot path: one pass over the hosts counting candidates, no allocation; the walk to
// the k-th candidate only runs when some host is excluded.

export interface BalancedHost {
  readonly outlier: { readonly ejected: boolean };
  readonly pool: { readonly activeRequests: number; readonly backoffUntil: number };
}

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';

// Which exclusions apply: bit 1 = ejected hosts (off in panic), 2 = previous hosts, 4 = backoff.
const EJECTED = 1, PREVIOUS = 2, BACKOFF = 4;

export class Balancer {
  private rr = 0;
  /** For tests: the random source (uniform [0, 1)). */
  random: () => number = Math.random;

  /**
   * Choose a host, or undefined when none is usable. `panic`: balance over ejected hosts too
   * (Envoy's healthy_panic_threshold). `avoid`: hosts this request already tried. `filtered`:
   * false when the caller knows nothing is excluded (no ejection outside panic, no backoff, no
   * avoid), so no per-host pass is needed.
   */
  pick<H extends BalancedHost>(hosts: readonly H[], policy: LbPolicy, panic: boolean, avoid: readonly H[] | null, filtered = true): H | undefined {
    const n = hosts.length;
    if (n === 0) return undefined;
    if (!filtered) return this.choose(hosts, policy, n, n, 0, null, 0);
    const base = panic ? 0 : EJECTED;
    let now = 0;
    // Pass 1: count candidates under every exclusion, and whether any host is backing off.
    let full = 0;
    let backingOff = false;
    for (let i = 0; i < n; i++) {
      const h = hosts[i];
      if (base !== 0 && h.outlier.ejected) continue;
      const until = h.pool.backoffUntil;
      if (until !== 0 && until > (now ||= performance.now())) { backingOff = true; continue; }
      if (avoid !== null && avoid.includes(h)) continue;
      full++;
    }
    let mask = base | PREVIOUS | BACKOFF;
    let m = full;
    if (m === 0) {
      // Relax: first the backoff, then the previous hosts, then both.
      const tries = backingOff ? [base | PREVIOUS, base | BACKOFF, base] : [base | BACKOFF];
      for (const t of tries) {
        m = this.count(hosts, t, avoid, now);
        if (m > 0) { mask = t; break; }
      }
      if (m === 0) return undefined;
    }
    return this.choose(hosts, policy, n, m, mask, avoid, now);
  }

  /** The policy's choice among the `m` candidates under `mask` (all `n` when m === n). */
  private choose<H extends BalancedHost>(hosts: readonly H[], policy: LbPolicy, n: number, m: number, mask: number, avoid: readonly H[] | null, now: number): H | undefined {
    if (n === 1) return hosts[0];
    const all = m === n; // nothing excluded: index directly
    switch (policy) {
      case 'ROUND_ROBIN':
        for (let k = 0; k < n; k++) {
          const h = hosts[this.rr++ % n];
          if (all || this.candidate(h, mask, avoid, now)) return h;
        }
        return undefined;
      case 'RANDOM': {
        const k = (this.random() * m) | 0;
        return all ? hosts[k] : this.nth(hosts, k, mask, avoid, now);
      }
      default: {
        if (m === 1) return all ? hosts[0] : this.nth(hosts, 0, mask, avoid, now);
        // Two distinct candidates; the one with fewer active requests wins (ties: the first).
        const i = (this.random() * m) | 0;
        let j = (this.random() * (m - 1)) | 0;
        if (j >= i) j++;
        const a = all ? hosts[i] : this.nth(hosts, i, mask, avoid, now)!;
        const b = all ? hosts[j] : this.nth(hosts, j, mask, avoid, now)!;
        return b.pool.activeRequests < a.pool.activeRequests ? b : a;
      }
    }
  }

  private candidate(h: BalancedHost, mask: number, avoid: readonly BalancedHost[] | null, now: number): boolean {
    if ((mask & EJECTED) !== 0 && h.outlier.ejected) return false;
    if ((mask & BACKOFF) !== 0 && h.pool.backoffUntil !== 0 && h.pool.backoffUntil > now) return false;
    if ((mask & PREVIOUS) !== 0 && avoid !== null && avoid.includes(h)) return false;
    return true;
  }

  private count(hosts: readonly BalancedHost[], mask: number, avoid: readonly BalancedHost[] | null, now: number): number {
    let m = 0;
    for (let i = 0; i < hosts.length; i++) if (this.candidate(hosts[i], mask, avoid, now)) m++;
    return m;
  }

  private nth<H extends BalancedHost>(hosts: readonly H[], k: number, mask: number, avoid: readonly H[] | null, now: number): H | undefined {
    for (let i = 0; i < hosts.length; i++) {
      if (this.candidate(hosts[i], mask, avoid, now) && k-- === 0) return hosts[i];
    }
    return undefined;
  }
}
