// The timing loop of the micro-benchmarks: calls fn in doubling batches until `ms` have passed,
// once to warm up and once to measure, and returns nanoseconds per call (wall clock).
export function nsPerOp(fn: () => unknown, ms = 400): number {
  const run = (budgetMs: number) => {
    let n = 0;
    let batch = 1;
    const t0 = process.hrtime.bigint();
    let el = 0;
    while (el < budgetMs * 1e6) {
      for (let i = 0; i < batch; i++) fn();
      n += batch;
      el = Number(process.hrtime.bigint() - t0);
      if (batch < 65536) batch *= 2;
    }
    return el / n;
  };
  run(ms);
  return run(ms);
}
