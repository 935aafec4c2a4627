// Relative checks: the candidate against the primary over the same window, decided by Wald's
// sequential probability ratio test (SPRT) on the candidate's requests, so the run can look at
// the data after every report without inflating the false-alarm rate the way repeated fixed
// tests do (that is what a plain "is it below primary - 0.5 now?" each interval would be).
//
// request-success-rate with relative.maxDecrease = d points:
//   H0: candidate error rate p = p0 (the primary's, estimated with a +1/+2 prior so 0 errors is not 0)
//   H1: p = p0 + d/100
// request-duration with relative.maxIncreasePercent = x: with t = the primary's p99 × (1 + x/100),
//   H0: P(latency > t) = 1 %   H1: P(latency > t) = 2 %  (the candidate's p99 is above t)
// Decision after each look: LLR ≥ ln((1-β)/α) -> fail, LLR ≤ ln(β/(1-α)) -> pass, else undecided
// (a halt: neither a pass nor a failed check). α = 1 %, β = 5 %.
import { EDGE_BUCKETS_MS } from '../../proxy/telemetry/edges.ts';
import type { Window } from './metrics.ts';
import type { MetricSpec } from './source.ts';

export const ALPHA = 0.01;
export const BETA = 0.05;
const UPPER = Math.log((1 - BETA) / ALPHA);
const LOWER = Math.log(BETA / (1 - ALPHA));

export interface SequentialResult { result: 'pass' | 'fail' | 'insufficient'; llr: number; message: string }

/** Wald's SPRT for Bernoulli counts: k "bad" of n under p0 vs p1 (p1 > p0). */
export function sprt(k: number, n: number, p0: number, p1: number): { decision: 'H0' | 'H1' | null; llr: number } {
  const llr = k * Math.log(p1 / p0) + (n - k) * Math.log((1 - p1) / (1 - p0));
  return { decision: llr >= UPPER ? 'H1' : llr <= LOWER ? 'H0' : null, llr };
}

/** The lower bound (ms) of each bucket: requests in bucket i took more than this. */
const lowerBound = (i: number) => (i === 0 ? 0 : EDGE_BUCKETS_MS[i - 1]);

export function relativeCheck(m: MetricSpec, canary: Window, primary: Window): SequentialResult {
  if (m.name === 'request-success-rate' && m.relative?.maxDecrease !== undefined) {
    const d = m.relative.maxDecrease / 100;
    const p0 = (primary.errors + 1) / (primary.requests + 2);
    const p1 = Math.min(0.999999, p0 + d);
    const { decision, llr } = sprt(canary.errors, canary.requests, p0, p1);
    const sr = (x: Window) => (x.requests ? Math.round((10000 * (x.requests - x.errors)) / x.requests) / 100 : NaN);
    const what = `success rate ${sr(canary)}% vs primary ${sr(primary)}% (max ${m.relative.maxDecrease} points lower; SPRT LLR ${llr.toFixed(2)}, bounds ${LOWER.toFixed(2)}..${UPPER.toFixed(2)}, ${canary.requests} requests)`;
    return { result: decision === 'H1' ? 'fail' : decision === 'H0' ? 'pass' : 'insufficient', llr, message: what };
  }
  if (m.name === 'request-duration' && m.relative?.maxIncreasePercent !== undefined) {
    const total = primary.buckets.reduce((a, b) => a + b, 0);
    if (total === 0) return { result: 'insufficient', llr: 0, message: 'request duration: the primary has no traffic to compare with' };
    let seen = 0, i = 0;
    for (; i < primary.buckets.length; i++) { seen += primary.buckets[i]; if (seen >= 0.99 * total) break; }
    const pP99 = i < EDGE_BUCKETS_MS.length ? EDGE_BUCKETS_MS[i] : EDGE_BUCKETS_MS[EDGE_BUCKETS_MS.length - 1] * 2;
    const t = pP99 * (1 + m.relative.maxIncreasePercent / 100);
    let slow = 0;
    canary.buckets.forEach((c, j) => { if (lowerBound(j) >= t) slow += c; });
    const n = canary.buckets.reduce((a, b) => a + b, 0);
    const { decision, llr } = sprt(slow, n, 0.01, 0.02);
    const msg = `request duration: ${slow} of ${n} candidate requests above ${t}ms (primary p99 ${pP99}ms + ${m.relative.maxIncreasePercent}%; SPRT LLR ${llr.toFixed(2)})`;
    return { result: decision === 'H1' ? 'fail' : decision === 'H0' ? 'pass' : 'insufficient', llr, message: msg };
  }
  return { result: 'pass', llr: 0, message: 'no relative bound' };
}
