// `meshlet proxy --workers N`: N proxy processes sharing the listener ports through SO_REUSEPORT
// (the kernel spreads connections), supervised by this primary. Each worker is a whole proxy
// (its own pools, breakers and stats, as Envoy's workers have their own connection pools).
//
// Ports: the primary owns `--admin-port` (one admin for the whole proxy, as Envoy's with
// --concurrency): /ready for all workers, /workers, /stats summed over workers and
// /stats/prometheus merged with a `worker` label. Each worker's own admin binds a port the kernel picks, so no worker admin port can
// collide with a listener port (worker k at admin + k used to land on 15001, the outbound port);
// /workers and the ready line list them for per-worker /stats, /clusters and /config_dump.
//
// Supervision: a worker that exits before it is ready, or dies soon after, is started again
// after a backoff (100 ms doubling to 10 s); the primary exits non-zero once no worker runs and
// each has failed MAX_START_FAILURES starts in a row. SIGHUP/SIGTERM/SIGINT are forwarded. A
// sidecar normally runs one worker (the default: no primary at all).
import cluster, { type Worker } from 'node:cluster';
import { createServer, request as httpRequest, type Server } from 'node:http';

export interface WorkerPorts { outbound: number; inbound: number; admin: number }

/** Messages a worker sends its primary. */
export type WorkerMessage =
  | { type: 'ready'; index: number; ports: WorkerPorts }
  | { type: 'requests'; index: number; total: number };

export const MAX_START_FAILURES = 5;
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** A worker that ran this long before dying has "started": its failure count starts over. */
const HEALTHY_RUN_MS = 5_000;

export function workerIndex(): number | null {
  return cluster.isWorker ? Number(process.env.MESHLET_WORKER_INDEX ?? 0) : null;
}

/** Ports a worker must bind (worker 0 picks the listener ports when the flags said 0). */
export function workerPorts(): WorkerPorts | null {
  const p = process.env.MESHLET_WORKER_PORTS;
  return p ? JSON.parse(p) as WorkerPorts : null;
}

/** The skew of per-worker request counts: max / mean (1.00 = perfectly even). */
export function skew(counts: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0 || counts.length === 0) return 1;
  return Math.max(...counts) / (total / counts.length);
}

/** Delay before start number `failures + 1` of a worker that failed `failures` times in a row. */
export function restartDelay(failures: number): number {
  return failures === 0 ? 0 : Math.min(BACKOFF_BASE_MS * 2 ** (failures - 1), BACKOFF_MAX_MS);
}

interface WorkerState {
  index: number;
  worker: Worker | null;
  pid: number | null;
  ready: boolean;
  readyAt: number;
  admin: number;
  failures: number;
  restarts: number;
  timer: NodeJS.Timeout | null;
}

export interface PrimaryOptions {
  workers: number;
  /** Listener ports from the flags (0 = worker 0 picks them) and the primary's admin port. */
  ports: WorkerPorts;
  bind: string;
  reportMs: number;
}

export async function runPrimary(o: PrimaryOptions): Promise<number> {
  const n = o.workers;
  const states: WorkerState[] = Array.from({ length: n }, (_, index) => ({
    index, worker: null, pid: null, ready: false, readyAt: 0, admin: 0, failures: 0, restarts: 0, timer: null,
  }));
  const totals = new Array<number>(n).fill(0);
  const last = new Array<number>(n).fill(0);
  let ports: WorkerPorts | null = null; // the listener ports once worker 0 has bound them
  let stopping = false;
  let exitCode = 0;
  let onAllExited: (() => void) | null = null;
  const log = (msg: string, extra: Record<string, unknown> = {}, level = 30) =>
    process.stdout.write(`${JSON.stringify({ level, time: new Date().toISOString(), pid: process.pid, ...extra, msg })}\n`);

  const anyRunning = () => states.some((s) => s.worker !== null);
  const checkDone = () => { if (!anyRunning() && onAllExited) onAllExited(); };

  /** Give up when nothing runs and every worker has used up its starts. */
  const hopeless = () => states.every((s) => !s.ready && s.worker === null && s.failures >= MAX_START_FAILURES);

  let firstReady: ((ok: boolean) => void) | null = null;

  const start = (s: WorkerState): void => {
    s.timer = null;
    if (stopping) return;
    // Worker 0 binds the flags' listener ports (0 = its pick); the others bind the same ones.
    // Its own admin on a port the kernel picks: never one of the listener ports.
    const listen: WorkerPorts = { ...(ports ?? o.ports), admin: 0 };
    const w = cluster.fork({ MESHLET_WORKER_INDEX: String(s.index), MESHLET_WORKER_PORTS: JSON.stringify(listen) });
    s.worker = w;
    s.pid = w.process.pid ?? null;
    w.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') {
        s.ready = true;
        s.readyAt = performance.now();
        s.admin = m.ports.admin;
        if (ports === null) ports = { outbound: m.ports.outbound, inbound: m.ports.inbound, admin: 0 };
        firstReady?.(true);
      } else if (m.type === 'requests') totals[m.index] = m.total;
    });
    w.on('exit', (code, signal) => {
      const wasReady = s.ready;
      s.worker = null;
      s.ready = false;
      s.admin = 0;
      if (stopping) { checkDone(); return; }
      const ranLong = wasReady && performance.now() - s.readyAt >= HEALTHY_RUN_MS;
      s.failures = ranLong ? 0 : s.failures + 1;
      if (hopeless()) {
        log('no worker can run; exiting', { worker: s.index, code, signal, failures: s.failures }, 50);
        exitCode = 1;
        stopAll('SIGTERM');
        checkDone();
        return;
      }
      if (s.failures >= MAX_START_FAILURES && ports === null) {
        // Worker 0 never came up: nothing else can start either.
        log('worker 0 cannot start; exiting', { code, signal }, 50);
        exitCode = 1;
        stopAll('SIGTERM');
        checkDone();
        return;
      }
      const delay = restartDelay(s.failures);
      s.restarts++;
      log(wasReady ? 'worker died; restarting it' : 'worker failed to start; retrying', { worker: s.index, code, signal, failures: s.failures, retry_in_ms: delay }, 40);
      s.timer = setTimeout(start, delay, s);
    });
  };

  const stopAll = (sig: NodeJS.Signals) => {
    stopping = true;
    firstReady?.(false); // a signal during start-up ends the wait for worker 0
    for (const s of states) {
      if (s.timer) { clearTimeout(s.timer); s.timer = null; }
      s.worker?.process.kill(sig);
    }
  };

  // The admin port first: a port that is taken fails here, before any worker runs.
  let admin: { server: Server; port: number };
  try {
    admin = await primaryAdmin(o, states);
  } catch (e) {
    console.error(`meshlet proxy: admin port ${o.ports.admin}: ${(e as Error).message}`);
    return 1;
  }
  const closeAdmin = () => new Promise<void>((r) => { admin.server.close(() => r()); admin.server.closeAllConnections(); });
  process.on('SIGTERM', () => stopAll('SIGTERM'));
  process.on('SIGINT', () => stopAll('SIGINT'));
  process.on('SIGHUP', () => { for (const s of states) s.worker?.process.kill('SIGHUP'); });
  const allExited = () => new Promise<void>((r) => { onAllExited = r; checkDone(); });

  // Worker 0 first (it may pick the ports), then the rest.
  const ok = await new Promise<boolean>((resolve) => { firstReady = resolve; start(states[0]); });
  firstReady = null;
  if (!ok || stopping) {
    // Given up (exitCode 1) or stopped by a signal (0).
    await allExited();
    await closeAdmin();
    return exitCode;
  }
  for (let i = 1; i < n; i++) start(states[i]);
  // Wait (bounded) for the others, so the ready line can list them; a slow one is listed as 0.
  const t0 = performance.now();
  while (!stopping && states.some((s) => !s.ready) && performance.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
  if (!stopping) log('meshlet proxy ready', { ports: { ...ports!, admin: admin.port }, workers: n, admin_ports: states.map((s) => s.admin) });

  const timer = setInterval(() => {
    const window = totals.map((t, i) => t - last[i]);
    for (let i = 0; i < n; i++) last[i] = totals[i];
    if (window.some((c) => c > 0)) log('worker skew', { requests: window, skew: Math.round(skew(window) * 100) / 100 });
  }, o.reportMs);
  timer.unref();
  await new Promise<void>((r) => { onAllExited = r; if (stopping) checkDone(); });
  clearInterval(timer);
  await closeAdmin();
  return exitCode;
}

/** The primary's admin port: readiness and metrics for all workers in one place. */
async function primaryAdmin(o: PrimaryOptions, states: WorkerState[]): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const ready = states.filter((s) => s.ready);
    if (req.method !== 'GET' && req.method !== 'HEAD') { text(405, 'method not allowed\n'); return; }
    switch (url.pathname) {
      case '/ready':
        // Serving while at least one worker listens (the kernel only hands connections to those).
        if (ready.length === 0) text(503, 'INITIALIZING\n');
        else text(200, ready.length === states.length ? 'LIVE\n' : `LIVE ${ready.length}/${states.length} workers\n`);
        return;
      case '/workers':
        text(200, `${JSON.stringify(states.map((s) => ({ index: s.index, pid: s.pid, ready: s.ready, admin_port: s.admin || null, restarts: s.restarts, failures: s.failures })), null, 2)}\n`, 'application/json');
        return;
      case '/stats/prometheus':
      case '/stats': {
        const prom = url.pathname === '/stats/prometheus' || url.searchParams.get('format') === 'prometheus';
        // Envoy text: the query (filter, usedonly) goes to the workers, which apply it.
        const path = prom ? '/stats/prometheus' : `/stats${url.search}`;
        void Promise.all(ready.map((s) => fetchText(o.bind, s.admin, path).then((r) => ({ index: s.index, t: r.body, status: r.status }), () => null)))
          .then((rs) => {
            const parts = rs.filter((r) => r !== null);
            const bad = parts.find((r) => r.status !== 200);
            if (bad) { text(bad.status, bad.t); return; } // e.g. an invalid filter: the worker's answer
            if (prom) text(200, mergePrometheus(parts), 'text/plain; version=0.0.4; charset=utf-8'); // the workers' Registry content type
            else text(200, sumEnvoyStats(parts.map((r) => r.t)));
          }, () => text(502, 'workers did not answer\n'));
        return;
      }
      case '/':
        text(200, ['meshlet admin (primary of ' + states.length + ' workers)', '/ready', '/workers', '/stats (summed over workers)', '/stats/prometheus (every worker, label worker="k")', 'per worker: /workers lists each admin port'].join('\n') + '\n');
        return;
    }
    text(404, `the primary serves /ready, /workers, /stats and /stats/prometheus; ${url.pathname} is per worker: ${states.map((s) => `worker ${s.index} at ${s.admin ? `http://${o.bind}:${s.admin}` : 'not running'}`).join(', ')}\n`);
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.ports.admin, o.bind, () => { server.removeListener('error', reject); resolve((server.address() as { port: number }).port); });
  });
  return { server, port };
}

function fetchText(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host, port, path, timeout: 5000 }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { b += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Envoy `/stats` text of several workers as one process would report it: counters and gauges are
 * summed (requests, connections, active gauges add up across workers), except the gauges that
 * describe a cluster's state, which every worker keeps for itself (membership, breaker-open flags,
 * active ejections): those are the maximum over workers.
 */
export function sumEnvoyStats(texts: string[]): string {
  const out = new Map<string, number>();
  for (const t of texts) {
    for (const line of t.split('\n')) {
      const i = line.lastIndexOf(': ');
      if (i <= 0) continue;
      const name = line.slice(0, i);
      const v = Number(line.slice(i + 2));
      if (!Number.isFinite(v)) continue;
      const prev = out.get(name);
      if (prev === undefined) out.set(name, v);
      else out.set(name, perWorkerState(name) ? Math.max(prev, v) : prev + v);
    }
  }
  return [...out.keys()].sort().map((k) => `${k}: ${out.get(k)}\n`).join('');
}

function perWorkerState(name: string): boolean {
  return name.endsWith('.membership_total') || name.endsWith('.membership_healthy') || name.endsWith('_open')
    || name.endsWith('.outlier_detection.ejections_active');
}

/**
 * Prometheus text from several workers as one exposition: each family's HELP and TYPE once, then
 * every worker's samples with a `worker` label added (sum by the other labels for totals).
 */
export function mergePrometheus(parts: Array<{ index: number; t: string }>): string {
  const families = new Map<string, { meta: string[]; samples: string[] }>();
  for (const { index, t } of parts) {
    let fam: { meta: string[]; samples: string[] } | null = null;
    for (const line of t.split('\n')) {
      if (line === '') continue;
      const m = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (m) {
        let f = families.get(m[2]);
        if (!f) { f = { meta: [], samples: [] }; families.set(m[2], f); }
        if (!f.meta.some((x) => x.startsWith(`# ${m[1]} `))) f.meta.push(line);
        fam = f;
        continue;
      }
      if (line.startsWith('#')) continue;
      if (fam === null) { fam = { meta: [], samples: [] }; families.set(`\u0000${families.size}`, fam); }
      const brace = line.indexOf('{');
      const space = line.indexOf(' ');
      const label = `worker="${index}"`;
      fam.samples.push(brace >= 0 && brace < space
        ? `${line.slice(0, brace + 1)}${label}${line[brace + 1] === '}' ? '' : ','}${line.slice(brace + 1)}`
        : `${line.slice(0, space)}{${label}}${line.slice(space)}`);
    }
  }
  let out = '';
  for (const f of families.values()) out += [...f.meta, ...f.samples].join('\n') + '\n';
  return out;
}

/** In a worker: tell the primary we listen, then report request counts. */
export function reportToPrimary(index: number, ports: WorkerPorts, requests: () => number, everyMs: number): void {
  process.send!({ type: 'ready', index, ports } satisfies WorkerMessage);
  const t = setInterval(() => process.send!({ type: 'requests', index, total: requests() } satisfies WorkerMessage), everyMs);
  t.unref();
}
