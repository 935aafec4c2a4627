// `meshlet load` and `meshlet curl` against real loopback servers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { startUpstream, type Upstream } from '../helpers.ts';
import { runLoad, toFortioJson } from '../../bench/load/runner.ts';

const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;
let ok: Upstream, unavailable: Upstream;
beforeAll(async () => {
  ok = await startUpstream((_q, r) => r.end('ok'));
  unavailable = await startUpstream((_q, r) => { r.statusCode = 503; r.end('no'); });
});
afterAll(async () => { await ok.close(); await unavailable.close(); });

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
    c.on('exit', (code) => { clearTimeout(t); resolve({ code, out, err }); });
  });
}

describe('meshlet load', () => {
  it('-c 3 -qps 0 -n 30 makes exactly 30 calls and prints fortio\'s lines', async () => {
    const r = await run(['load', '-c', '3', '-qps', '0', '-n', '30', `http://127.0.0.1:${ok.port}/`]);
    expect(r.code).toBe(0);
    expect(r.err).toContain('Code 200 : 30 (100.0 %)');
    expect(r.err).toMatch(/# target 50% [0-9.e-]+/);
    expect(r.err).toMatch(/# target 99\.9% /);
    expect(r.err).toContain('Sockets used: 3 (for perfect keepalive, would be 3)');
    expect(r.err).toMatch(/All done 30 calls \(plus 0 warmup\) [0-9.]+ ms avg, [0-9.]+ qps/);
  });

  it('-json - prints fortio-shaped JSON whose counts match', async () => {
    const r = await run(['load', '-c', '2', '-qps', '0', '-n', '20', '-json', '-', `http://127.0.0.1:${unavailable.port}/x`]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.RetCodes).toEqual({ 503: 20 });
    expect(j.DurationHistogram.Count).toBe(20);
    expect(j.DurationHistogram.Data.reduce((s: number, d: { Count: number }) => s + d.Count, 0)).toBe(20);
    expect(j.DurationHistogram.Data.at(-1).Percent).toBe(100);
    expect(j.DurationHistogram.Percentiles.map((p: { Percentile: number }) => p.Percentile)).toEqual([50, 75, 90, 99, 99.9]);
    expect(j.NumThreads).toBe(2);
    expect(j.RequestedQPS).toBe('max');
    expect(r.err).toContain('Code 503 : 20 (100.0 %)');
  });

  it('-qps 200 -t 3s lands within 2 % of 600 calls', async () => {
    const r = await run(['load', '-c', '4', '-qps', '200', '-t', '3s', '-json', '-', `http://127.0.0.1:${ok.port}/`]);
    const j = JSON.parse(r.out);
    expect(Math.abs(j.DurationHistogram.Count - 600)).toBeLessThanOrEqual(12);
    expect(j.RequestedQPS).toBe('200');
  });

  it('open loop measures from the intended start: a one-time 200 ms stall shows in p99, unlike a closed loop', async () => {
    let n = 0;
    const stall = await startUpstream((_q, r) => { n++; if (n === 50) setTimeout(() => r.end('late'), 200); else r.end('ok'); });
    try {
      const base = { url: `http://127.0.0.1:${stall.port}/`, connections: 1, headers: [], payload: null, timeoutMs: 3000, allowInitialErrors: false };
      const open = toFortioJson(await runLoad({ ...base, qps: 200, calls: 200, durationMs: 0 }), [50, 90, 99]);
      n = 0;
      const closed = toFortioJson(await runLoad({ ...base, qps: 0, calls: 200, durationMs: 0 }), [50, 90, 99]);
      const p = (j: typeof open, q: number) => j.DurationHistogram.Percentiles.find((x) => x.Percentile === q)!.Value;
      // Open loop: the ~40 calls scheduled during the stall all waited; closed loop: one slow call.
      expect(p(open, 90)).toBeGreaterThan(0.05);
      expect(p(closed, 90)).toBeLessThan(0.05);
      expect(p(open, 99)).toBeGreaterThan(0.15);
    } finally {
      await stall.close();
    }
  });

  it('bad flags exit 2 with a message', async () => {
    const r = await run(['load', '-c', 'x', `http://127.0.0.1:${ok.port}/`]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('-c');
  });
});

describe('meshlet curl', () => {
  it('200: headers on stderr, body on stdout, exit 0', async () => {
    const r = await run(['curl', `http://127.0.0.1:${ok.port}/`]);
    expect(r.code).toBe(0);
    expect(r.out).toBe('ok');
    expect(r.err).toMatch(/^HTTP\/1\.1 200\n/);
  });
  it('503: exit 1', async () => {
    const r = await run(['curl', '-H', 'x-a: 1', `http://127.0.0.1:${unavailable.port}/`]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('no');
  });
});
