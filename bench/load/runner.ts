// The load engine behind `meshlet load` (fortio semantics; pacing in pacing.ts, histograms in
// histogram.ts, the HTTP/1.x client in http-client.ts). One loop per thread, callback driven (no
// promise per call), so the tool stays ahead of the servers it measures.
//
// One deliberate difference from fortio: with qps > 0, when a call goes out late because the
// thread was behind schedule, its latency is measured from the call's intended start (fortio
// measures from the actual send), so a stalled server shows up in the percentiles instead of
// silently slowing the sender (no coordinated omission). `coCorrection: false` gives fortio's.
import { Conn, Resolver, buildRequest, targetOf, type CallResult, type Caller, type RequestSpec, type TlsOptions } from './http-client.ts';
import { H2Caller } from './h2-transport.ts';
import { Counter, Histogram } from './histogram.ts';
import { dueMs, jitterMs, plan, uniformOffsetMs, type Plan } from './pacing.ts';
import { goDurationMs } from './goflag.ts';
import { goG } from './gofmt.ts';
import type { AccessLogger } from './access-log.ts';

export interface LoadOptions {
  url: string;
  connections: number;       // -c
  qps: number;               // -qps; <= 0 = max (closed loop)
  calls: number;             // -n; 0 = use durationMs
  durationMs: number;        // -t; 0 with calls 0 = until `signal` aborts
  headers: Array<[string, string]>;
  payload: Buffer | null;
  contentType?: string;
  timeoutMs: number;
  /** Do not abort when a warmup call is not OK (2xx or 418). */
  allowInitialErrors: boolean;
  method?: string;           // -X
  http10?: boolean;
  keepAlive?: boolean;       // default true
  halfClose?: boolean;
  reuse?: [number, number] | null;
  resolve?: string;
  unixSocket?: string;
  tls?: TlsOptions;
  compression?: boolean;
  user?: string;
  followRedirects?: boolean;
  abortOn?: number;          // 0 = none
  jitter?: boolean;
  uniform?: boolean;
  noCatchUp?: boolean;
  sequentialWarmup?: boolean;
  logErrors?: boolean;
  resolution?: number;       // -r (s)
  offsetSec?: number;        // -offset
  dnsMethod?: string;
  ipType?: string;
  noReresolve?: boolean;
  maxHeadBytes?: number;
  accessLog?: AccessLogger | null;
  /** Stops the run (^C with -t 0): the threads finish their call in flight and stop. */
  signal?: AbortSignal;
  /** Measure late calls from their intended start (default true; see the header comment). */
  coCorrection?: boolean;
  /** HTTP/2 (-h2: h2c for http://, ALPN h2 for https://) instead of HTTP/1.1. */
  h2?: boolean;
  /** gRPC health checks (-grpc, -healthservice) over HTTP/2. */
  grpc?: { service: string } | null;
  /** fortio's log lines (warnings per thread, non-OK codes). */
  log?: (level: 'info' | 'warn' | 'err', msg: string, fields?: Record<string, unknown>) => void;
  /** -runid, for the log lines. */
  runId?: number;
  /** After the warmup, right before the first call (fortio prints "Starting at ..." there). */
  onStart?: (r: { plan: Plan; requestedDurationMs: number }) => void;
}

/** A warmup call failed and -allow-initial-errors was not given (fortio: "Aborting because of ..."). */
export class WarmupError extends Error {}

export interface LoadResult {
  url: string;
  startTime: Date;
  requestedQps: number;
  requestedDurationMs: number;
  exactly: number;
  connections: number;       // threads actually used (the plan may lower -c)
  actualDurationMs: number;
  calls: number;
  retCodes: Map<number, number>;   // -1 = socket error / timeout
  duration: Histogram;
  errors: Histogram;
  sizes: Histogram;
  headerSizes: Histogram;
  connStats: Histogram;
  perConn: Counter[];
  sockets: number[];
  ips: Map<string, number>;
  /** Per thread: the addresses its sockets went to, with counts. */
  connIps: Array<Map<string, number>>;
  sleep: Histogram;
  behind: number;                  // qps mode: calls that started late
  maxLagMs: number;
  warmup: number;
  firstHit: { status: number; bytes: number } | null;
  aborted: number | null;          // -abort-on code that stopped the run
  plan: Plan;
  options: LoadOptions;
}

const isOK = (s: number) => (s >= 200 && s < 300) || s === 418;

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const url = new URL(o.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`only http:// and https:// URLs are supported, got ${o.url}`);
  const method = o.method || (o.payload || o.contentType ? 'POST' : 'GET');
  // fortio's fast client in HTTP/1.0 mode: no keep-alive (a socket per call), no Host header
  // unless one is given with -H.
  const keepAlive = o.keepAlive !== false && !o.http10;
  const spec: RequestSpec = {
    method, headers: o.headers, body: o.payload, contentType: o.contentType, http10: !!o.http10, keepAlive,
    compression: !!o.compression, user: o.user,
  };
  const res = o.resolution ?? 0.001;
  const off = o.offsetSec ?? 0;
  const duration = new Histogram(off, res);
  const errors = new Histogram(off, res);
  const sizes = new Histogram(0, 100);
  const headerSizes = new Histogram(0, 5);
  const connStats = new Histogram(off, res);
  // fortio: sleep times with a -1 ms offset, so the first bucket holds the calls over 1 ms behind.
  const sleep = new Histogram(-0.001, 0.001);
  const ips = new Map<string, number>();
  const retCodes = new Map<number, number>();
  const pl = plan({ qps: o.qps, durationMs: o.durationMs, exactly: o.calls, threads: o.connections });
  const threads = pl.threads;
  const perConn = Array.from({ length: threads }, () => new Counter());
  const connIps = Array.from({ length: threads }, () => new Map<string, number>());
  const resolver = new Resolver(o.dnsMethod, o.ipType);
  const tls: TlsOptions = o.tls ?? { insecure: false };
  const log = o.log ?? (() => {});
  const co = o.coCorrection !== false;
  const clientOpts = (i: number) => ({
    keepAlive, halfClose: !!o.halfClose, timeoutMs: o.timeoutMs, reuse: o.reuse ?? null, maxHeadBytes: o.maxHeadBytes ?? 128 * 1024,
    tls, resolver,
    onSocket: (secs: number, addr: string) => { secs = Math.round(secs * 1e9) / 1e9; perConn[i].record(secs); connStats.record(secs);
      ips.set(addr, (ips.get(addr) ?? 0) + 1); connIps[i].set(addr, (connIps[i].get(addr) ?? 0) + 1); },
  });
  const mainTarget = targetOf(url, o.resolve, o.unixSocket);
  const request = buildRequest(url, spec);
  const h2 = !!o.h2 || !!o.grpc;
  const conns: Caller[] = Array.from({ length: threads }, (_, i) => (h2
    ? new H2Caller(mainTarget, { url: o.url, headers: o.headers, payload: o.payload, contentType: o.contentType, timeoutMs: o.timeoutMs, insecure: tls.insecure, grpc: o.grpc ?? null })
    : new Conn(mainTarget, request, method, clientOpts(i), !!o.noReresolve)));
  // -L: other origins get their own connection per thread (fortio: the std client follows redirects).
  const redirectConns = Array.from({ length: threads }, () => new Map<string, Conn>());

  /** One logical call: the request, and its redirects with -L (at most 10 hops). */
  const callOnce = (i: number, cb: (r: CallResult) => void) => {
    let hops = 0;
    let conn = conns[i];
    let hb = 0, tb = 0;
    const step = (r: CallResult) => {
      hb += r.headerBytes; tb += r.totalBytes;
      if (!h2 && o.followRedirects && r.location && r.status >= 300 && r.status < 400 && hops < 10) {
        hops++;
        let next: URL;
        try { next = new URL(r.location, conn.target.url); } catch { cb({ ...r, headerBytes: hb, totalBytes: tb }); return; }
        const key = next.origin;
        let c = redirectConns[i].get(`${key}${next.pathname}${next.search}`);
        if (!c) {
          const m = r.status === 303 ? 'GET' : method;
          c = new Conn(targetOf(next, next.host === url.host ? o.resolve : undefined, next.host === url.host ? o.unixSocket : undefined),
            buildRequest(next, { ...spec, method: m, body: m === 'GET' ? null : spec.body }), m, clientOpts(i));
          redirectConns[i].set(`${key}${next.pathname}${next.search}`, c);
        }
        conn = c;
        c.call(step);
        return;
      }
      cb({ ...r, headerBytes: hb, totalBytes: tb });
    };
    conn.call(step);
  };
  const call = (i: number) => new Promise<CallResult>((resolve) => callOnce(i, resolve));
  const closeAll = () => { for (const c of conns) c.close(); for (const m of redirectConns) for (const c of m.values()) c.close(); };

  // Warmup (fortio's httprunner): in -t mode one call per thread, in parallel (or one after
  // another with -sequential-warmup); a non-OK answer aborts at once, no retries.
  let warmup = 0;
  let firstHit: LoadResult['firstHit'] = null;
  if (o.calls <= 0) {
    const one = async (i: number) => {
      const r = await call(i);
      warmup++;
      if (i === 0) firstHit = { status: r.status, bytes: r.totalBytes };
      if (!o.allowInitialErrors && !isOK(r.status)) {
        throw new WarmupError(r.status < 0 ? `error ${r.status} for ${o.url}: ${r.error}` : `error ${r.status} for ${o.url} (${r.totalBytes} bytes)`);
      }
    };
    try {
      if (o.sequentialWarmup) for (let i = 0; i < threads; i++) await one(i);
      else await Promise.all(conns.map((_, i) => one(i)));
    } catch (e) {
      closeAll();
      throw e;
    }
  }

  o.onStart?.({ plan: pl, requestedDurationMs: o.calls > 0 ? 0 : o.durationMs });
  const startTime = new Date();
  const t0 = performance.now();
  const hasDuration = o.calls <= 0 && o.durationMs > 0;
  const deadline = hasDuration ? t0 + o.durationMs : Infinity;
  let calls = 0;
  let behind = 0;
  let maxLagMs = 0;
  let aborted: number | null = null;
  let stopped = !!o.signal?.aborted;
  const onAbort = () => { stopped = true; };
  o.signal?.addEventListener('abort', onAbort);
  const timers = new Set<NodeJS.Timeout>();
  const epochNs = BigInt(Date.now()) * 1_000_000n - BigInt(Math.round(performance.now() * 1e6));

  const worker = (i: number) => new Promise<void>((done) => {
    const n = pl.perThread[i];
    const threadStart = t0 + (o.uniform ? uniformOffsetMs(pl, i) : 0);
    let slot = 0;      // schedule index (calls made + calls skipped by -nocatchup)
    let made = 0;
    let start = 0;
    const record = (r: CallResult) => {
      const end = performance.now();
      const lat = ns(end - start);
      duration.record(lat);
      if (!isOK(r.status)) errors.record(lat);
      sizes.record(r.totalBytes);
      headerSizes.record(r.headerBytes);
      retCodes.set(r.status, (retCodes.get(r.status) ?? 0) + 1);
      calls++;
      made++;
      // fortio's fast client: connect failures are always logged (error level); other socket
      // errors and non-OK codes with -log-errors (log.S(log.Warning, "Non ok http code", ...)).
      if (r.status < 0 && r.connectFailed) log('err', mainTarget.tls ? 'Unable to TLS connect' : 'Unable to connect', { dest: conns[i].addr, err: r.error, thread: i, run: o.runId ?? 0 });
      else if (!isOK(r.status) && o.logErrors !== false) {
        if (r.status < 0) log('warn', 'Socket error', { err: r.error, thread: i, run: o.runId ?? 0 });
        else log('warn', 'Non ok http code', { code: r.status, status: `HTTP/1.${o.http10 ? 0 : 1} ${r.status}`, thread: i, run: o.runId ?? 0 });
      }
      o.accessLog?.report(i, made - 1, epochNs + BigInt(Math.round(start * 1e6)), lat, isOK(r.status), String(r.status));
      if (o.abortOn && r.status === o.abortOn && aborted === null) {
        aborted = r.status;
        log('info', 'Aborted run because of http code', { run: o.runId ?? 0, code: r.status, size: r.totalBytes });
      }
      // A failed call's socket is being torn down: go on from a fresh stack.
      if (r.status < 0) setImmediate(next); else next();
    };
    const finish = () => {
      const secs = (performance.now() - threadStart) / 1000;
      log('info', `T${pad3(i)} ended after ${goDurationMs(secs * 1000)} : ${slot} calls. qps=${goG(slot / secs)}`);
      done();
    };
    // `idx` is the index of the call about to be made (fortio's i).
    const fire = (intended: number, idx: number) => {
      if (stopped || aborted !== null) { finish(); return; }
      const now = performance.now();
      if (now > deadline && idx >= 2 && idx !== n - 1) {
        // -t is a hard bound in every mode (fortio's check at the top of its loop: at least
        // 2 calls, and the last scheduled one is still made).
        log('warn', `T${pad3(i)} warning only did ${idx} out of ${n} calls before reaching ${goDurationMs(o.durationMs)}`);
        finish();
        return;
      }
      start = co && intended > 0 && now - intended > 2 ? intended : now;
      callOnce(i, record);
    };
    const next = () => {
      if (stopped || aborted !== null || slot >= n) { finish(); return; }
      if (!pl.useQPS) {
        if (performance.now() >= deadline) { finish(); return; }
        slot++;
        fire(0, 0);
        return;
      }
      const now = performance.now();
      let due = threadStart + dueMs(pl, slot, n);
      if (o.noCatchUp && due < now - 2) {
        // -nocatchup: skip the calls whose time has passed instead of bursting them.
        while (slot < n && due < now) { slot++; due = threadStart + dueMs(pl, slot, n); }
        if (slot >= n) { finish(); return; }
      }
      let wait = due - now;
      if (o.jitter && wait > 0) wait += jitterMs(wait);
      // The first call goes out at once (fortio sleeps only between calls).
      const first = slot === 0;
      if (!first) sleep.record(ns(wait));
      const idx = slot++;
      if (first && wait <= 0) { fire(0, idx); return; }
      if (wait > 0) {
        const t = setTimeout(() => { timers.delete(t); fire(due, idx); }, wait);
        timers.add(t);
        return;
      }
      if (wait < -2) { behind++; if (-wait > maxLagMs) maxLagMs = -wait; }
      fire(due, idx);
    };
    next();
  });
  await Promise.all(conns.map((_, i) => worker(i)));
  const actualDurationMs = performance.now() - t0;
  o.signal?.removeEventListener('abort', onAbort);
  for (const t of timers) clearTimeout(t);
  const sockets = conns.map((c, i) => c.sockets + [...redirectConns[i].values()].reduce((s, r) => s + r.sockets, 0));
  closeAll();
  return {
    url: o.url, startTime, requestedQps: o.qps, requestedDurationMs: o.calls > 0 ? 0 : o.durationMs, exactly: Math.max(0, o.calls),
    connections: threads, actualDurationMs, calls, retCodes, duration, errors, sizes, headerSizes, connStats, perConn, sockets, ips, connIps,
    sleep, behind, maxLagMs, warmup, firstHit, aborted, plan: pl, options: o,
  };
}

/** ms → seconds, at fortio's nanosecond resolution (no float noise in the report). */
const ns = (ms: number) => Math.round(ms * 1e6) / 1e9;
const pad3 = (i: number) => String(i).padStart(3, '0');

export { toFortioJson, type FortioJson } from './json.ts';
/** Go's time.Duration.String() of a duration in ms (kept for callers of the old runner). */
export const goDuration = goDurationMs;
