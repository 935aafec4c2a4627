// bench/ab.ts, the paired A/B: its statistics on known inputs, its refusals, and one smoke run end
// to end (two real sidecar processes per pair). No speed assertions: CI machines are noisy.
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAbArgs, signTestP, summarize, type AbPair, type AbRun } from '../../bench/ab.ts';
import { runNode } from '../helpers.ts';

const AB = new URL('../../bench/ab.ts', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');

const run = (cpu: number): AbRun => ({ cpuUsPerReq: cpu, rps: 1000, privateMb: 30, errors: 0, tool: 'x' });
const pair = (i: number, a: number, b: number): AbPair => ({ pair: i, order: i % 2 ? 'AB' : 'BA', a: run(a), b: run(b) });

describe('bench/ab statistics', () => {
  it('sign test: exact binomial tails, two-sided', () => {
    expect(signTestP(8, 8)).toBeCloseTo(2 / 256, 10);
    expect(signTestP(0, 8)).toBeCloseTo(2 / 256, 10);
    expect(signTestP(7, 8)).toBeCloseTo((2 * 9) / 256, 10);
    expect(signTestP(4, 8)).toBe(1);
    expect(signTestP(10, 10)).toBeCloseTo(2 / 1024, 10);
    expect(signTestP(0, 0)).toBe(1);
  });

  it('summary: median of B/A, means, how often B was cheaper', () => {
    const s = summarize([pair(1, 100, 90), pair(2, 100, 95), pair(3, 100, 110), pair(4, 50, 40)]);
    expect(s.pairs).toBe(4);
    expect(s.medianRatio).toBeCloseTo((0.9 + 0.95) / 2, 10); // ratios 0.8, 0.9, 0.95, 1.1
    expect(s.meanA).toBeCloseTo(87.5, 10);
    expect(s.meanB).toBeCloseTo(83.75, 10);
    expect(s.bCheaper).toBe(3);
    expect(s.p).toBeCloseTo(signTestP(3, 4), 10);
  });
});

describe('bench/ab options', () => {
  it('one build with two node flag sets compares this checkout with itself', () => {
    const o = parseAbArgs(['--b-node', '--max-semi-space-size=4', '--pairs', '6'], {});
    expect(o.a.root).toBe(ROOT);
    expect(o.b.root).toBe(ROOT);
    expect(o.a.nodeFlags).toEqual([]);
    expect(o.b.nodeFlags).toEqual(['--max-semi-space-size=4']);
    expect(o.pairs).toBe(6);
    expect(o.rate).toBe(0);
  });

  it('A defaults to $MESHLET_BEFORE, B to this checkout', () => {
    // Only bin/meshlet.js marks a checkout for the options; nothing is started here.
    const before = mkdtempSync(join(tmpdir(), 'meshlet-ab-before-'));
    try {
      mkdirSync(join(before, 'bin'));
      writeFileSync(join(before, 'bin/meshlet.js'), '');
      const o = parseAbArgs([], { MESHLET_BEFORE: before });
      expect(o.a.root).toBe(before);
      expect(o.b.root).toBe(ROOT);
      expect(o.a.label).toBe(before);
    } finally {
      rmSync(before, { recursive: true, force: true });
    }
    // The same build with the same flags would compare nothing:
    expect(() => parseAbArgs(['--a', ROOT], {})).toThrow(/nothing to compare/);
    expect(() => parseAbArgs([], { MESHLET_BEFORE: ROOT })).toThrow(/nothing to compare/);
  });

  it('refuses what it cannot run, naming the problem', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-ab-'));
    try {
      expect(() => parseAbArgs([], {})).toThrow(/--a <checkout> or set MESHLET_BEFORE/);
      expect(() => parseAbArgs(['--a', dir], {})).toThrow(/is not a meshlet checkout/);
      expect(() => parseAbArgs(['--fast'], {})).toThrow(/unknown option --fast/);
      expect(() => parseAbArgs(['--b-node', '--x', '--pairs', '0'], {})).toThrow(/--pairs must be a number ≥ 1/);
      expect(() => parseAbArgs(['--b-node', '--x', '--config', 'huge'], {})).toThrow(/--config is realistic or minimal/);
      expect(() => parseAbArgs(['--pairs'], {})).toThrow(/--pairs needs a value/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bench/ab --smoke', () => {
  it('runs two pairs of real sidecars in alternating order and prints the table and the summary', async () => {
    const r = await runNode([AB, '--smoke', '--b-node', '--max-semi-space-size=2'],
      { env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'MESHLET_BEFORE')), killAfterMs: 80_000 });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('B: ');
    expect(r.out).toContain('with node --max-semi-space-size=2');
    const rows = r.out.split('\n').filter((l) => /^\| \d+ \|/.test(l));
    expect(rows.map((l) => l.split('|')[2].trim())).toEqual(['AB', 'BA']);
    for (const row of rows) {
      const cells = row.split('|').map((c) => c.trim());
      expect(Number(cells[3]), row).toBeGreaterThan(0); // A CPU µs/req
      expect(Number(cells[4]), row).toBeGreaterThan(0); // B CPU µs/req
      expect(Number(cells[6]), row).toBeGreaterThan(0); // A rps
      expect(cells[10], row).toBe('0'); // errors
    }
    expect(r.out).toMatch(/B\/A median \d+\.\d{3} \(mean A [\d.]+, mean B [\d.]+ µs\/req\); B cheaper in [0-2] of 2 pairs, sign test p = [\d.]+/);
  }, 90_000);
});
