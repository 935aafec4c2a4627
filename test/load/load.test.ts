// `meshlet load` and `meshlet curl` against real loopback servers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { startUpstream, type Upstream } from '../helpers.ts';
import { WarmupError, goDuration, runLoad, toFortioJson } from '../../bench/load/runner.ts';

const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;
let ok: Upstream, unavailable: Upstream, echo: Upstream;
const seen: Array<{ method: string; headers: Record<string, unknown>; body: string }> = [];
beforeAll(async () => {
  ok = await startUpstream((_q, r) => { r.setHeader('X-Custom-Case', 'yes'); r.end('ok'); });
  unavailable = await startUpstream((_q, r) => { r.statusCode = 503; r.end('no'); });
  echo = await startUpstream((q, r) => {
    let body = '';
    q.on('data', (c) => { body += c; });
    q.on('end', () => { seen.push({ method: q.method!, headers: q.headers, body }); r.end(body); });
  });
});
afterAll(async () => { await ok.close(); await unavailable.close(); await echo.close(); });

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
    expect(r.err).toMatch(/^Fortio-compatible meshlet load running at max queries per second, \d+->\d+ procs, for 30 calls: http/);
    expect(r.err).toContain('# range, mid point, percentile, count');
    expect(r.out).toBe('');
  });

  it('sends -H headers and a -payload POST body with -content-type; --double-dash spellings work', async () => {
    seen.length = 0;
    const r = await run(['load', '--c', '1', '-qps', '0', '-n', '2', '-H', 'Host: upstream.bench', '-H', 'x-a: 1', '-payload', 'hello', '-content-type', 'text/x-test', `http://127.0.0.1:${echo.port}/`]);
    expect(r.code).toBe(0);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatchObject({ method: 'POST', body: 'hello', headers: { host: 'upstream.bench', 'x-a': '1', 'content-type': 'text/x-test' } });
    seen.length = 0;
    await run(['load', '-c', '1', '-qps', '0', '-n', '1', '-payload-size', '300', `http://127.0.0.1:${echo.port}/`]);
    expect(seen[0].body).toHaveLength(300);
  });

  it('duration mode makes one warmup call per connection; a non-2xx warmup aborts unless -allow-initial-errors', async () => {
    const r = await run(['load', '-c', '2', '-qps', '0', '-t', '200ms', '-allow-initial-errors', `http://127.0.0.1:${unavailable.port}/`]);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/All done \d+ calls \(plus 2 warmup\)/);
    expect(r.err).toMatch(/Code 503 : \d+ \(100\.0 %\)/);
    // Without the flag fortio retries the warmup (up to 50 times, ~5 s) then aborts; 2 tries here.
    const base = { url: `http://127.0.0.1:${unavailable.port}/`, connections: 2, qps: 0, calls: 0, durationMs: 200, headers: [], payload: null, timeoutMs: 1000, allowInitialErrors: false, warmupTries: 2 };
    await expect(runLoad(base)).rejects.toThrow(WarmupError);
    await expect(runLoad(base)).rejects.toThrow(/after 2 tries, error 503 for http:\/\/127\.0\.0\.1:\d+\/: "no"/);
    const good = await runLoad({ ...base, url: `http://127.0.0.1:${ok.port}/` });
    expect(good.warmup).toBe(2);
    expect(good.retCodes.get(200)).toBe(good.calls);
  });

  it('socket errors count as code -1', async () => {
    const dead = await startUpstream(() => {});
    const port = dead.port;
    await dead.close();
    const r = await run(['load', '-c', '1', '-qps', '0', '-n', '3', '-timeout', '1s', '-json', '-', `http://127.0.0.1:${port}/`]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).RetCodes).toEqual({ '-1': 3 });
    expect(r.err).toContain('Code  -1 : 3 (100.0 %)');
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
    expect(j.RequestedDuration).toBe('3s');
    expect(j.RetCodes['200']).toBe(j.DurationHistogram.Count);
    expect(j.ActualDuration).toBeGreaterThan(2.9e9); // nanoseconds, like fortio
    expect(j.SocketCount).toBe(4);
    expect(r.err).toContain('(plus 4 warmup)');
  });

  it('open loop measures from the intended start: a one-time 200 ms stall shows in p99, unlike a closed loop', async () => {
    let n = 0;
    const stall = await startUpstream((_q, r) => { n++; if (n === 50) setTimeout(() => r.end('late'), 200); else r.end('ok'); });
    try {
      const base = { url: `http://127.0.0.1:${stall.port}/`, connections: 1, headers: [], payload: null, timeoutMs: 3000, allowInitialErrors: false };
      const openRaw = await runLoad({ ...base, qps: 200, calls: 200, durationMs: 0 });
      const open = toFortioJson(openRaw, [50, 90, 99]);
      expect(openRaw.behind).toBeGreaterThan(20); // the calls due during the stall went out late
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

  it('prints fortio\'s "could not keep up" warning with the achieved rate when the target is too slow for -qps', async () => {
    const slow = await startUpstream((_q, r) => { setTimeout(() => r.end('slow'), 10); });
    try {
      const r = await run(['load', '-c', '1', '-qps', '1000', '-n', '20', `http://127.0.0.1:${slow.port}/`]);
      expect(r.code).toBe(0);
      expect(r.err).toMatch(/Warning: could not keep up with the requested 1000 qps \(achieved [0-9.]+ qps\)/);
      expect(r.err).toContain('Code 200 : 20 (100.0 %)');
    } finally {
      await slow.close();
    }
  });

  it('bad flags exit 2 with a message', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['-c', 'x'], /-c/],
      [['-loglevel', 'Loud'], /-loglevel 'Loud'/],
      [['-t', '5 parsecs'], /-t: invalid duration/],
      [['-H', 'novalue'], /-H 'novalue'/],
      [['-nope', '1'], /unknown flag '-nope'/],
      [[], /exactly one URL/],
      [['https://127.0.0.1/'], /is not an http:\/\/ URL/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(['load', ...args, ...(args.length && !args[0].includes('://') ? [`http://127.0.0.1:${ok.port}/`] : [])]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(msg);
    }
  });
});

describe('fortio formats', () => {
  it('durations print as Go does (RequestedDuration, banner)', () => {
    expect([500, 5000, 1500, 60_000, 90_000, 3_600_000].map(goDuration)).toEqual(['500ms', '5s', '1.5s', '1m0s', '1m30s', '1h0m0s']);
  });
});

describe('meshlet curl', () => {
  it('200: headers on stderr, body on stdout, exit 0', async () => {
    const r = await run(['curl', `http://127.0.0.1:${ok.port}/`]);
    expect(r.code).toBe(0);
    expect(r.out).toBe('ok');
    expect(r.err).toMatch(/^HTTP\/1\.1 200 OK\n/);
    expect(r.err).toContain('X-Custom-Case: yes'); // as the server spelled it
    expect(r.err).not.toContain('ok');
  });
  it('503: exit 1', async () => {
    const r = await run(['curl', '-H', 'x-a: 1', `http://127.0.0.1:${unavailable.port}/`]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('no');
    expect(r.err).toMatch(/^HTTP\/1\.1 503 Service Unavailable\n/);
  });
  it('-X, -payload and -H reach the server; a connection error exits 1', async () => {
    seen.length = 0;
    const r = await run(['curl', '-X', 'PUT', '-payload', 'abc', '-H', 'Host: upstream.bench', `http://127.0.0.1:${echo.port}/p`]);
    expect(r.code).toBe(0);
    expect(r.out).toBe('abc');
    expect(seen[0]).toMatchObject({ method: 'PUT', body: 'abc', headers: { host: 'upstream.bench' } });
    const dead = await startUpstream(() => {});
    await dead.close();
    const e = await run(['curl', '-timeout', '1s', `http://127.0.0.1:${dead.port}/`]);
    expect(e.code).toBe(1);
    expect(e.out).toBe('');
    expect(e.err).toMatch(/^meshlet curl: /);
  });
});
