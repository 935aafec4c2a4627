// Consistent hashing: the request-key hash and the two tables Envoy builds from the hosts, a
// Ketama ring (ring_hash_lb.cc) and a Maglev lookup table (maglev_lb.cc). Both are built once per
// endpoint set (Balancer rebuilds when the cluster's host array changes) and looked up with no
// allocation. Envoy hashes with xxHash64; here a 32-bit MurmurHash3 over UTF-16 code units (no
// BigInt, no Buffer): the key spaces differ from Envoy's, the placement properties do not.

/** MurmurHash3 x86_32 of a string's UTF-16 code units (two per 32-bit block). */
export function hash32(s: string, seed = 0): number {
  let h = seed >>> 0;
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The same hash over `s.slice(from, to)` without making the slice (request keys). */
export function hash32Range(s: string, from: number, to: number): number {
  let h = 0;
  let i = from;
  for (; i + 1 < to; i += 2) {
    let k = (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < to) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= (to - from) * 2;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A lookup table: `lookup(hash, k)` = index (into the host array it was built from) of the k-th choice. */
export interface HashTable {
  readonly size: number;
  /** The host index for this hash; `step` > 0 walks on (the next distinct slot) when a host is unusable. */
  lookup(hash: number, step: number): number;
}

export const RING_MAX = 8 * 1024 * 1024;

/**
 * Ketama ring (Envoy RingHashLoadBalancer::Ring): each host gets points hashed from
 * "<address:port>_<i>", sorted; a key lands on the first point at or after its hash (wrapping).
 * Envoy gives each host about minRingSize × its weight share points, so adding or removing a host
 * changes every host's count and moves keys between the others too (measured: 17 % of keys for
 * one of 10 removed, against the ideal 10 %). Here the points per unit of the smallest weight are
 * minRingSize / Σ(w / min w) rounded up to a power of two: the count stays put while the host
 * set changes within a power-of-two band, so only the added or removed host's keys move. The
 * ring is at least minRingSize and at most twice that (capped at RING_MAX).
 */
export class Ring implements HashTable {
  private readonly points: Uint32Array;
  private readonly owner: Uint32Array;
  readonly size: number;

  constructor(keys: readonly string[], weights: readonly number[], minRingSize: number) {
    let minW = Infinity;
    for (const w of weights) minW = Math.min(minW, w);
    let units = 0;
    for (const w of weights) units += w / minW;
    let perUnit = 1;
    while (perUnit * units < minRingSize) perUnit *= 2;
    while (perUnit > 1 && perUnit * units > RING_MAX) perUnit /= 2;
    const pts: Array<[number, number]> = [];
    for (let h = 0; h < keys.length; h++) {
      const count = Math.max(1, Math.round(perUnit * weights[h] / minW));
      for (let i = 0; i < count; i++) pts.push([hash32(`${keys[h]}_${i}`), h]);
    }
    pts.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    this.size = pts.length;
    this.points = new Uint32Array(pts.length);
    this.owner = new Uint32Array(pts.length);
    for (let i = 0; i < pts.length; i++) { this.points[i] = pts[i][0]; this.owner[i] = pts[i][1]; }
  }

  lookup(hash: number, step: number): number {
    const p = this.points;
    // First point >= hash (binary search), wrapping past the end.
    let lo = 0, hi = p.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (p[mid] < hash) lo = mid + 1; else hi = mid;
    }
    return this.owner[(lo + step) % p.length];
  }
}

export const MAGLEV_DEFAULT = 65537;

/** Whether `n` is prime (Maglev's table size must be: Envoy refuses others). */
export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/**
 * Maglev (Eisenbud et al., NSDI '16; Envoy MaglevTable): each host has a permutation of the
 * table slots, offset = h(key, seed 0) mod M and skip = h(key, seed 1) mod (M−1) + 1; hosts take
 * turns claiming their next free slot until the table is full. Weighted as Envoy does: per turn a
 * host earns w/max(w) of a slot and claims one when it has earned a whole one.
 */
export class Maglev implements HashTable {
  private readonly table: Uint32Array;
  readonly size: number;

  constructor(keys: readonly string[], weights: readonly number[], tableSize: number) {
    // The fill below terminates only for a prime size (every skip is coprime with it): compile.ts
    // refuses others, and a snapshot from elsewhere with one gets the next prime, never a hang.
    let m = Math.max(2, Math.floor(tableSize));
    while (!isPrime(m)) m++;
    this.size = m;
    const table = new Uint32Array(m).fill(0xffffffff);
    const n = keys.length;
    const offset = new Float64Array(n), skip = new Float64Array(n), next = new Float64Array(n), credit = new Float64Array(n);
    let maxW = 0;
    for (const w of weights) maxW = Math.max(maxW, w);
    for (let i = 0; i < n; i++) {
      offset[i] = hash32(keys[i], 0) % m;
      skip[i] = (hash32(keys[i], 1) % (m - 1)) + 1;
    }
    let filled = 0;
    while (filled < m) {
      for (let i = 0; i < n && filled < m; i++) {
        credit[i] += weights[i] / maxW;
        if (credit[i] < 1) continue;
        credit[i] -= 1;
        let c = (offset[i] + skip[i] * next[i]) % m;
        while (table[c] !== 0xffffffff) { next[i]++; c = (offset[i] + skip[i] * next[i]) % m; }
        table[c] = i;
        next[i]++;
        filled++;
      }
    }
    this.table = table;
  }

  lookup(hash: number, step: number): number {
    // A retry or an unusable host walks on through the table (the next slot's owner), so only
    // the keys of the unusable host move: Envoy re-hashes instead, with the same effect.
    return this.table[(hash + step) % this.size];
  }
}
