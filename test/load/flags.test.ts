// One test per fortio flag (or small group): what reaches the server on the wire (raw loopback
// server), what the report and JSON say, and the files written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { rawServer, run, type RawServer } from './lib.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-load-'));
let srv: RawServer;
beforeAll(async () => { srv = await rawServer(); });
afterAll(async () => { await srv.close(); });
const url = () => `http://127.0.0.1:${srv.port}/p?q=1`;
const fresh = () => { srv.seen.length = 0; };
const hdr = (h: Record<string, string>, name: string) => Object.entries(h).find(([k]) => k.toLowerCase() === name)?.[1];

describe('request shaping', () => {
  it('-X, -H (repeatable), -user (basic auth), -compression', async () => {
    fresh();
    const r = await run(['load', '-qps', '0', '-n', '1', '-c', '1', '-X', 'DELETE', '-H', 'X-A: 1', '-H', 'Host: ratings', '-user', 'u:p', '-compression', url()]);
    expect(r.code).toBe(0);
    const s = srv.seen[0];
    expect(s.line).toBe('DELETE /p?q=1 HTTP/1.1');
    expect(hdr(s.headers, 'x-a')).toBe('1');
    expect(hdr(s.headers, 'host')).toBe('ratings');
    expect(hdr(s.headers, 'authorization')).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(hdr(s.headers, 'accept-encoding')).toBe('gzip');
  });
  it('-content-type switches to POST; -payload; -payload-file; -payload-size sends random octet-stream bytes', async () => {
    const file = join(dir, 'body.bin');
    writeFileSync(file, 'from-file');
    fresh();
    const [a, b, c] = await Promise.all([
      run(['load', '-qps', '0', '-n', '1', '-c', '1', '-content-type', 'application/json', url()]),
      run(['load', '-qps', '0', '-n', '1', '-c', '1', '-payload', 'hello', '-payload-file', file, url()]),
      run(['load', '-qps', '0', '-n', '2', '-c', '1', '-payload-size', '300', '-payload', 'ignored', url()]),
    ]);
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    const byType = (t: string) => srv.seen.filter((s) => hdr(s.headers, 'content-type') === t);
    const json = byType('application/json');
    expect(json).toHaveLength(1);
    expect(json[0].line).toMatch(/^POST /);
    const octet = byType('application/octet-stream');
    const fromFile = octet.filter((s) => s.body.toString() === 'from-file');
    expect(fromFile).toHaveLength(1); // -payload-file replaces -payload
    const random = octet.filter((s) => s.body.length === 300);
    expect(random).toHaveLength(2);
    expect(random[0].line).toMatch(/^POST /);
    expect(random[0].body.toString()).not.toContain('ignored');
    expect(new Set(random[0].body).size).toBeGreaterThan(50); // random bytes, not a fill
  });
  it('-http1.0 sends HTTP/1.0 as fortio\'s fast client (no Host unless -H, a socket per call); -keepalive=false closes each time; -halfclose half-closes', async () => {
    fresh();
    const c0 = srv.conns;
    const h10 = await run(['load', '-qps', '0', '-n', '3', '-c', '1', '-http1.0', '-json', '-', url()]);
    expect(srv.seen.map((s) => s.line)).toEqual(Array(3).fill('GET /p?q=1 HTTP/1.0'));
    expect(hdr(srv.seen[0].headers, 'host')).toBeUndefined();
    expect(hdr(srv.seen[0].headers, 'connection')).toBeUndefined();
    expect(srv.conns - c0).toBe(3);
    expect(JSON.parse(h10.out).HTTP10).toBe(true);
    fresh();
    await run(['load', '-qps', '0', '-n', '1', '-c', '1', '-http1.0', '-H', 'Host: ratings', url()]);
    expect(hdr(srv.seen[0].headers, 'host')).toBe('ratings');
    fresh();
    const c1 = srv.conns;
    const noKa = await run(['load', '-qps', '0', '-n', '4', '-c', '1', '-keepalive=false', '-json', '-', url()]);
    expect(srv.conns - c1).toBe(4);
    expect(hdr(srv.seen[0].headers, 'connection')).toBe('close');
    expect(srv.seen.every((s) => !s.halfClosed)).toBe(true);
    const j = JSON.parse(noKa.out);
    expect(j.SocketCount).toBe(4);
    expect(j.DisableKeepAlive).toBe(true);
    expect(noKa.err).toContain('Sockets used: 4 (for perfect keepalive, would be 1)');
    fresh();
    const half = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-keepalive=false', '-halfclose', url()]);
    expect(half.err).toContain('Code 200 : 2 (100.0 %)');
    expect(srv.seen.map((s) => s.halfClosed)).toEqual([true, true]);
  });
  it('-connection-reuse 2:2 opens a new socket every 2 requests', async () => {
    const c0 = srv.conns;
    const r = await run(['load', '-qps', '0', '-n', '6', '-c', '1', '-connection-reuse', '2:2', '-json', '-', url()]);
    expect(srv.conns - c0).toBe(3);
    expect(JSON.parse(r.out).ConnReuseRange).toEqual([2, 2]);
    const [swapped, single, bad] = await Promise.all([
      run(['load', '-qps', '0', '-n', '1', '-c', '1', '-connection-reuse', '5:2', '-json', '-', url()]),
      run(['load', '-qps', '0', '-n', '1', '-c', '1', '-connection-reuse', '3', '-json', '-', url()]),
      run(['load', '-connection-reuse', 'x:2', url()]),
    ]);
    expect(JSON.parse(swapped.out).ConnReuseRange).toEqual([2, 5]); // fortio swaps a > b
    expect(JSON.parse(single.out).ConnReuseRange).toEqual([3, 3]);
    expect(bad.code).toBe(2);
  });
  it('-resolve connects to the given IP with the URL host as Host; -unix-socket goes over a unix socket', async () => {
    fresh();
    const r = await run(['load', '-qps', '0', '-n', '1', '-c', '1', '-resolve', '127.0.0.1', `http://ratings.example:${srv.port}/x`]);
    expect(r.err).toContain('Code 200 : 1 (100.0 %)');
    expect(hdr(srv.seen[0].headers, 'host')).toBe(`ratings.example:${srv.port}`);
    expect(r.err).toContain(`127.0.0.1:${srv.port}: 1`);
    const sock = join(dir, 'u.sock');
    const seen: string[] = [];
    const us = createServer((q, res) => { seen.push(`${q.headers.host} ${q.url}`); res.end('unix'); });
    await new Promise<void>((res) => us.listen(sock, res));
    try {
      const u = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-unix-socket', sock, '-json', '-', 'http://svc.local/y']);
      expect(u.err).toContain('Code 200 : 2 (100.0 %)');
      expect(seen).toEqual(['svc.local /y', 'svc.local /y']);
      expect(JSON.parse(u.out).UnixDomainSocket).toBe(sock);
    } finally { await new Promise((res) => us.close(res)); }
  });
  it('-L follows redirects (the final status counts); without it the 3xx counts', async () => {
    const redir = await rawServer((s) => (s.line.startsWith('GET /from') ? { status: 302, headers: [`Location: http://127.0.0.1:${srv.port}/to`] } : {}));
    try {
      fresh();
      const [follow, plain] = await Promise.all([
        run(['load', '-qps', '0', '-n', '2', '-c', '1', '-L', '-json', '-', `http://127.0.0.1:${redir.port}/from`]),
        run(['load', '-qps', '0', '-n', '2', '-c', '1', `http://127.0.0.1:${redir.port}/from`]),
      ]);
      expect(JSON.parse(follow.out).RetCodes).toEqual({ 200: 2 });
      expect(JSON.parse(follow.out).FollowRedirects).toBe(true);
      expect(srv.seen.filter((s) => s.line === 'GET /to HTTP/1.1')).toHaveLength(2);
      expect(plain.err).toContain('Code 302 : 2 (100.0 %)');
    } finally { await redir.close(); }
  });
});

describe('run control', () => {
  it('-abort-on 503 stops the run at the first 503 (exit 0, report printed)', async () => {
    const s = await rawServer((_s, n) => (n >= 5 ? { status: 503 } : {}));
    try {
      const r = await run(['load', '-qps', '0', '-n', '200', '-c', '1', '-abort-on', '503', '-json', '-', `http://127.0.0.1:${s.port}/`]);
      expect(r.code).toBe(0);
      const j = JSON.parse(r.out);
      expect(j.RetCodes).toEqual({ 200: 4, 503: 1 });
      expect(j.AbortOn).toBe(503);
      expect(r.err).toMatch(/^\{.*"level":"info".*"msg":"Aborted run because of http code","run":0,"code":503/m);
    } finally { await s.close(); }
  });
  it('-calc-qps takes qps = n / t; -uniform, -jitter, -nocatchup are echoed in the report and JSON', async () => {
    const [calc, echo] = await Promise.all([
      run(['load', '-calc-qps', '-n', '10', '-t', '1s', '-c', '2', '-json', '-', url()]),
      run(['load', '-qps', '0', '-n', '2', '-c', '1', '-uniform', '-jitter', '-nocatchup', '-json', '-', url()]),
    ]);
    expect(calc.err).toContain('running at 10 queries per second');
    expect(calc.err).toContain('Starting at 10 qps with 2 thread(s)');
    const c = JSON.parse(calc.out);
    expect([c.RequestedQPS, c.Exactly, c.RequestedDuration]).toEqual(['10', 10, 'exactly 10 calls']);
    expect(c.ActualDuration).toBeGreaterThan(0.7e9); // 5 calls per thread at 5 qps stretched over -t 1s, not max speed
    expect(echo.err).toContain('Uniform: true, Jitter: true, Catchup allowed: false');
    const j = JSON.parse(echo.out);
    expect([j.Uniform, j.Jitter, j.NoCatchUp]).toEqual([true, true, true]);
  });
  it('-nocatchup skips the calls whose time passed instead of bursting them', async () => {
    let n = 0;
    const s = createServer((_q, res) => { if (++n === 2) setTimeout(() => res.end('late'), 400); else res.end('ok'); });
    await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
    const port = (s.address() as { port: number }).port;
    try {
      n = 0;
      const catchup = JSON.parse((await run(['load', '-qps', '20', '-t', '1s', '-c', '1', '-json', '-', `http://127.0.0.1:${port}/`])).out);
      n = 0;
      const skip = JSON.parse((await run(['load', '-qps', '20', '-t', '1s', '-c', '1', '-nocatchup', '-json', '-', `http://127.0.0.1:${port}/`])).out);
      expect(catchup.DurationHistogram.Count).toBeGreaterThanOrEqual(19); // the late calls burst out after the stall
      expect(skip.DurationHistogram.Count).toBeLessThan(17); // ~7 calls fell in the 400 ms stall and were skipped
    } finally { await new Promise((res) => s.close(res)); }
  });
  it('-sequential-warmup and -log-errors=false', async () => {
    // 200 for the two warmup calls, then 500s (one server per run: they run side by side)
    const s = await rawServer((_x, n) => (n > 2 ? { status: 500 } : {}));
    const t = await rawServer((_x, n) => (n > 2 ? { status: 500 } : {}));
    try {
      const [logged, quiet] = await Promise.all([
        run(['load', '-t', '300ms', '-qps', '0', '-c', '2', '-sequential-warmup', '-json', '-', `http://127.0.0.1:${s.port}/`]),
        run(['load', '-qps', '0', '-n', '3', '-c', '1', '-log-errors=false', `http://127.0.0.1:${t.port}/`]),
      ]);
      expect(JSON.parse(logged.out).SequentialWarmup).toBe(true);
      expect(logged.err).toMatch(/^\{.*"level":"warn".*"msg":"Non ok http code","code":500,"status":"HTTP\/1\.1 500","thread":[01],"run":0\}$/m);
      expect(quiet.err).toContain('Code 500 : 1 (33.3 %)');
      expect(quiet.err).not.toContain('Non ok http code');
    } finally { await s.close(); await t.close(); }
  });
  it('-loglevel Error hides warnings; -logger-json=false prints text log lines', async () => {
    const s = await rawServer(() => ({ status: 500 }));
    try {
      const [err, text] = await Promise.all([
        run(['load', '-qps', '0', '-n', '2', '-c', '1', '-loglevel', 'Error', `http://127.0.0.1:${s.port}/`]),
        run(['load', '-qps', '0', '-n', '2', '-c', '1', '-logger-json=false', '-logger-timestamp=false', `http://127.0.0.1:${s.port}/`]),
      ]);
      expect(err.err).not.toContain('Non ok http code');
      expect(text.err).toMatch(/^\[WRN\] Non ok http code, code=500, status="HTTP\/1\.1 500", thread=0, run=0$/m);
    } finally { await s.close(); }
  });
});

describe('outputs', () => {
  it('-a with -data-dir saves <ID>.json; -labels and -runid shape the ID', async () => {
    const out = mkdtempSync(join(tmpdir(), 'meshlet-a-'));
    const r = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-a', '-data-dir', out, '-labels', 'seed 000/cb', '-runid', '7', url()]);
    expect(r.code).toBe(0);
    const files = readdirSync(out);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^\d{4}-\d\d-\d\d-\d{6}_7_seed_000_cb\.json$/);
    const j = JSON.parse(readFileSync(join(out, files[0]), 'utf8'));
    expect(`${j.ID}.json`).toBe(files[0]);
    expect([j.Labels, j.RunID]).toEqual(['seed 000/cb', 7]);
    expect(r.err).toMatch(new RegExp(`Successfully wrote \\d+ bytes of Json data to ${out}/${files[0].replace(/\./g, '\\.')}`));
  });
  it('labels default to the URL without scheme and the short hostname', async () => {
    const r = await run(['load', '-qps', '0', '-n', '1', '-c', '1', '-json', '-', url()]);
    expect(JSON.parse(r.out).Labels).toMatch(new RegExp(`^127\\.0\\.0\\.1:${srv.port}/p\\?q=1 , \\S+$`));
  });
  it('-access-log-file in json and influx formats: one line per call', async () => {
    const jf = join(dir, 'access.json'), inf = join(dir, 'access.influx');
    const [a, b] = await Promise.all([
      run(['load', '-qps', '0', '-n', '3', '-c', '1', '-access-log-file', jf, '-json', '-', url()]),
      run(['load', '-qps', '0', '-n', '2', '-c', '1', '-access-log-file', inf, '-access-log-format', 'influx', url()]),
    ]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const lines = readFileSync(jf, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => l.iter)).toEqual([0, 1, 2]);
    expect(lines[0]).toMatchObject({ thread: 0, ok: true, details: '200' });
    expect(lines[0].latency).toBeGreaterThan(0);
    expect(String(lines[0].timestamp)).toMatch(/^\d{19}$/); // Unix ns
    expect(JSON.parse(a.out).AccessLoggerInfo).toBe(`mode json to ${jf}`);
    expect(a.err).toMatch(new RegExp(`^Starting at max qps .* with access logger mode json to ${jf.replace(/[.]/g, '\\.')}$`, 'm'));
    const il = readFileSync(inf, 'utf8').trim().split('\n');
    expect(il).toHaveLength(2);
    expect(il[0]).toMatch(/^latency,thread=0,ok=true value=\d+\.\d{6},details="200" \d{19}$/);
    const bad = await run(['load', '-access-log-file', join(dir, 'x.log'), '-access-log-format', 'csv', url()]);
    expect(bad.code).toBe(1); // fortio: an error from AddAccessLogger, exit 1 (not a flag error)
    expect(bad.err).toContain('invalid format "csv", should be "json" or "influx"');
  });
  it('-r and -offset change the histogram buckets; -p sets the percentiles', async () => {
    const r = await run(['load', '-qps', '0', '-n', '5', '-c', '1', '-r', '0.0001', '-p', '10,95', '-json', '-', url()]);
    const j = JSON.parse(r.out);
    expect(j.Resolution).toBe(0.0001);
    expect(j.DurationHistogram.Percentiles.map((p: { Percentile: number }) => p.Percentile)).toEqual([10, 95]);
    // 0.1 ms buckets: every bucket End is a multiple of 0.1 ms except the last (= Max)
    for (const b of j.DurationHistogram.Data.slice(0, -1)) expect(Math.abs(b.End * 1e4 - Math.round(b.End * 1e4))).toBeLessThan(1e-6);
    const o = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-offset', '5ms', '-json', '-', url()]);
    expect(JSON.parse(o.out).Offset).toBe(5e6);
  });
  it('-profile writes <file>.cpu and <file>.mem', async () => {
    const base = join(dir, 'prof');
    const r = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-profile', base, url()]);
    expect(r.code).toBe(0);
    expect(JSON.parse(readFileSync(`${base}.cpu`, 'utf8')).nodes.length).toBeGreaterThan(0);
    expect(readFileSync(`${base}.mem`, 'utf8').slice(0, 20)).toContain('snapshot');
  });
});
