// fortio's histogram (stats/stats.go): a Counter (count, min, max, sum, sum of squares, exact
// float seconds) plus fixed buckets. A value v goes to the bucket of (v - offset) / divider
// (divider = -r, 0.001 by default, so the bucket values below read as milliseconds); percentiles
// are interpolated linearly inside the bucket that holds them, and the first bucket starts at
// Min and the last ends at Max, so a percentile can never exceed the largest value seen.

/** fortio's bucket values (histogramBucketValues). */
export const BUCKET_VALUES = [
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
  12, 14, 16, 18, 20,
  25, 30, 35, 40, 45, 50,
  60, 70, 80, 90, 100,
  120, 140, 160, 180, 200,
  250, 300, 350, 400, 450, 500,
  600, 700, 800, 900, 1000,
  2000, 3000, 4000, 5000, 7500, 10000,
  20000, 30000, 40000, 50000, 75000, 100000,
];
const NUM_VALUES = BUCKET_VALUES.length;
const NUM_BUCKETS = NUM_VALUES + 1; // + the overflow bucket

export interface Bucket { Start: number; End: number; Percent: number; Count: number }
export interface Percentile { Percentile: number; Value: number }
/** fortio's stats.HistogramData, field for field (JSON names as Go marshals them). */
export interface HistogramData {
  Count: number; Min: number; Max: number; Sum: number; Avg: number; StdDev: number;
  Data: Bucket[] | null;
  Percentiles?: Percentile[];
}

export class Counter {
  count = 0;
  min = 0;
  max = 0;
  sum = 0;
  sumSq = 0;
  record(v: number): void {
    if (this.count === 0) { this.min = v; this.max = v; } else { if (v < this.min) this.min = v; if (v > this.max) this.max = v; }
    this.count++;
    this.sum += v;
    this.sumSq += v * v;
  }
  avg(): number { return this.count ? this.sum / this.count : 0; }
  stdDev(): number {
    if (!this.count) return 0;
    const sigma = (this.sumSq - (this.sum * this.sum) / this.count) / this.count;
    return sigma > 0 ? Math.sqrt(sigma) : 0;
  }
  merge(o: Counter): void {
    if (o.count === 0) return;
    if (this.count === 0) { this.min = o.min; this.max = o.max; } else { this.min = Math.min(this.min, o.min); this.max = Math.max(this.max, o.max); }
    this.count += o.count; this.sum += o.sum; this.sumSq += o.sumSq;
  }
}

export class Histogram {
  readonly counter = new Counter();
  readonly hdata = new Float64Array(NUM_BUCKETS);
  readonly offset: number;
  readonly divider: number;
  constructor(offset = 0, divider = 0.001) {
    this.offset = offset;
    this.divider = divider;
  }
  record(v: number): void {
    this.counter.record(v);
    const scaled = (v - this.offset) / this.divider;
    let idx: number;
    if (scaled <= BUCKET_VALUES[0]) idx = 0;
    else if (scaled > BUCKET_VALUES[NUM_VALUES - 1]) idx = NUM_VALUES;
    else {
      // fortio: bucket i holds (values[i-1], values[i]]: the integer part, minus one when the
      // value sits on an integer (within 1e-12), then the first bucket value above it.
      let sv = Math.trunc(scaled);
      if (scaled - sv < 1e-12) sv--;
      let lo = 0, hi = NUM_VALUES - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (BUCKET_VALUES[mid] > sv) hi = mid; else lo = mid + 1; }
      idx = lo;
    }
    this.hdata[idx]++;
  }
  merge(o: Histogram): void {
    this.counter.merge(o.counter);
    for (let i = 0; i < NUM_BUCKETS; i++) this.hdata[i] += o.hdata[i];
  }
  /** fortio's Export(), then CalcPercentiles(ps). */
  export(ps: number[] = []): HistogramData {
    const c = this.counter;
    const res: HistogramData = { Count: c.count, Min: c.min, Max: c.max, Sum: c.sum, Avg: c.avg(), StdDev: c.stdDev(), Data: null };
    let last = -1;
    for (let i = NUM_BUCKETS - 1; i >= 0; i--) if (this.hdata[i] > 0) { last = i; break; }
    if (last >= 0) {
      const data: Bucket[] = [];
      let prev = BUCKET_VALUES[0];
      let total = 0;
      for (let i = 0; i <= last; i++) {
        const n = this.hdata[i];
        if (n === 0) { if (i < NUM_VALUES) prev = BUCKET_VALUES[i]; continue; }
        total += n;
        const start = data.length === 0 ? c.min : this.divider * prev + this.offset;
        let end: number;
        if (i < NUM_VALUES) { end = this.divider * BUCKET_VALUES[i] + this.offset; prev = BUCKET_VALUES[i]; } else end = c.max;
        data.push({ Start: start, End: end, Percent: (100 * total) / c.count, Count: n });
      }
      data[data.length - 1].End = c.max;
      res.Data = data;
    }
    // fortio: CalcPercentiles on an empty histogram returns it as is (no Percentiles: omitempty).
    if (ps.length && c.count > 0) res.Percentiles = ps.map((p) => ({ Percentile: p, Value: calcPercentile(res, p) }));
    return res;
  }
}

/**
 * fortio's CalcPercentile: the minimum covers the first 1/Count of the values; above it, linear
 * interpolation inside the bucket that crosses `p`.
 */
export function calcPercentile(h: HistogramData, p: number): number {
  const d = h.Data;
  if (!d || d.length === 0) return 0;
  if (p >= 100) return h.Max;
  let pp = 100 / h.Count;
  if (p <= pp) return h.Min;
  for (const b of d) {
    if (p <= b.Percent) return b.Start + ((p - pp) / (b.Percent - pp)) * (b.End - b.Start);
    pp = b.Percent;
  }
  return h.Max;
}
