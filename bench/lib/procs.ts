// Child processes for the bench: start, wait for their JSON "ready" line, read CPU and memory
// from /proc, stop. Everything binds 127.0.0.1.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';

export interface Proc { name: string; child: ChildProcess; pid: number; port: number; stop(): Promise<void> }

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return n > 0 ? n : 100;
})();

/** utime + stime of a process in microseconds (/proc/<pid>/stat fields 14 and 15). */
export function cpuMicros(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}

/** CPU of a process and all its descendants (nginx/haproxy workers), in microseconds. */
export function treeCpuMicros(pid: number): number {
  let total = cpuMicros(pid);
  for (const c of children(pid)) total += treeCpuMicros(c);
  return total;
}

function children(pid: number): number[] {
  try { return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number); } catch { return []; }
}

export function memKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

export function treeRssKb(pid: number): number {
  let total = memKb(pid, 'VmRSS');
  for (const c of children(pid)) total += treeRssKb(c);
  return total;
}

export function which(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (dir && existsSync(`${dir}/${bin}`)) return `${dir}/${bin}`;
  }
  return null;
}

/**
 * Start `cmd args`; resolve once `ready(line)` returns a port for a stdout/stderr line (or, with
 * `probePort`, once that port accepts connections).
 */
export async function startProc(name: string, cmd: string, args: string[], opts: { ready?: (line: string) => number | null; probePort?: number; timeoutMs?: number } = {}): Promise<Proc> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after ${opts.timeoutMs ?? 15000} ms: ${out.slice(-500)}`)), opts.timeoutMs ?? 15_000);
    const onData = (d: Buffer) => {
      out += d;
      if (!opts.ready) return;
      for (const line of out.split('\n')) {
        const p = opts.ready(line);
        if (p) { clearTimeout(timer); resolve(p); return; }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${name} exited ${code}: ${out.slice(-800)}`)); });
    if (opts.probePort) {
      const probe = async () => {
        const net = await import('node:net');
        for (;;) {
          const ok = await new Promise<boolean>((r) => { const s = net.connect(opts.probePort!, '127.0.0.1'); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
          if (ok) { clearTimeout(timer); resolve(opts.probePort!); return; }
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      void probe();
    }
  });
  child.removeAllListeners('exit');
  return {
    name, child, pid: child.pid!, port,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => { clearTimeout(t); resolve(); });
      child.kill('SIGTERM');
    }),
  };
}

export const jsonPort = (line: string): number | null => {
  if (!line.startsWith('{')) return null;
  try { const j = JSON.parse(line); return j.ports?.outbound ?? j.port ?? null; } catch { return null; }
};
