// The loads: closed-loop max throughput (wrk when installed, else autocannon), fixed-rate open-loop
// latency (our own runner, as `meshlet load -qps`), and RSS with many idle downstream connections.
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import autocannon from 'autocannon';
import { runLoad, toFortioJson } from '../load/runner.ts';
import { HOST } from './arms.ts';
import { which } from './procs.ts';

export interface Throughput { tool: string; requests: number; seconds: number; rps: number; errors: number }

export async function closedLoop(port: number, seconds: number, path = '/', connections = 50): Promise<Throughput> {
  const wrk = which('wrk');
  // wrk takes whole seconds and autocannon rounds a sub-second duration up to a whole second,
  // so the sub-second (smoke, warm-up) runs use our own closed loop.
  if (seconds < 1) {
    const r = await runLoad({ url: `http://127.0.0.1:${port}${path}`, connections, qps: 0, calls: 0, durationMs: seconds * 1000, headers: [['Host', HOST]], payload: null, timeoutMs: 3000, allowInitialErrors: true });
    let errors = 0;
    for (const [code, n] of r.retCodes) if (code < 200 || code >= 400) errors += n;
    return { tool: `meshlet load -qps 0 -c${connections}`, requests: r.calls, seconds: r.actualDurationMs / 1000, rps: r.calls / (r.actualDurationMs / 1000), errors };
  }
  if (wrk) {
    seconds = Math.round(seconds);
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn(wrk, ['-t1', `-c${connections}`, `-d${seconds}s`, '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}${path}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      c.stdout.on('data', (d) => { o += d; });
      c.stderr.on('data', (d) => { o += d; });
      c.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`wrk exited ${code}: ${o}`))));
    });
    const m = /(\d+) requests in ([\d.]+)(m?s)/.exec(out);
    if (!m) throw new Error(`cannot read wrk output: ${out}`);
    const requests = Number(m[1]);
    const secs = Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
    const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out);
    const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const errors = (errs ? Number(errs[1]) : 0) + (sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0);
    return { tool: `wrk -t1 -c${connections}`, requests, seconds: secs, rps: requests / secs, errors };
  }
  const r = await autocannon({ url: `http://127.0.0.1:${port}${path}`, connections, duration: seconds, headers: { host: HOST } });
  const requests = r.requests.total;
  return { tool: `autocannon -c${connections}`, requests, seconds: r.duration, rps: requests / r.duration, errors: r.errors + r.non2xx };
}

export interface LoadGen { tool: string; rps: number; cpuUsPerReq: number | null }

/**
 * `meshlet load -qps 0` against autocannon (and wrk when installed) on the same target, same
 * connections, alternating `rounds` times; the best round of each. Both Node tools run in this
 * process, so process.cpuUsage() gives each one's own CPU per request; wrk's is not read.
 */
export async function compareLoadGens(port: number, seconds: number, rounds: number, connections = 50): Promise<LoadGen[]> {
  const url = `http://127.0.0.1:${port}/`;
  const best = new Map<string, LoadGen>();
  const keep = (g: LoadGen) => { const b = best.get(g.tool); if (!b || g.rps > b.rps) best.set(g.tool, g); };
  const cpu = (c0: NodeJS.CpuUsage, n: number) => { const c = process.cpuUsage(c0); return (c.user + c.system) / n; };
  const runAutocannon = async () => {
    const c0 = process.cpuUsage();
    const a = await autocannon({ url, connections, duration: seconds, headers: { host: HOST } });
    keep({ tool: `autocannon -c${connections}`, rps: a.requests.total / a.duration, cpuUsPerReq: cpu(c0, a.requests.total) });
  };
  const runOurs = async () => {
    const c0 = process.cpuUsage();
    const m = await runLoad({ url, connections, qps: 0, calls: 0, durationMs: seconds * 1000, headers: [['Host', HOST]], payload: null, timeoutMs: 3000, allowInitialErrors: true });
    keep({ tool: `meshlet load -qps 0 -c${connections}`, rps: m.calls / (m.actualDurationMs / 1000), cpuUsPerReq: cpu(c0, m.calls + m.warmup) });
  };
  for (let i = 0; i < rounds; i++) {
    // Alternate who goes first: the machine's state drifts within a run.
    if (i % 2 === 0) { await runAutocannon(); await runOurs(); } else { await runOurs(); await runAutocannon(); }
    if (which('wrk')) {
      const w = await closedLoop(port, Math.max(1, Math.round(seconds)), '/', connections);
      keep({ tool: w.tool, rps: w.rps, cpuUsPerReq: null });
    }
  }
  return [...best.values()];
}

export interface Latency { p50: number; p90: number; p99: number; p999: number; calls: number; errors: number; behind: number }

export const FIXED_CONNECTIONS = 16;

/** Open loop at `qps` from our runner: latencies from the intended start, in ms. */
export async function fixedRate(port: number, qps: number, seconds: number): Promise<Latency> {
  const r = await runLoad({ url: `http://127.0.0.1:${port}/`, connections: FIXED_CONNECTIONS, qps, calls: 0, durationMs: seconds * 1000, headers: [['Host', HOST]], payload: null, timeoutMs: 3000, allowInitialErrors: false,
    // spread the connections' calls evenly (fortio -uniform) rather than fortio's default lock-step bursts
    uniform: true,
    // 10 µs buckets (fortio -r 0.00001): at fortio's default 1 ms every sub-millisecond percentile
    // is an interpolation inside the first bucket, and a hop adds a fraction of a millisecond.
    resolution: 0.00001 });
  const j = toFortioJson(r, [50, 90, 99, 99.9]);
  const p = (q: number) => 1000 * j.DurationHistogram.Percentiles!.find((x) => x.Percentile === q)!.Value;
  let errors = 0;
  for (const [code, n] of r.retCodes) if (code !== 200) errors += n;
  return { p50: p(50), p90: p(90), p99: p(99), p999: p(99.9), calls: r.calls, errors, behind: r.behind };
}

/** Open `n` idle keep-alive connections (each made one request), return a closer. */
export async function idleConnections(port: number, n: number): Promise<() => void> {
  const socks: Socket[] = [];
  const batch = 100;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => new Promise<void>((resolve) => {
      const s = connect(port, '127.0.0.1');
      socks.push(s);
      s.on('error', () => resolve());
      s.once('connect', () => s.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`));
      s.once('data', () => resolve());
      setTimeout(resolve, 3000).unref();
    })));
  }
  return () => { for (const s of socks) s.destroy(); };
}
