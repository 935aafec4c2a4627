// `meshlet proxy --workers N`: N proxy processes sharing the listener ports through SO_REUSEPORT
// (the kernel spreads connections), supervised by this primary. Each worker is a whole proxy
// (its own pools, breakers and stats, as Envoy's workers have their own connection pools);
// worker k's admin port is --admin-port + k. The primary prints the ready line once every
// worker listens, logs a per-worker request skew report, restarts a worker that dies, and
// forwards SIGHUP/SIGTERM. A sidecar normally runs one worker (the default: no primary at all).
import cluster, { type Worker } from 'node:cluster';

export interface WorkerPorts { outbound: number; inbound: number; admin: number }

/** Messages a worker sends its primary. */
export type WorkerMessage =
  | { type: 'ready'; index: number; ports: WorkerPorts }
  | { type: 'requests'; index: number; total: number };

export function workerIndex(): number | null {
  return cluster.isWorker ? Number(process.env.MESHLET_WORKER_INDEX ?? 0) : null;
}

/** Ports a worker must bind (worker 0 picks them when the flags said 0). */
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

export async function runPrimary(n: number, adminPort: number, reportMs: number): Promise<number> {
  const workers = new Map<number, Worker>();
  const totals = new Array<number>(n).fill(0);
  const last = new Array<number>(n).fill(0);
  let ports: WorkerPorts | null = null;
  const admins = new Array<number>(n).fill(0);
  let stopping = false;
  const log = (msg: string, extra: Record<string, unknown> = {}) =>
    process.stdout.write(`${JSON.stringify({ level: 30, time: new Date().toISOString(), pid: process.pid, ...extra, msg })}\n`);

  const fork = (index: number): Promise<WorkerPorts> => new Promise((resolve, reject) => {
    const env: Record<string, string> = { MESHLET_WORKER_INDEX: String(index) };
    if (ports) env.MESHLET_WORKER_PORTS = JSON.stringify({ ...ports, admin: adminPort === 0 ? 0 : adminPort + index });
    const w = cluster.fork(env);
    workers.set(index, w);
    let ready = false;
    w.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') { ready = true; admins[index] = m.ports.admin; resolve(m.ports); }
      else if (m.type === 'requests') totals[m.index] = m.total;
    });
    w.on('exit', (code, signal) => {
      workers.delete(index);
      if (!ready) { reject(new Error(`worker ${index} exited before it was ready (${signal ?? code})`)); return; }
      if (stopping) return;
      log('worker died; restarting it', { worker: index, code, signal });
      fork(index).catch((e) => log('worker restart failed', { worker: index, err: (e as Error).message }));
    });
  });

  try {
    const p0 = await fork(0);
    ports = p0;
    await Promise.all(Array.from({ length: n - 1 }, (_, i) => fork(i + 1)));
  } catch (e) {
    console.error(`meshlet proxy: ${(e as Error).message}`);
    for (const w of workers.values()) w.kill('SIGKILL');
    return 1;
  }
  log('meshlet proxy ready', { ports, workers: n, admin_ports: admins });

  const timer = setInterval(() => {
    const window = totals.map((t, i) => t - last[i]);
    for (let i = 0; i < n; i++) last[i] = totals[i];
    if (window.some((c) => c > 0)) log('worker skew', { requests: window, skew: Math.round(skew(window) * 100) / 100 });
  }, reportMs);
  timer.unref();

  const stop = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    for (const w of workers.values()) w.process.kill(sig);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => { for (const w of workers.values()) w.process.kill('SIGHUP'); });
  await new Promise<void>((resolve) => {
    const check = () => { if (stopping && workers.size === 0) resolve(); };
    cluster.on('exit', check);
  });
  clearInterval(timer);
  return 0;
}

/** In a worker: tell the primary we listen, then report request counts. */
export function reportToPrimary(index: number, ports: WorkerPorts, requests: () => number, everyMs: number): void {
  process.send!({ type: 'ready', index, ports } satisfies WorkerMessage);
  const t = setInterval(() => process.send!({ type: 'requests', index, total: requests() } satisfies WorkerMessage), everyMs);
  t.unref();
}
