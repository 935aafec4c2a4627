// fortio's pacing (periodic/periodic.go): how many threads and calls a run gets, and when call i
// of a thread is due. Kept apart from the runner so the arithmetic is testable on its own.
//
//  - qps > 0 and -t: total = int(qps × t); under 2 → 2 calls on 1 thread; 2×threads > total →
//    threads = total/2; each thread gets total/threads (floored).
//  - -n: the same rules with total = n, n/threads each, the whole remainder to thread 0.
//  - schedule: call i of a thread is due at (i + i/(calls-1)) / perThreadQPS in -t mode (the last
//    call lands at the end of -t), i / perThreadQPS otherwise; -uniform delays thread t by
//    t/threads of the per-thread interval; -jitter adds ±10 % of each sleep.

export interface PlanInput {
  qps: number;          // <= 0: max
  durationMs: number;   // 0 (with n = 0): until interrupted
  exactly: number;      // -n, 0 = use the duration
  threads: number;      // -c
}

export interface Plan {
  useQPS: boolean;
  threads: number;
  /** Calls per thread; Infinity = bounded by the duration only. */
  perThread: number[];
  /** -t mode: schedule stretched so the last call lands at the end (fortio's i/(numCalls-1)). */
  stretch: boolean;
  perThreadQPS: number;
  /** No -n and no -t: until interrupted. */
  endless: boolean;
  /** fortio's "Starting at" line (without the newline). */
  startLine: (gomax: number, goDuration: string) => string;
}

export function plan(p: PlanInput): Plan {
  const useQPS = p.qps > 0;
  let threads = Math.max(1, p.threads);
  const useExactly = p.exactly > 0;
  const hasDuration = p.durationMs > 0; // fortio keeps -t (default 5s) even with -n
  const endless = !useExactly && !hasDuration;
  const q = fmtQ(p.qps);
  if (endless) {
    return {
      useQPS, endless, threads, perThread: new Array(threads).fill(Infinity), stretch: false, perThreadQPS: useQPS ? p.qps / threads : 0,
      startLine: (g) => (useQPS ? `Starting at ${q} qps with ${threads} thread(s) [gomax ${g}] until interrupted` : `Starting at max qps with ${threads} thread(s) [gomax ${g}] until interrupted`),
    };
  }
  if (useQPS) {
    // runQPSSetup
    let numCalls = useExactly ? p.exactly : Math.trunc(p.qps * (p.durationMs / 1000));
    if (numCalls < 2) { numCalls = 2; threads = 1; }
    if (2 * threads > numCalls) threads = Math.floor(numCalls / 2);
    const each = Math.floor(numCalls / threads);
    const total = each * threads;
    const leftOver = useExactly ? p.exactly - total : 0;
    const perThread = Array.from({ length: threads }, (_, i) => each + (i === 0 && leftOver > 0 ? leftOver : 0));
    return {
      useQPS, endless, threads, perThread, stretch: hasDuration, perThreadQPS: p.qps / threads,
      startLine: useExactly
        ? (g) => `Starting at ${q} qps with ${threads} thread(s) [gomax ${g}] : exactly ${p.exactly}, ${each} calls each (total ${total} + ${leftOver})`
        : (g, d) => `Starting at ${q} qps with ${threads} thread(s) [gomax ${g}] for ${d} : ${each} calls each (total ${total})`,
    };
  }
  // runMaxQPSSetup. (fortio keeps -c even above -n, and each of those threads still makes one
  // call; meshlet lowers the threads to -n instead, so exactly -n calls are made.)
  if (useExactly) {
    const n = p.exactly;
    if (threads > n) threads = n;
    const each = Math.floor(n / threads), extra = n % threads;
    return {
      useQPS, endless, threads, perThread: Array.from({ length: threads }, (_, i) => each + (i === 0 ? extra : 0)), stretch: false, perThreadQPS: 0,
      startLine: (g) => `Starting at max qps with ${threads} thread(s) [gomax ${g}] for exactly ${n} calls (${each} per thread + ${extra})`,
    };
  }
  return {
    useQPS, endless, threads, perThread: new Array(threads).fill(Infinity), stretch: false, perThreadQPS: 0,
    startLine: (g, d) => `Starting at max qps with ${threads} thread(s) [gomax ${g}] for ${d}`,
  };
}

import { goG } from './gofmt.ts';
const fmtQ = (q: number) => goG(q);

/** When call `i` (0-based) of a thread with `numCalls` calls is due, in ms after the thread's start. */
export function dueMs(pl: Plan, i: number, numCalls: number): number {
  if (!pl.useQPS) return 0;
  const k = pl.stretch && numCalls > 1 && Number.isFinite(numCalls) ? i + i / (numCalls - 1) : i;
  return (1000 * k) / pl.perThreadQPS;
}

/** -uniform: thread t starts t/threads of an interval late, so the threads stop firing in lock-step. */
export function uniformOffsetMs(pl: Plan, thread: number): number {
  return pl.useQPS ? (1000 * thread) / pl.threads / pl.perThreadQPS : 0;
}

/** fortio's getJitter: a random ±10 % of the sleep. */
export function jitterMs(sleepMs: number): number {
  return sleepMs * (Math.random() * 0.2 - 0.1);
}
