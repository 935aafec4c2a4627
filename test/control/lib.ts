// Fixtures for control-plane tests: real `meshlet` child processes, a bounded load loop and a
// config directory in a temp dir. Port 0 everywhere; everything started is recorded for cleanup.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;

export interface Child { child: ChildProcess; ports: Record<string, number>; output: () => string }

export const children: ChildProcess[] = [];

/** Start `meshlet <args>` and wait for its ready line ("meshlet proxy ready" / "meshlet control ready"). */
export async function startMeshlet(args: string[], ready: string, timeoutMs = 15_000): Promise<Child> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (c) => { out += c; });
  child.stderr!.on('data', (c) => { out += c; });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const line = out.split('\n').find((l) => l.includes(`"${ready}"`));
    if (line) return { child, ports: JSON.parse(line).ports, output: () => out };
    if (child.exitCode !== null) throw new Error(`meshlet ${args[0]} exited ${child.exitCode}: ${out}`);
    await sleep(25);
  }
  throw new Error(`meshlet ${args[0]} not ready: ${out}`);
}

/**
 * Run `meshlet ctl <args>` as a child without blocking the event loop (an in-process control
 * server must keep answering it). Killed after `timeoutMs`.
 */
export function ctlRun(args: string[], timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, 'ctl', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d) => { stdout += d; });
    c.stderr!.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

export function sleep(ms: number): Promise<void> { return new Promise((r) => setTimeout(r, ms)); }

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) { last = e; }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export function exited(c: ChildProcess): Promise<number | null> {
  // A child killed by a signal has exitCode null and signalCode set: it has exited too.
  return c.exitCode !== null || c.signalCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once('exit', (code) => r(code)));
}

export function configDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-control-'));
  for (const [f, t] of Object.entries(files)) writeFileSync(join(dir, f), t);
  return dir;
}

export async function httpJson(port: number, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    const r = request({ host: '127.0.0.1', port, method, path, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(token ? { authorization: `Bearer ${token}` } : {}) } }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => { let json: any; try { json = JSON.parse(b); } catch { json = b; } resolve({ status: res.statusCode!, json }); });
    });
    r.on('error', reject);
    r.end(text);
  });
}

export interface LoadResult { total: number; failed: number; errors: string[]; by: Record<string, number> }

/**
 * `count` requests for `host` through a proxy's outbound port, `concurrency` at a time over
 * keep-alive connections, stopped at `deadlineMs` whatever the count. Counts answers by the
 * upstream's x-upstream header; anything but a 200 is a failure.
 */
export async function load(port: number, host: string, count: number, opts: { concurrency?: number; deadlineMs?: number; during?: (completed: () => number) => Promise<void> } = {}): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 16 });
  const res: LoadResult = { total: 0, failed: 0, errors: [], by: {} };
  const deadline = Date.now() + (opts.deadlineMs ?? 20_000);
  let next = 0;
  const one = () => new Promise<void>((resolve) => {
    const r = request({ host: '127.0.0.1', port, path: '/', agent, headers: { host } }, (rs) => {
      rs.resume();
      rs.on('end', () => {
        res.total++;
        if (rs.statusCode !== 200) { res.failed++; if (res.errors.length < 5) res.errors.push(`status ${rs.statusCode} ${rs.headers['x-envoy-response-flags'] ?? ''}`); }
        else { const u = String(rs.headers['x-upstream']); res.by[u] = (res.by[u] ?? 0) + 1; }
        resolve();
      });
    });
    r.on('error', (e) => { res.total++; res.failed++; if (res.errors.length < 5) res.errors.push(e.message); resolve(); });
    r.end();
  });
  const worker = async () => { while (next < count && Date.now() < deadline) { next++; await one(); } };
  const during = opts.during ? opts.during(() => res.total) : Promise.resolve();
  await Promise.all([...Array.from({ length: opts.concurrency ?? 16 }, worker), during]);
  agent.destroy();
  return res;
}

export const MESH = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: 50 }
        - { destination: { host: reviews, subset: v2 }, weight: 50 }
`;
