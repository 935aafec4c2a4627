// Host choice within one cluster. The algorithm is fixed per cluster (so per snapshot: a changed
// loadBalancer block makes a new cluster, see Cluster.shape); a pick allocates nothing.
//
//   ROUND_ROBIN    equal weights: strict rotation; otherwise smooth weighted RR (nginx's; the
//                  same shares as Envoy's EDF scheduler).
//   LEAST_REQUEST  Envoy's: equal weights = power of two choices (choice_count 2, two distinct
//                  hosts), fewer active requests wins; unequal weights = weighted RR over
//                  w / (active + 1)^bias, bias 1.0.
//   RANDOM         uniform over the candidates.
//   PEAK_EWMA      meshlet's extension, Linkerd's balancer: P2C on cost = rtt × (active + 1),
//                  the RTT a peak-sensitive EWMA (a slower sample replaces it at once, faster ones
//                  pull it down with weight 1 − e^(−Δt/decay), and it decays towards 0 while idle;
//                  decay 10 s, 30 ms before the first sample), sampled at the first response byte.
//   RING_HASH, MAGLEV  consistent hashing of a request key (lb/key.ts) over a Ketama ring or a
//                  Maglev table (lb/hash.ts), rebuilt when the host set changes.
// PASSTHROUGH (the original destination) is not a choice among hosts: cluster.ts handles it.
//
// Slow start (Istio warmupDurationSecs = Envoy slow_start_config): an endpoint that arrived
// after the cluster was made has its weight scaled by max(10 %, t / window) (aggression 1.0) for
// the window; it applies to ROUND_ROBIN and LEAST_REQUEST, as in Envoy.
//
// A host is a candidate when it is usable (not ejected, or the cluster is in panic), not one this
// request already tried (Envoy's previous_hosts retry predicate, which Istio always sets), and
// not in connect backoff (its last connect failed: see CONNECT_BACKOFF_* in pool.ts). When no host
// qualifies the conditions are relaxed in that order of importance: first the backoff (all live
// hosts are backing off: try one anyway), then the previous hosts. Envoy re-picks up to
// host_selection_retry_max_attempts (Istio: 5) times and may still land on a previous host; here
// the exclusion is exact, so a retry never returns to the host that just failed while another
// exists. A consistent-hash pick whose host is excluded walks on along the ring/table, so only
// that host's keys move.
//
// Cheap on the hot path: one pass over the hosts counting candidates, no allocation; the walk to
// the k-th candidate only runs when some host is excluded.
import { Maglev, MAGLEV_DEFAULT, Ring, type HashTable } from './lb/hash.ts';

/** Per-host balancing state, owned by the host (Endpoint.lb). */
export class HostLb {
  /** Endpoint weight (Istio WorkloadEntry weight; 1 unless set). */
  weight: number;
  /** Monotonic ms it joined the cluster; 0 = with the cluster (never slow-started). */
  addedAt: number;
  /** Smooth weighted RR's running credit. */
  current = 0;
  /** PEAK_EWMA: the RTT estimate (ms) as of `rttAt`. */
  rtt: number;
  rttAt: number;
  constructor(weight = 1, addedAt = 0, now = performance.now()) {
    this.weight = weight > 0 ? weight : 1;
    this.addedAt = addedAt;
    this.rtt = PEAK_EWMA_DEFAULT_RTT_MS;
    this.rttAt = now;
  }
}

export interface BalancedHost {
  readonly outlier: { readonly ejected: boolean };
  readonly pool: { readonly activeRequests: number; readonly backoffUntil: number };
  readonly lb: HostLb;
  /** "address:port": what the hash tables place. */
  readonly key: string;
}

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'PEAK_EWMA' | 'RING_HASH' | 'MAGLEV' | 'PASSTHROUGH';

/** Linkerd's defaults (linkerd2-proxy: DEFAULT_RTT 30 ms, decay 10 s). */
export const PEAK_EWMA_DEFAULT_RTT_MS = 30;
export const PEAK_EWMA_DECAY_MS = 10_000;
/** Envoy's slow-start floor (min_weight_percent 10). */
const WARMUP_MIN_FACTOR = 0.1;
/** Envoy's ring_hash minimum_ring_size default. */
export const RING_DEFAULT = 1024;

/** A PEAK_EWMA sample: the time from sending to the first response byte. */
export function observeRtt(lb: HostLb, rttMs: number, now: number): void {
  const decayed = lb.rtt * Math.exp(-(now - lb.rttAt) / PEAK_EWMA_DECAY_MS);
  if (rttMs > decayed) lb.rtt = rttMs; // a peak is taken at once
  else {
    const w = Math.exp(-(now - lb.rttAt) / PEAK_EWMA_DECAY_MS);
    lb.rtt = decayed * w + rttMs * (1 - w);
  }
  lb.rttAt = now;
}

/** PEAK_EWMA's cost now: the estimate decayed since its last sample, times (pending + 1). */
export function ewmaCost(h: BalancedHost, now: number): number {
  const lb = h.lb;
  return lb.rtt * Math.exp(-(now - lb.rttAt) / PEAK_EWMA_DECAY_MS) * (h.pool.activeRequests + 1);
}

export interface BalancerOptions {
  /** Slow-start window (ms); 0 = none. */
  warmupMs?: number;
  /** RING_HASH: Envoy minimum_ring_size (1024). */
  minRingSize?: number;
  /** MAGLEV: table size, a prime (65537). */
  tableSize?: number;
}

// Which exclusions apply: bit 1 = ejected hosts (off in panic), 2 = previous hosts, 4 = backoff.
const EJECTED = 1, PREVIOUS = 2, BACKOFF = 4;

export class Balancer {
  private rr = 0;
  /** The random source (uniform [0, 1)): tests give a seeded one. */
  random: () => number = Math.random;
  /** Monotonic ms for slow start and PEAK_EWMA (tests give a fixed one). */
  now: () => number = () => performance.now();
  readonly warmupMs: number;
  private readonly minRingSize: number;
  private readonly tableSize: number;
  // Derived from the host array, recomputed when the cluster hands a new one (identity check).
  private seen: readonly BalancedHost[] | null = null;
  private equalWeights = true;
  /** Until when (monotonic ms) some host is still warming up; 0 = none. */
  private warmingUntil = 0;
  private table: HashTable | null = null;
  private tablePolicy: LbPolicy | null = null;

  constructor(opts: BalancerOptions = {}) {
    this.warmupMs = opts.warmupMs ?? 0;
    this.minRingSize = opts.minRingSize ?? RING_DEFAULT;
    this.tableSize = opts.tableSize ?? MAGLEV_DEFAULT;
  }

  /**
   * Choose a host, or undefined when none is usable. `panic`: balance over ejected hosts too
   * (Envoy's healthy_panic_threshold). `avoid`: hosts this request already tried. `filtered`:
   * false when the caller knows nothing is excluded (no ejection outside panic, no backoff, no
   * avoid), so no per-host pass is needed. `hash`: the request's key for RING_HASH/MAGLEV (-1 =
   * none: a random host, as Envoy).
   */
  pick<H extends BalancedHost>(hosts: readonly H[], policy: LbPolicy, panic: boolean, avoid: readonly H[] | null, filtered = true, hash = -1): H | undefined {
    const n = hosts.length;
    if (n === 0) return undefined;
    if (hosts !== this.seen) this.refresh(hosts);
    if (!filtered) return this.choose(hosts, policy, n, n, 0, null, 0, hash);
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
      // Relax: first the backoff, then the previous hosts, then both (no array: fixed order).
      for (let t = backingOff ? 0 : 1; t < 3; t++) {
        const tm = t === 0 ? base | PREVIOUS : t === 1 ? base | BACKOFF : base;
        if (!backingOff && t === 2) break;
        m = this.count(hosts, tm, avoid, now);
        if (m > 0) { mask = tm; break; }
      }
      if (m === 0) return undefined;
    }
    return this.choose(hosts, policy, n, m, mask, avoid, now, hash);
  }

  /** Recompute what depends on the host set: equal weights, the warm-up horizon, the hash table. */
  private refresh(hosts: readonly BalancedHost[]): void {
    this.seen = hosts;
    const w0 = hosts[0].lb.weight;
    this.equalWeights = true;
    this.warmingUntil = 0;
    for (const h of hosts) {
      if (h.lb.weight !== w0) this.equalWeights = false;
      if (this.warmupMs > 0 && h.lb.addedAt > 0) this.warmingUntil = Math.max(this.warmingUntil, h.lb.addedAt + this.warmupMs);
    }
    this.table = null;
  }

  private hashTable(hosts: readonly BalancedHost[], policy: LbPolicy): HashTable {
    if (this.table !== null && this.tablePolicy === policy) return this.table;
    const keys = hosts.map((h) => h.key);
    const weights = hosts.map((h) => h.lb.weight);
    this.table = policy === 'MAGLEV' ? new Maglev(keys, weights, this.tableSize) : new Ring(keys, weights, this.minRingSize);
    this.tablePolicy = policy;
    return this.table;
  }

  /** The slow-start factor of a host now (1 = full weight). */
  private warmFactor(h: BalancedHost, now: number): number {
    const added = h.lb.addedAt;
    if (added === 0) return 1;
    const t = now - added;
    if (t >= this.warmupMs) return 1;
    return Math.max(WARMUP_MIN_FACTOR, Math.max(t, 1) / this.warmupMs);
  }

  /** The policy's choice among the `m` candidates under `mask` (all `n` when m === n). */
  private choose<H extends BalancedHost>(hosts: readonly H[], policy: LbPolicy, n: number, m: number, mask: number, avoid: readonly H[] | null, now: number, hash: number): H | undefined {
    if (n === 1) return hosts[0];
    const all = m === n; // nothing excluded: index directly
    switch (policy) {
      case 'ROUND_ROBIN': {
        if (!this.equalWeights || this.warming()) return this.weighted(hosts, mask, avoid, all, false);
        for (let k = 0; k < n; k++) {
          const h = hosts[this.rr++ % n];
          if (all || this.candidate(h, mask, avoid, now)) return h;
        }
        return undefined;
      }
      case 'RANDOM': {
        const k = (this.random() * m) | 0;
        return all ? hosts[k] : this.nth(hosts, k, mask, avoid, now);
      }
      case 'RING_HASH':
      case 'MAGLEV': {
        if (hash < 0) {
          const k = (this.random() * m) | 0;
          return all ? hosts[k] : this.nth(hosts, k, mask, avoid, now);
        }
        const t = this.hashTable(hosts, policy);
        if (all) return hosts[t.lookup(hash, 0)];
        // Walk on from the key's slot to the first candidate (bounded by the table size).
        for (let step = 0; step < t.size; step++) {
          const h = hosts[t.lookup(hash, step)];
          if (this.candidate(h, mask, avoid, now)) return h;
        }
        return this.nth(hosts, 0, mask, avoid, now);
      }
      default: {
        const ewma = policy === 'PEAK_EWMA';
        if (!ewma && (!this.equalWeights || this.warming())) return this.weighted(hosts, mask, avoid, all, true);
        if (m === 1) return all ? hosts[0] : this.nth(hosts, 0, mask, avoid, now);
        // Two distinct candidates; the cheaper wins (ties: the first).
        const i = (this.random() * m) | 0;
        let j = (this.random() * (m - 1)) | 0;
        if (j >= i) j++;
        const a = all ? hosts[i] : this.nth(hosts, i, mask, avoid, now)!;
        const b = all ? hosts[j] : this.nth(hosts, j, mask, avoid, now)!;
        if (ewma) {
          const t = this.now();
          return ewmaCost(b, t) < ewmaCost(a, t) ? b : a;
        }
        return b.pool.activeRequests < a.pool.activeRequests ? b : a;
      }
    }
  }

  private warming(): boolean {
    return this.warmingUntil !== 0 && this.now() < this.warmingUntil;
  }

  /**
   * Smooth weighted round robin over the candidates: each gains its effective weight, the one
   * with the most credit wins and pays the total. Effective weight = weight × slow-start factor,
   * divided by (active + 1) for LEAST_REQUEST (Envoy's active_request_bias 1.0).
   */
  private weighted<H extends BalancedHost>(hosts: readonly H[], mask: number, avoid: readonly H[] | null, all: boolean, byActive: boolean): H | undefined {
    const now = this.now();
    let best: H | undefined;
    let total = 0;
    for (let i = 0; i < hosts.length; i++) {
      const h = hosts[i];
      if (!all && !this.candidate(h, mask, avoid, now)) continue;
      let w = h.lb.weight * (this.warmupMs > 0 ? this.warmFactor(h, now) : 1);
      if (byActive) w /= h.pool.activeRequests + 1;
      h.lb.current += w;
      total += w;
      if (best === undefined || h.lb.current > best.lb.current) best = h;
    }
    if (best !== undefined) best.lb.current -= total;
    return best;
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
