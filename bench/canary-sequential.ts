// Seeded simulation of the relative success-rate check (control/canary/sequential.ts, the same
// function the controller calls once per analysis interval). A service at 99.9 % success and
// 100 rps, the candidate at a weight of 10/20/50 %, looked at once a second (interval 1s) with
// relative.maxDecrease = 0.5 points. For each weight:
//   detection: the candidate is 0.5 points worse (99.4 %): seconds until the test says "fail"
//   clean:     the candidate is as good (99.9 %): share of 100 runs that ever say "fail" in 10 min
//              (false alarms), and the median seconds until it says "pass"
// Usage: npx node bench/canary-sequential.ts [--runs 100] [--seed 1]
import { relativeCheck } from '../control/canary/sequential.ts';
import type { Window } from '../control/canary/metrics.ts';
import type { MetricSpec } from '../control/canary/source.ts';

const arg = (n: string, d: number) => { const i = process.argv.indexOf(`--${n}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const RUNS = arg('runs', 100);
const SEED = arg('seed', 1);
const RPS = 100;
const HORIZON_S = 600;

function mulberry32(a: number): () => number {
  return () => { a |= 0; a = (a + 0x6d2b79f5) | 0; let t = Math.imul(a ^ (a >>> 15), 1 | a); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

const metric: MetricSpec = { name: 'request-success-rate', relative: { maxDecrease: 0.5 } };
const win = (): Window => ({ requests: 0, errors: 0, buckets: [], reports: 0, ejected: false });

/** One run: seconds until fail / pass (null if undecided within the horizon). */
function run(rand: () => number, weight: number, canaryErr: number): { fail: number | null; pass: number | null } {
  const c = win(), p = win();
  let pass: number | null = null;
  for (let s = 1; s <= HORIZON_S; s++) {
    for (let i = 0; i < RPS; i++) {
      const w = rand() * 100 < weight ? c : p;
      w.requests++;
      if (rand() < (w === c ? canaryErr : 0.001)) w.errors++;
    }
    const r = relativeCheck(metric, c, p);
    if (r.result === 'fail') return { fail: s, pass };
    if (r.result === 'pass' && pass === null) pass = s;
    // The controller would stop at the first pass or fail; the clean runs go on to the horizon so a
    // late false alarm (had the run continued) is counted too.
  }
  return { fail: null, pass };
}

const pct = (xs: number[], q: number) => { if (!xs.length) return NaN; const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

console.log(`relative success-rate check: SPRT (alpha 1%, beta 5%), maxDecrease 0.5 points, primary 99.9%, ${RPS} rps, one look per second, ${RUNS} runs each, seed ${SEED}`);
console.log('| weight | canary rps | detect +0.5 pt: median s | p90 s | detected within 10 min | clean: false alarms (ever fail in 10 min) | clean: a fail before the first pass | clean: median s to pass |');
console.log('|---|---|---|---|---|---|---|---|');
for (const weight of [10, 20, 50]) {
  const rand = mulberry32(SEED * 1000 + weight);
  const det: number[] = [];
  let detected = 0;
  for (let i = 0; i < RUNS; i++) { const r = run(rand, weight, 0.006); if (r.fail !== null) { detected++; det.push(r.fail); } }
  let alarms = 0, alarmsBeforePass = 0;
  const passes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = run(rand, weight, 0.001);
    if (r.fail !== null) { alarms++; if (r.pass === null || r.fail < r.pass) alarmsBeforePass++; }
    if (r.pass !== null) passes.push(r.pass);
  }
  console.log(`| ${weight} % | ${RPS * weight / 100} | ${pct(det, 0.5)} | ${pct(det, 0.9)} | ${detected}/${RUNS} | ${alarms}/${RUNS} | ${alarmsBeforePass}/${RUNS} | ${pct(passes, 0.5)} |`);
}
