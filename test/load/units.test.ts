// The pure parts of `meshlet load` against fortio's and Go's documented behaviour: Go's flag
// rules, Go's number and duration printing, fortio's pacing arithmetic, histogram and ID.
import { describe, expect, it } from 'vitest';
import { GoFlagError, GoFlagHelp, goDurationNs, parseGoDuration, parseGoFlags, parseGoInt, type GoFlag } from '../../bench/load/goflag.ts';
import { goG } from '../../bench/load/gofmt.ts';
import { dueMs, plan, uniformOffsetMs } from '../../bench/load/pacing.ts';
import { BUCKET_VALUES, Histogram } from '../../bench/load/histogram.ts';
import { fortioId } from '../../bench/load/json.ts';
import { FORTIO_FLAGS } from '../../bench/load/fortio-flags.ts';
import { readFileSync } from 'node:fs';

const F: GoFlag[] = [
  { name: 'c', kind: 'int', def: 4, help: '' },
  { name: 'keepalive', kind: 'bool', def: true, help: '' },
  { name: 'k', kind: 'bool', help: '' },
  { name: 't', kind: 'duration', def: 5000, help: '' },
  { name: 'H', kind: 'list', help: '' },
  { name: 'qps', kind: 'float', def: 8, help: '' },
];

describe("Go's flag package rules", () => {
  it('-flag, --flag, -flag=value and -flag value are the same; repeatable lists keep order', () => {
    const p = parseGoFlags(['--c', '3', '-qps=2.5', '-H', 'a: 1', '--H=b: 2', '-t', '1m30s', 'http://x/'], F);
    expect(p.values.get('c')).toBe(3);
    expect(p.values.get('qps')).toBe(2.5);
    expect(p.values.get('H')).toEqual(['a: 1', 'b: 2']);
    expect(p.values.get('t')).toBe(90_000);
    expect(p.args).toEqual(['http://x/']);
    expect([...p.set].sort()).toEqual(['H', 'c', 'qps', 't']);
  });
  it('bools take a value only with =: "-keepalive false" is -keepalive then the argument "false"', () => {
    expect(parseGoFlags(['-keepalive=false', 'u'], F).values.get('keepalive')).toBe(false);
    const p = parseGoFlags(['-keepalive', 'false', 'u'], F);
    expect(p.values.get('keepalive')).toBe(true);
    expect(p.args).toEqual(['false', 'u']);
    expect(parseGoFlags(['-k=T'], F).values.get('k')).toBe(true);
    expect(() => parseGoFlags(['-k=yes'], F)).toThrow('invalid boolean value "yes" for -k: parse error');
  });
  it('parsing stops at the first non-flag argument, "-" or after "--"', () => {
    expect(parseGoFlags(['u', '-c', '2'], F).args).toEqual(['u', '-c', '2']);
    expect(parseGoFlags(['-c', '2', '--', '-k'], F).args).toEqual(['-k']);
    expect(parseGoFlags(['-', '-k'], F).args).toEqual(['-', '-k']);
  });
  it("errors carry Go's messages", () => {
    expect(() => parseGoFlags(['-bogus', '1'], F)).toThrow(new GoFlagError('flag provided but not defined: -bogus'));
    expect(() => parseGoFlags(['-c'], F)).toThrow('flag needs an argument: -c');
    expect(() => parseGoFlags(['-c', 'x'], F)).toThrow('invalid value "x" for flag -c: parse error');
    expect(() => parseGoFlags(['-t', '5'], F)).toThrow('invalid value "5" for flag -t: parse error');
    expect(() => parseGoFlags(['---c=1'], F)).toThrow('bad flag syntax: ---c=1');
    expect(() => parseGoFlags(['-h'], F)).toThrow(GoFlagHelp);
  });
  it('ints as strconv.ParseInt(s, 0, 64); durations as time.ParseDuration', () => {
    expect(['10', '0x10', '010', '0b11', '-5', '1_000'].map(parseGoInt)).toEqual([10, 16, 8, 3, -5, 1000]);
    expect(parseGoInt('1.5')).toBeUndefined();
    expect(['0', '200ms', '1.5s', '2h45m', '-1s', '1us', '.5s'].map(parseGoDuration)).toEqual([0, 200, 1500, 9_900_000, -1000, 0.001, 500]);
    expect(parseGoDuration('5')).toBeUndefined();
    expect(parseGoDuration('5 parsecs')).toBeUndefined();
  });
});

describe("Go's printing", () => {
  it('%g and %.Ng as strconv formats them', () => {
    expect([0.5, 1234567, 100000, 1e6, 0.0001, 0.00001, 123.456, 8, 0].map((x) => goG(x))).toEqual(['0.5', '1.234567e+06', '100000', '1e+06', '0.0001', '1e-05', '123.456', '8', '0']);
    expect([1234567, 0.001234567891, 0.5, 1e6, 99.9].map((x) => goG(x, 6))).toEqual(['1.23457e+06', '0.00123457', '0.5', '1e+06', '99.9']);
    expect(goG(NaN, 8)).toBe('NaN');
  });
  it('time.Duration.String()', () => {
    expect([0, 1500, 244_580_605, 5e9, 60e9, 3723.5e9, 999, 2_001_406_301].map(goDurationNs)).toEqual(['0s', '1.5µs', '244.580605ms', '5s', '1m0s', '1h2m3.5s', '999ns', '2.001406301s']);
  });
});

describe("fortio's pacing", () => {
  it('-qps 100 -t 2s -c 3: 66 calls each (total 198), the schedule stretched to the end of -t', () => {
    const p = plan({ qps: 100, durationMs: 2000, exactly: 0, threads: 3 });
    expect(p.perThread).toEqual([66, 66, 66]);
    expect(p.startLine(2, '2s')).toBe('Starting at 100 qps with 3 thread(s) [gomax 2] for 2s : 66 calls each (total 198)');
    expect(dueMs(p, 0, 66)).toBe(0);
    // (i + i/(n-1)) / perThreadQPS: the last call at n / perThreadQPS = 66 / 33.3 = 1.98 s, the end of -t
    expect(dueMs(p, 65, 66)).toBeCloseTo(1980, 6);
    expect(dueMs(p, 1, 66)).toBeCloseTo((1 + 1 / 65) * 30, 6);
  });
  it('under 2 calls: 2 calls on 1 thread; 2×threads > calls lowers the threads', () => {
    expect(plan({ qps: 1, durationMs: 1000, exactly: 0, threads: 8 })).toMatchObject({ threads: 1, perThread: [2, 2].slice(0, 1) });
    expect(plan({ qps: 10, durationMs: 1000, exactly: 0, threads: 8 }).threads).toBe(5);
  });
  it('-n: n/threads each, the whole remainder to thread 0; -n without qps names "max"', () => {
    const p = plan({ qps: 10, durationMs: 0, exactly: 30, threads: 4 });
    expect(p.perThread).toEqual([9, 7, 7, 7]);
    expect(p.startLine(2, '')).toBe('Starting at 10 qps with 4 thread(s) [gomax 2] : exactly 30, 7 calls each (total 28 + 2)');
    expect(dueMs(p, 3, 9)).toBeCloseTo(1200, 6); // i / perThreadQPS, no stretch
    const m = plan({ qps: 0, durationMs: 0, exactly: 30, threads: 4 });
    expect(m.startLine(2, '')).toBe('Starting at max qps with 4 thread(s) [gomax 2] for exactly 30 calls (7 per thread + 2)');
    expect(plan({ qps: 0, durationMs: 5000, exactly: 0, threads: 4 }).startLine(2, '5s')).toBe('Starting at max qps with 4 thread(s) [gomax 2] for 5s');
    expect(plan({ qps: 0, durationMs: 0, exactly: 0, threads: 4 }).startLine(2, '0s')).toBe('Starting at max qps with 4 thread(s) [gomax 2] until interrupted');
  });
  it('-uniform spreads the thread starts over one per-thread interval', () => {
    const p = plan({ qps: 40, durationMs: 1000, exactly: 0, threads: 4 });
    expect([0, 1, 2, 3].map((t) => uniformOffsetMs(p, t))).toEqual([0, 25, 50, 75]);
  });
});

describe("fortio's histogram", () => {
  it('buckets in ms at -r 0.001; first starts at Min, last ends at Max; percentiles interpolate and never exceed Max', () => {
    const h = new Histogram(0, 0.001);
    for (const v of [0.0005, 0.0015, 0.0015, 0.013, 0.2, 0.25]) h.record(v);
    const d = h.export([50, 90, 99, 99.9]);
    expect(d.Count).toBe(6);
    expect(d.Data!.map((b) => [b.Start, b.End, b.Count])).toEqual([[0.0005, 0.001, 1], [0.001, 0.002, 2], [0.012, 0.014, 1], [0.18, 0.2, 1], [0.2, 0.25, 1]]);
    expect(d.Data!.at(-1)!.Percent).toBe(100);
    expect(d.Percentiles![0].Value).toBe(0.002); // 50 % is the top of the second bucket
    for (const p of d.Percentiles!) expect(p.Value).toBeLessThanOrEqual(d.Max);
    expect(BUCKET_VALUES.slice(0, 17)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20]);
  });
  it('beyond the last value goes to the overflow bucket, ending at Max; -r scales the buckets', () => {
    const h = new Histogram(0, 0.001);
    h.record(150); h.record(0.001);
    expect(h.export().Data!.map((b) => [b.Start, b.End])).toEqual([[0.001, 0.001], [100, 150]]);
    const fine = new Histogram(0, 0.0001);
    fine.record(0.00025);
    fine.record(0.00035);
    const ends = fine.export().Data!.map((b) => b.End);
    expect(ends[0]).toBeCloseTo(0.0003, 12); // bucket 3 × 0.0001 (float arithmetic, as Go's)
    expect(ends[1]).toBe(0.00035);
  });
});

describe("fortio's result ID and flag table", () => {
  it('YYYY-MM-DD-HHmmSS[_runid]_labels with runs of other characters as one _', () => {
    const d = new Date(2026, 11, 2, 3, 4, 5);
    expect(fortioId(d, 0, '')).toBe('2026-12-02-030405');
    expect(fortioId(d, 42, 'ratings:9080/ratings/0 , host-1')).toBe('2026-12-02-030405_42_ratings_9080_ratings_0_host_1');
  });
  it('every fortio load flag of the spec table is known, with its default', () => {
    const names = new Set(FORTIO_FLAGS.map((f) => f.name));
    for (const n of ['H', 'L', 'X', 'a', 'abort-on', 'access-log-file', 'access-log-format', 'allow-initial-errors', 'c', 'cacert', 'calc-qps', 'cert', 'compression',
      'connection-reuse', 'content-type', 'curl', 'curl-stdout-headers', 'dns-method', 'gomaxprocs', 'h2', 'halfclose', 'http1.0', 'httpbufferkb', 'httpccch',
      'https-insecure', 'jitter', 'json', 'k', 'keepalive', 'key', 'labels', 'log-errors', 'logger-file-line', 'logger-force-color', 'logger-goroutine', 'logger-json',
      'logger-no-color', 'logger-timestamp', 'loglevel', 'n', 'no-reresolve', 'nocatchup', 'offset', 'p', 'payload', 'payload-file', 'payload-size', 'profile', 'qps',
      'quiet', 'r', 'resolve', 'resolve-ip-type', 'runid', 'sequential-warmup', 'stdclient', 'stream', 't', 'timeout', 'uniform', 'unix-socket', 'user']) {
      expect(names.has(n), n).toBe(true);
    }
    const def = (n: string) => FORTIO_FLAGS.find((f) => f.name === n)!.def;
    expect([def('c'), def('qps'), def('t'), def('timeout'), def('p'), def('keepalive'), def('log-errors'), def('r'), def('httpbufferkb')])
      .toEqual([4, 8, 5000, 3000, '50,75,90,99,99.9', true, true, 0.001, 128]);
  });
  it('docs/load.md has a row for every flag of the table', () => {
    const doc = readFileSync(new URL('../../docs/load.md', import.meta.url), 'utf8');
    for (const f of FORTIO_FLAGS) expect(doc, f.name).toMatch(new RegExp(`^\\| \`-${f.name.replace('.', '\\.')}\` \\| ${f.kind} \\|`, 'm'));
  });
});
