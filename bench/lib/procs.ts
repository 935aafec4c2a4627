// Child processes for the bench: start, wait for their JSON "ready" line, read CPU and memory
// from /proc, stop. Everything binds 127.0.0.1.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Proc { name: string; child: ChildProcess; pid: number; port: number; readyLine: string; stop(): Promise<void> }

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

/**
 * `RssAnon` is the private part of VmRSS (heap, stacks, buffers); the rest (`RssFile`) is mostly the
 * executable's pages, shared by every process running the same binary (two sidecars on a node).
 */
export function memKb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon'): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** A memory field summed over a process and its descendants (nginx's master + worker). */
export function treeMemKb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon'): number {
  let total = memKb(pid, field);
  for (const c of children(pid)) total += treeMemKb(c, field);
  return total;
}

/**
 * Fill Node's compile cache for the meshlet checkouts a run starts (this one, $MESHLET_BEFORE),
 * so every meshlet arm starts warm: a cold start keeps ~35 MB more RSS (the TypeScript stripper),
 * and only the first arm to run would pay it. Uses this checkout's bin/warm-compile-cache.js.
 */
export function warmCompileCache(roots: Array<string | null | undefined>, log: (s: string) => void): void {
  const script = new URL('../../bin/warm-compile-cache.js', import.meta.url).pathname;
  for (const root of roots) {
    if (!root) continue;
    const r = spawnSync(process.execPath, [script, root], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) log(`compile cache for ${root} not warmed: ${(r.stderr || r.error?.message || '').trim().split('\n')[0]}`);
  }
}

/**
 * The environment of a Node reference peer (bench/peers): Node's compile cache on, in a directory
 * of its own, so a peer starts as warm as a meshlet arm. Without it, each peer start type-strips
 * its TypeScript and keeps the stripper: 68 MB RSS / 23 MB private idle for tcp-pipe, against
 * 49 / 9 warm (a bare Node with one listening socket is 45 / 9).
 */
export function peerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, NODE_COMPILE_CACHE: join(tmpdir(), 'meshlet-bench-peer-cache') };
}

/** Fill that cache: each peer run with `--warm` loads its modules and exits (bench/peers/args.ts). */
export function warmPeers(files: string[], log: (s: string) => void): void {
  for (const file of files) {
    const r = spawnSync(process.execPath, [file, '--warm'], { encoding: 'utf8', timeout: 60_000, env: peerEnv() });
    if (r.status !== 0) log(`compile cache for ${file} not warmed: ${(r.stderr || r.error?.message || '').trim().split('\n')[0]}`);
  }
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
export async function startProc(name: string, cmd: string, args: string[], opts: { ready?: (line: string) => number | null; probePort?: number; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Proc> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const limit = opts.timeoutMs ?? 15_000;
  let out = '';        // kept for error messages until ready; the pipes are drained afterwards
  let settled = false;
  let readyLine = '';
  const stop = () => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const done = (err: Error | null, port = 0) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err); else resolve(port);
      };
      const timer = setTimeout(() => done(new Error(`${name}: not ready after ${limit} ms: ${out.slice(-500)}`)), limit);
      let partial = '';
      const onData = (d: Buffer) => {
        if (settled) return;
        out += d;
        if (!opts.ready) return;
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          const p = opts.ready(line);
          if (p) { readyLine = line; done(null, p); return; }
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('error', (e) => done(new Error(`${name}: ${e.message}`)));
      child.once('exit', (code, sig) => done(new Error(`${name} exited ${code ?? sig}: ${out.slice(-800)}`)));
      if (opts.probePort) {
        // Poll until the port accepts a connection; stops when ready, failed or timed out.
        const probe = async () => {
          const net = await import('node:net');
          while (!settled) {
            const ok = await new Promise<boolean>((r) => { const s = net.connect(opts.probePort!, '127.0.0.1'); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
            if (ok) { done(null, opts.probePort!); return; }
            await new Promise((r) => setTimeout(r, 50));
          }
        };
        void probe();
      }
    });
    return { name, child, pid: child.pid!, port, readyLine, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export const jsonPort = (line: string): number | null => {
  if (!line.startsWith('{')) return null;
  try { const j = JSON.parse(line); return j.ports?.outbound ?? j.port ?? null; } catch { return null; }
};
