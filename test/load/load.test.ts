// `meshlet load` as a fortio drop-in, as a child process against real loopback servers: the
// report line for line at each log level (golden line shapes), exit codes, -t as a hard bound,
// -timeout, warmup, -t 0 until ^C.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { startUpstream, type Upstream } from '../helpers.ts';
import { mask, reportLines, run } from './lib.ts';
import { runLoad } from '../../bench/load/runner.ts';

let ok: Upstream, unavailable: Upstream, mixed: Upstream, slow: Upstream;
beforeAll(async () => {
  ok = await startUpstream((_q, r) => { r.end('ok'); });
  unavailable = await startUpstream((_q, r) => { r.statusCode = 503; r.end('no'); });
  let n = 0;
  mixed = await startUpstream((_q, r) => { if (++n % 4 === 0) r.statusCode = 503; r.end('m'); });
  slow = await startUpstream((_q, r) => { const t = setTimeout(() => r.end('slow'), 1000); r.on('close', () => clearTimeout(t)); });
});
afterAll(async () => { await ok.close(); await unavailable.close(); await mixed.close(); await slow.close(); });

function golden(): Map<string, string[]> {
  const text = readFileSync(new URL('./fortio-golden.txt', import.meta.url), 'utf8');
  const sections = new Map<string, string[]>();
  let cur: string[] | null = null;
  for (const l of text.split('\n')) {
    if (l.startsWith('## ')) { cur = []; sections.set(l.slice(3), cur); continue; }
    if (cur && l !== '') cur.push(l);
  }
  return sections;
}

describe('the text report, line for line (fortio-golden.txt)', () => {
  const g = golden();
  for (const level of ['Info', 'Warning', 'Error', 'Verbose']) {
    it(`-loglevel ${level}`, async () => {
      const r = await run(['load', '-loglevel', level, '-qps', '0', '-n', '20', '-c', '2', '-json', '-', `http://127.0.0.1:${mixed.port}/`]);
      expect(r.code).toBe(0);
      expect(mask(reportLines(r.err))).toEqual(g.get(level));
      expect(r.err).toContain('Code 200 : 15 (75.0 %)');
      expect(r.err).toContain('Code 503 : 5 (25.0 %)');
    });
  }
  it('-quiet is -loglevel Error: the compact report', async () => {
    const r = await run(['load', '-quiet', '-qps', '0', '-n', '20', '-c', '2', '-json', '-', `http://127.0.0.1:${mixed.port}/`]);
    expect(mask(reportLines(r.err))).toEqual(g.get('Error'));
  });
  it('qps mode: the sleep line (Sleep times, or the falling-behind WARNING), and every # target value <= max', async () => {
    const r = await run(['load', '-loglevel', 'Warning', '-qps', '40', '-t', '1s', '-c', '2', `http://127.0.0.1:${ok.port}/`]);
    expect(r.code).toBe(0);
    const lines = reportLines(r.err);
    expect(lines[1]).toBe('Starting at 40 qps with 2 thread(s) [gomax ' + /\[gomax (\d+)\]/.exec(lines[1])![1] + '] for 1s : 20 calls each (total 40)');
    // 40 calls unless a stall of this shared machine pushed a thread's last call past -t (then fortio's warning)
    const ended = /^Ended after \d+(\.\d+)?(ms|s) : (\d+) calls\. qps=[\d.]+$/.exec(lines.find((l) => l.startsWith('Ended')) ?? '');
    expect(ended, r.err).not.toBeNull();
    const calls = Number(ended![3]);
    expect(calls).toBeGreaterThanOrEqual(36);
    expect(calls).toBeLessThanOrEqual(40);
    if (calls < 40) expect(r.err).toMatch(/warning only did \d+ out of 20 calls before reaching 1s/);
    expect(lines[2]).toBe(ended![0]);
    // one sleep per call after each thread's first
    expect(lines[3]).toMatch(new RegExp(`^(Sleep times : count ${calls - 2} avg \\S+ \\+/- \\S+ min \\S+ max \\S+ sum \\S+|Aggregated Sleep Time : count ${calls - 2} .*)$`));
    const max = Number(new RegExp(`^Aggregated Function Time : count ${calls} avg \\S+ \\+/- \\S+ min \\S+ max (\\S+) sum`, 'm').exec(r.err)![1]);
    // the function-time section's # target lines (the sleep histogram has its own before it)
    const section = r.err.slice(r.err.indexOf('Aggregated Function Time'), r.err.indexOf('Error cases'));
    const targets = [...section.matchAll(/^# target [\d.]+% (\S+)$/gm)].map((m) => Number(m[1]));
    expect(targets).toHaveLength(5);
    for (const t of targets) expect(t).toBeLessThanOrEqual(max);
  });
});

describe('exit codes (fortio)', () => {
  it('unknown flag → 2 with Go\'s message; bad value → 2; no URL, flags after the URL, -p 100 → 1; gRPC extras (-ping, -grpc-compression) → 2', async () => {
    const u = `http://127.0.0.1:${ok.port}/`;
    const [bogus, badC, noUrl, after, p100, h2, grpc] = await Promise.all([
      run(['load', '-bogus', '1', u]),
      run(['load', '-c', 'x', u]),
      run(['load']),
      run(['load', u, '-c', '2', '-n', '4']),
      run(['load', '-p', '100', '-n', '1', u]),
      run(['load', '-ping', u]),
      run(['load', '-grpc-compression', u]),
    ]);
    expect([bogus.code, badC.code, noUrl.code, after.code, p100.code, h2.code, grpc.code]).toEqual([2, 2, 1, 1, 1, 2, 2]);
    expect(bogus.err).toMatch(/^flag provided but not defined: -bogus$/m);
    expect(badC.err).toContain('invalid value "x" for flag -c: parse error');
    expect(noUrl.err).toContain('Error: fortio load/curl needs a URL or destination');
    expect(after.err).toContain('flags go before the url');
    expect(after.err).not.toContain('All done'); // nothing ran
    expect(h2.err).toContain('-ping: not supported: meshlet load -grpc does grpc.health.v1 health checks only');
    expect(grpc.err).toContain('-grpc-compression: not supported');
  });
  it('--help lists every flag, the differences marked', async () => {
    const r = await run(['load', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/-h2\n\s+\tAttempt to use HTTP\/2\.0.*h2c with prior knowledge/);
    expect(r.out).toMatch(/-ping\n\s+\t.*not supported: meshlet load -grpc does grpc.health.v1 health checks only/);
    for (const f of ['-abort-on int', '-access-log-file string', '-t duration', '-qps float', '-keepalive\n']) expect(r.out).toContain(f);
  });
  it('any run exits 0 whatever the codes: all 503, connection refused; -qps -1 means max', async () => {
    const dead = await startUpstream(() => {});
    await dead.close();
    const [a, b, c] = await Promise.all([
      run(['load', '-qps', '0', '-n', '10', `http://127.0.0.1:${unavailable.port}/`]),
      run(['load', '-qps', '0', '-n', '5', '-timeout', '1s', `http://127.0.0.1:${dead.port}/`]),
      run(['load', '-qps', '-1', '-n', '6', '-c', '2', `http://127.0.0.1:${ok.port}/`]),
    ]);
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    expect(a.err).toContain('Code 503 : 10 (100.0 %)');
    expect(b.err).toContain('Code  -1 : 5 (100.0 %)');
    expect(b.err).toContain('Sockets used: 5 (for perfect keepalive, would be 4)'); // attempts count, as fortio's socketCount
    expect(b.err).toMatch(/^\{.*"level":"err".*"msg":"Unable to connect","dest":"127\.0\.0\.1:\d+","err":".*ECONNREFUSED/m);
    expect(c.err).toContain('Starting at max qps with 2 thread(s)');
    expect(c.err).toContain('Code 200 : 6 (100.0 %)');
  });
});

describe('warmup (fortio httprunner: one call per thread, abort at once)', () => {
  it('-t mode, 503 warmup: "Aborting because of error 503 …" and exit 1 at once; -allow-initial-errors runs', async () => {
    const u = `http://127.0.0.1:${unavailable.port}/`;
    const t0 = performance.now();
    const r = await runLoad({ url: u, connections: 3, qps: 0, calls: 0, durationMs: 5000, headers: [], payload: null, timeoutMs: 1000, allowInitialErrors: false }).catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
    expect((r as Error).message).toMatch(/^error 503 for http:\/\/127\.0\.0\.1:\d+\/ \(\d+ bytes\)$/);
    expect(performance.now() - t0).toBeLessThan(1000); // no retries (fortio: 0.03 s)
    const [cli, allow] = await Promise.all([
      run(['load', '-t', '1s', u]),
      run(['load', '-t', '300ms', '-qps', '0', '-c', '2', '-allow-initial-errors', u]),
    ]);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/Aborting because of error 503 for http:\/\/127\.0\.0\.1:\d+\/ \(\d+ bytes\)/);
    expect(allow.code).toBe(0);
    expect(allow.err).toMatch(/All done \d+ calls \(plus 2 warmup\)/);
  });
  it('418 counts as OK for the warmup (codeIsOK)', async () => {
    const teapot = await startUpstream((_q, r) => { r.statusCode = 418; r.end('tea'); });
    try {
      const r = await run(['load', '-t', '200ms', '-qps', '0', '-c', '1', `http://127.0.0.1:${teapot.port}/`]);
      expect(r.code).toBe(0);
      expect(r.err).toMatch(/Code 418 : \d+ \(100\.0 %\)/);
      expect(r.err).toContain('Error cases : no data');
    } finally { await teapot.close(); }
  });
});

describe('-t is a hard bound, -timeout fires at its value', () => {
  it('-t 2s at -qps 200000 ends within 2.5 s, with per-thread "only did X out of Y" warnings', async () => {
    const t0 = performance.now();
    const warnings: string[] = [];
    const r = await runLoad({ url: `http://127.0.0.1:${ok.port}/`, connections: 4, qps: 200_000, calls: 0, durationMs: 2000, headers: [], payload: null, timeoutMs: 3000, allowInitialErrors: false, log: (_l, m) => warnings.push(m) });
    const wall = performance.now() - t0;
    expect(wall).toBeLessThan(2500);
    expect(r.actualDurationMs).toBeGreaterThanOrEqual(2000);
    expect(r.calls).toBeLessThan(400_000);
    expect(warnings.filter((w) => /^T00\d warning only did \d+ out of 100000 calls before reaching 2s$/.test(w))).toHaveLength(4);
    const cli = await run(['load', '-qps', '200000', '-t', '2s', '-json', '-', `http://127.0.0.1:${ok.port}/`]);
    const j = JSON.parse(cli.out);
    expect(j.ActualDuration).toBeLessThan(2.5e9);
    expect(j.Exactly).toBe(0); // -t mode: fortio's 0, not the call count
    expect(j.RequestedDuration).toBe('2s');
    expect(cli.err).toMatch(/WARNING [\d.]+% of sleep were falling behind/);
    expect(cli.err).toMatch(/^meshlet: \d+ calls started behind schedule .*measured from the intended start/m);
  });
  it('-timeout 200ms against a 1 s upstream: Code -1 after 0.19–0.3 s', async () => {
    const r = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-timeout', '200ms', '-json', '-', `http://127.0.0.1:${slow.port}/`]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.RetCodes).toEqual({ '-1': 2 });
    expect(j.DurationHistogram.Min).toBeGreaterThanOrEqual(0.19);
    expect(j.DurationHistogram.Max).toBeLessThanOrEqual(0.3);
    expect(j.HTTPReqTimeOut).toBe(200e6);
    expect(r.err).toContain('Code  -1 : 2 (100.0 %)');
  });
  it('-t 0 runs until ^C, then prints the report', async () => {
    const r = await run(['load', '-t', '0', '-qps', '50', '-c', '1', '-loglevel', 'Warning', `http://127.0.0.1:${ok.port}/`], {
      sigintAfter: (err) => err.includes('Starting at'), killAfterMs: 20_000,
    });
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/running at 50 queries per second, \d+->\d+ procs, until interrupted: http/);
    expect(r.err).toContain('Starting at 50 qps with 1 thread(s)');
    expect(r.err).toContain('until interrupted');
    expect(r.err).toMatch(/All done \d+ calls \(plus 1 warmup\)/);
  });
});

describe('coordinated-omission correction (the one deliberate difference from fortio)', () => {
  it('open loop measures late calls from their intended start: a 200 ms stall shows in p90/p99; coCorrection=false is fortio\'s', async () => {
    let n = 0;
    const stall = await startUpstream((_q, r) => { n++; if (n === 50) setTimeout(() => r.end('late'), 200); else r.end('ok'); });
    try {
      const base = { url: `http://127.0.0.1:${stall.port}/`, connections: 1, headers: [], payload: null, timeoutMs: 3000, allowInitialErrors: false, qps: 200, calls: 200, durationMs: 0 };
      const p = (r: Awaited<ReturnType<typeof runLoad>>, q: number) => r.duration.export([q]).Percentiles![0].Value;
      n = 0;
      const corrected = await runLoad(base);
      n = 0;
      const asFortio = await runLoad({ ...base, coCorrection: false });
      expect(corrected.behind).toBeGreaterThan(20); // the calls due during the stall went out late
      expect(p(corrected, 90)).toBeGreaterThan(0.05);
      expect(p(corrected, 99)).toBeGreaterThan(0.15);
      expect(p(asFortio, 90)).toBeLessThan(0.05); // fortio: one slow call, the rest look fast
    } finally { await stall.close(); }
  });
});
