// The balancer bench (bench/lb.ts) cannot rot: a tiny plan runs end to end — five upstream
// processes with the faults, a proxy per balancer — and every row is measured. No speed
// assertions: only the shape, and ROUND_ROBIN's exact fifth to the faulty endpoint (a count).
import { describe, expect, it } from 'vitest';
import { benchLb, lbTable } from '../../bench/lb.ts';

describe('bench/lb.ts', () => {
  it('measures every scenario x balancer and prints the table', async () => {
    const plan = { seconds: 0.3, warmS: 0, qps: 100 };
    const rows = await benchLb(plan, () => {});
    expect(rows.map((r) => `${r.scenario}/${r.lb}`)).toEqual([
      'no fault/ROUND_ROBIN', 'no fault/LEAST_REQUEST', 'no fault/PEAK_EWMA',
      'one +200 ms/ROUND_ROBIN', 'one +200 ms/LEAST_REQUEST', 'one +200 ms/PEAK_EWMA',
      'one 5 % 503/ROUND_ROBIN', 'one 5 % 503/LEAST_REQUEST', 'one 5 % 503/PEAK_EWMA',
    ]);
    for (const r of rows) {
      expect(r.calls).toBeGreaterThan(0);
      expect(Number.isFinite(r.p99) && r.p99 > 0).toBe(true);
      expect(r.faultyShare).toBeGreaterThanOrEqual(0);
      expect(r.faultyShare).toBeLessThanOrEqual(1);
      expect(r.vsBaseline === undefined).toBe(r.scenario === 'no fault');
    }
    // Round robin sends exactly every fifth request to endpoint 0, fault or not.
    for (const r of rows.filter((x) => x.lb === 'ROUND_ROBIN')) expect(r.faultyShare).toBeCloseTo(0.2, 1);
    const table = lbTable(rows, plan);
    expect(table.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| scenario') && !l.startsWith('| ---'))).toHaveLength(9);
  }, 180_000);
});
