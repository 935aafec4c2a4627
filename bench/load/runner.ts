// The load engine behind `meshlet load` (fortio semantics): one undici Client per connection
// (pipelining 1), latencies in an HDR histogram. With qps > 0 the load is open-loop: call i of a
// connection has an intended start time, and latency is measured from it, so a stalled server
// shows up in the percentiles instead of silently slowing the sender (no coordinated omission).
import { Client, type Dispatcher } from 'undici';
import { build, type Histogram } from 'hdr-histogram-js';

export interface LoadOptions {
  url: string;
  connections: number;       // -c
  qps: number;               // -qps; 0 = as fast as possible (closed loop)
  calls: number;             // -n; 0 = use durationMs
  durationMs: number;        // -t
  headers: Array<[string, string]>;
  payload: Buffer | null;    // POST body
  contentType?: string;
  timeoutMs: number;
  /**
   * fortio: in duration mode (-n 0) every connection makes one warmup call first (not counted);
   * unless this is set, a warmup answer other than 2xx is retried (up to `warmupTries`, a random
   * pause of up to 200 ms between tries) and then aborts the run with a WarmupError.
   */
  allowInitialErrors: boolean;
  warmupTries?: number;      // default 50, like fortio
}

/** A warmup call failed and -allow-initial-errors was not given (fortio: "Aborting because ..."). */
export class WarmupError extends Error {}

export interface LoadResult {
  url: string;
  startTime: Date;
  requestedQps: number;
  requestedDurationMs: number;
  connections: number;
  actualDurationMs: number;
  calls: number;
  retCodes: Map<number, number>;   // -1 = socket error / timeout
  hist: Histogram;                 // microseconds
  sumUs: number;
  sockets: number[];               // sockets opened per connection
  behind: number;                  // open loop: calls that started late (sender could not keep up)
  maxLagMs: number;
  warmup: number;                  // warmup calls made (one per connection in duration mode)
  firstHit: { status: number; bytes: number } | null;
  buckets: number[];               // counts per BOUNDS_MS bound, last = above the largest
}

/** fortio's histogram bucket bounds (ms). */
export const BOUNDS_MS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 25, 30, 35, 40, 45, 50,
  60, 70, 80, 90, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 2000, 3000, 4000, 5000, 7500, 10000, 20000, 30000, 60000];

function bucketOf(ms: number): number {
  let lo = 0, hi = BOUNDS_MS.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (ms <= BOUNDS_MS[mid]) hi = mid; else lo = mid + 1; }
  return lo;
}

class Call implements Dispatcher.DispatchHandler {
  status = 0;
  done: (status: number) => void;
  constructor(done: (status: number) => void) { this.done = done; }
  onRequestStart(): void {}
  onResponseStart(_c: Dispatcher.DispatchController, status: number): void { if (status >= 200) this.status = status; }
  onResponseData(): void {}
  onResponseEnd(): void { this.done(this.status); }
  onResponseError(): void { this.done(-1); }
}

/** One warmup call: status (-1 on a socket error or timeout) and the start of the body, for the message. */
function fetchOnce(client: Client, opts: Dispatcher.DispatchOptions): Promise<{ status: number; body: string; bytes: number }> {
  return new Promise((resolve) => {
    let status = -1, body = '', bytes = 0;
    client.dispatch(opts, {
      onRequestStart() {},
      onResponseStart(_c, s) { if (s >= 200) status = s; },
      onResponseData(_c, chunk) { bytes += chunk.length; if (body.length < 200) body += chunk.toString('latin1', 0, 200); },
      onResponseEnd() { resolve({ status, body: body.slice(0, 200), bytes }); },
      onResponseError(_c, err) { resolve({ status: -1, body: err.message, bytes }); },
    });
  });
}

// fortio's codeIsOK for the warmup: any 2xx.
const ok2xx = (s: number) => s >= 200 && s < 300;

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const url = new URL(o.url);
  if (url.protocol !== 'http:') throw new Error(`only http:// URLs are supported, got ${o.url}`);
  const path = url.pathname + url.search;
  const headers: string[] = [];
  let hasHost = false;
  for (const [k, v] of o.headers) { headers.push(k, v); if (k.toLowerCase() === 'host') hasHost = true; }
  if (!hasHost) headers.push('host', url.host);
  if (o.payload && o.contentType) headers.push('content-type', o.contentType);
  const method = o.payload ? 'POST' : 'GET';
  const hist = build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3, useWebAssembly: false });
  const retCodes = new Map<number, number>();
  const sockets = new Array<number>(o.connections).fill(0);
  let sumUs = 0;
  let calls = 0;
  let behind = 0;
  let maxLagMs = 0;
  const buckets = new Array<number>(BOUNDS_MS.length + 1).fill(0);
  const codeCounts = new Float64Array(1001); // by status; [1000] = socket errors and timeouts (-1)
  // -n splits the calls evenly (the first connections take the remainder), like fortio.
  const perConn = (i: number) => (o.calls > 0 ? Math.floor(o.calls / o.connections) + (i < o.calls % o.connections ? 1 : 0) : Infinity);

  const dispatchOpts: Dispatcher.DispatchOptions = { origin: url.origin, path, method, headers, body: o.payload };
  const clients = Array.from({ length: o.connections }, (_, i) => {
    const client = new Client(url.origin, { pipelining: 1, connect: { timeout: o.timeoutMs }, headersTimeout: o.timeoutMs, bodyTimeout: o.timeoutMs });
    client.on('connect', () => { sockets[i]++; });
    return client;
  });
  let warmup = 0;
  let firstHit: LoadResult['firstHit'] = null;
  if (o.calls === 0) {
    try {
      await Promise.all(clients.map(async (client, i) => {
        const tries = o.allowInitialErrors ? 1 : Math.max(1, o.warmupTries ?? 50);
        for (let t = 1; ; t++) {
          const r = await fetchOnce(client, dispatchOpts);
          warmup++;
          if (i === 0 && !firstHit) firstHit = { status: r.status, bytes: r.bytes };
          if (o.allowInitialErrors || ok2xx(r.status)) return;
          if (t >= tries) throw new WarmupError(`after ${t} tries, error ${r.status} for ${o.url}: ${JSON.stringify(r.body)}`);
          await new Promise((res) => setTimeout(res, Math.random() * 200));
        }
      }));
    } catch (e) {
      await Promise.all(clients.map((c) => c.destroy()));
      throw e;
    }
  }
  const startTime = new Date();
  const t0 = performance.now();
  const deadline = o.calls > 0 ? Infinity : t0 + o.durationMs;

  // One callback-driven loop per connection: no promise or handler allocated per call, so the
  // tool stays ahead of the servers it measures.
  const worker = (i: number) => new Promise<void>((done) => {
    const client = clients[i];
    const n = perConn(i);
    // Open loop: this connection's share of the rate, offset so connections interleave.
    const interval = o.qps > 0 ? (1000 * o.connections) / o.qps : 0;
    let k = 0;
    let intended = 0;
    let start = 0;
    const end = () => { client.close().then(() => done(), () => { void client.destroy(); done(); }); };
    const record = (status: number) => {
      const us = Math.max(1, Math.round((performance.now() - start) * 1000));
      hist.recordValue(us);
      buckets[bucketOf(us / 1000)]++;
      sumUs += us;
      calls++;
      if (status >= 0 && status < 1000) codeCounts[status]++; else codeCounts[1000]++;
      k++;
      // After an error, undici is still failing this client's queue (it asserts the queue is
      // empty afterwards): dispatch the next call from a fresh stack.
      if (status < 0) setImmediate(next); else next();
    };
    const handler = new Call(record);
    const fire = () => {
      if (interval === 0 && performance.now() >= deadline) return end();
      // Behind schedule (the previous call on this connection ran long): measure from the
      // intended start, so the wait counts. A timer firing a millisecond late is not that.
      const now = performance.now();
      start = interval > 0 && now - intended > 2 ? intended : now;
      handler.status = 0;
      client.dispatch(dispatchOpts, handler);
    };
    const next = () => {
      if (k >= n) return end();
      if (interval > 0) {
        intended = t0 + (i * interval) / o.connections + k * interval;
        // -t in open loop: exactly the calls scheduled before the deadline (qps × t in all).
        if (intended >= deadline) return end();
        const wait = intended - performance.now();
        if (wait > 0) { setTimeout(fire, wait); return; }
        if (wait < -1) { behind++; if (-wait > maxLagMs) maxLagMs = -wait; }
      }
      fire();
    };
    next();
  });
  await Promise.all(Array.from({ length: o.connections }, (_, i) => worker(i)));
  for (let c = 0; c < 1000; c++) if (codeCounts[c] > 0) retCodes.set(c === 0 ? -1 : c, codeCounts[c]);
  if (codeCounts[1000] > 0) retCodes.set(-1, (retCodes.get(-1) ?? 0) + codeCounts[1000]);
  return {
    url: o.url, startTime, requestedQps: o.qps, requestedDurationMs: o.durationMs, connections: o.connections,
    actualDurationMs: performance.now() - t0, calls, retCodes, hist, sumUs, sockets, behind, maxLagMs, buckets, warmup, firstHit,
  };
}

export interface FortioJson {
  RunType: string; Labels: string; StartTime: string; RequestedQPS: string; RequestedDuration: string;
  ActualQPS: number; ActualDuration: number; NumThreads: number; Version: string;
  DurationHistogram: {
    Count: number; Min: number; Max: number; Sum: number; Avg: number; StdDev: number;
    Data: Array<{ Start: number; End: number; Percent: number; Count: number }>;
    Percentiles: Array<{ Percentile: number; Value: number }>;
  };
  Exactly: number; RetCodes: Record<string, number>; Sockets: number[]; SocketCount: number; URL: string;
  BehindSchedule: number;
}

/** A duration as Go's time.Duration.String() prints it (fortio's RequestedDuration): 500ms, 5s, 1m30s. */
export function goDuration(ms: number): string {
  if (ms < 1000) return `${Number(ms.toFixed(3))}ms`;
  const h = Math.floor(ms / 3_600_000), m = Math.floor((ms % 3_600_000) / 60_000), sec = Number(((ms % 60_000) / 1000).toFixed(3));
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${sec}s`;
}

export function toFortioJson(r: LoadResult, percentiles: number[], labels = ''): FortioJson {
  const h = r.hist;
  const count = r.calls;
  const sec = (us: number) => us / 1e6;
  const data: FortioJson['DurationHistogram']['Data'] = [];
  let cum = 0;
  for (let b = 0; b < r.buckets.length; b++) {
    const n = r.buckets[b];
    if (n === 0) continue;
    cum += n;
    const lo = b === 0 ? 0 : BOUNDS_MS[b - 1] * 1000;
    const hi = b < BOUNDS_MS.length ? BOUNDS_MS[b] * 1000 : h.maxValue;
    // Clamp the first and last buckets to what was seen, as fortio does.
    data.push({ Start: sec(Math.max(lo, h.minNonZeroValue)), End: sec(Math.min(hi, h.maxValue)), Percent: (100 * cum) / count, Count: n });
  }
  return {
    RunType: 'HTTP', Labels: labels, StartTime: r.startTime.toISOString(),
    RequestedQPS: r.requestedQps > 0 ? String(r.requestedQps) : 'max',
    RequestedDuration: r.requestedDurationMs > 0 && Number.isFinite(r.requestedDurationMs) ? goDuration(r.requestedDurationMs) : `exactly ${count} calls`,
    ActualQPS: count / (r.actualDurationMs / 1000), ActualDuration: Math.round(r.actualDurationMs * 1e6), NumThreads: r.connections, Version: 'meshlet',
    DurationHistogram: {
      Count: count, Min: sec(count ? h.minNonZeroValue : 0), Max: sec(h.maxValue), Sum: sec(r.sumUs), Avg: count ? sec(r.sumUs / count) : 0,
      StdDev: sec(h.stdDeviation), Data: data,
      Percentiles: percentiles.map((p) => ({ Percentile: p, Value: sec(h.getValueAtPercentile(p)) })),
    },
    Exactly: count, RetCodes: Object.fromEntries([...r.retCodes].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v])),
    Sockets: r.sockets, SocketCount: r.sockets.reduce((a, b) => a + b, 0), URL: r.url, BehindSchedule: r.behind,
  };
}

