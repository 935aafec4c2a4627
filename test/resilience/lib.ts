// Shared by the resilience tests: mesh YAML builders, a bounded concurrent driver and small
// readers for /stats and /clusters. Real loopback servers only (fixtures from ../helpers.ts).
import { request, type IncomingMessage } from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { send, type Reply } from '../helpers.ts';

export const HOST = 'ratings.default.svc.cluster.local';

/** One service `HOST` on port 9080 with the given endpoints, a DR and optionally a VS route. */
export function ratings(ports: number[], opts: { policy?: string; route?: string; vs?: boolean } = {}): string {
  let y = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  ports: [{ number: 9080, name: http }]
  endpoints: [${ports.map((p) => `{ address: 127.0.0.1, ports: { http: ${p} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
${opts.policy ?? ''}
`;
  if (opts.vs !== false && opts.route !== undefined) {
    y += `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  http:
    - route: [{ destination: { host: ${HOST} } }]
${opts.route}
`;
  }
  return y;
}

/** The stat prefix of the subset-less ratings cluster (Istio's `;` form). */
export const C = `cluster.outbound|9080||${HOST};`;

/** All of /stats as a map. */
export async function stats(adminPort: number): Promise<Map<string, number>> {
  const text = (await send(adminPort, { path: '/stats' })).body;
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const i = line.lastIndexOf(': ');
    if (i > 0) out.set(line.slice(0, i), Number(line.slice(i + 2)));
  }
  return out;
}

/** `loops` concurrent loops of `each` sequential calls; returns every reply in completion order. */
export async function drive(loops: number, each: number, call: () => Promise<Reply>): Promise<Reply[]> {
  const out: Reply[] = [];
  const loop = async () => { for (let i = 0; i < each; i++) out.push(await call()); };
  await Promise.all(Array.from({ length: loops }, loop));
  return out;
}

/** Poll `probe` every 50 ms until it returns true or `ms` elapse; returns whether it did. */
export async function until(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return probe();
}

export interface RawOutcome { status: number; complete: boolean; bytes: number; error: string | null }

/** A request that reports whether the response body completed, instead of rejecting on a reset. */
export function rawGet(port: number, host: string, path = '/'): Promise<RawOutcome> {
  return new Promise((resolve) => {
    let res: IncomingMessage | null = null;
    let bytes = 0;
    let settled = false;
    const done = (error: string | null) => {
      if (settled) return;
      settled = true;
      resolve({ status: res?.statusCode ?? 0, complete: res?.complete ?? false, bytes, error });
    };
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host } }, (r) => {
      res = r;
      r.on('data', (c: Buffer) => { bytes += c.length; });
      r.on('end', () => done(null));
      r.on('error', (e) => done(e.message));
      r.on('close', () => done(r.complete ? null : 'closed'));
    });
    req.on('error', (e) => done(e.message));
    req.end();
  });
}

/**
 * A loopback port whose connects hang: a child process listens with backlog 1, then blocks its
 * event loop (Atomics.wait, no CPU) so nothing is accepted; two filler connections fill the
 * kernel queue and further SYNs are dropped. Stop it with `close()`.
 */
export async function blackhole(blockMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, ['-e', `
const s = require('net').createServer();
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  process.stdout.write(String(s.address().port) + '\\n');
  setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${blockMs}), 20);
});`], { stdio: ['ignore', 'pipe', 'ignore'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('error', reject);
  });
  await new Promise((r) => setTimeout(r, 100)); // the child is blocked now
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) { const s = connect(port, '127.0.0.1'); s.on('error', () => {}); fillers.push(s); }
  await new Promise((r) => setTimeout(r, 50));
  return {
    port,
    close: async () => {
      for (const s of fillers) s.destroy();
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * An upstream in a child process, so it can really die: `kill()` SIGKILLs it (connections reset,
 * the port refuses), `restart()` starts it again on the same port. Answers 200 `<name>` to every
 * request.
 */
export interface KillableUpstream { readonly name: string; port: number; kill(): Promise<void>; restart(): Promise<void>; close(): Promise<void> }

export async function killableUpstream(name: string): Promise<KillableUpstream> {
  let child: ChildProcess | null = null;
  const start = (port: number) => new Promise<number>((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', `
const s = require('http').createServer((q, r) => { q.resume(); q.on('end', () => r.end(${JSON.stringify(name)})); });
s.listen({ port: ${port}, host: '127.0.0.1' }, () => process.stdout.write(String(s.address().port) + '\\n'));`], { stdio: ['ignore', 'pipe', 'inherit'] });
    child = c;
    c.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
    c.once('error', reject);
    c.once('exit', (code) => reject(new Error(`upstream ${name} exited (${code}) before listening`)));
  });
  const kill = async () => {
    const c = child;
    child = null;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  const u: KillableUpstream = {
    name, port: 0, kill,
    restart: async () => { await kill(); u.port = await start(u.port); },
    close: kill,
  };
  u.port = await start(0);
  return u;
}
