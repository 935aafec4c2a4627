// Shared test fixtures: real upstream servers and real proxies on loopback, port 0 everywhere.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy, type ProxyOptions, type RunningProxy } from '../proxy/main.ts';
import { compile } from '../proxy/config/compile.ts';
import { parseResourceText, ConfigError } from '../proxy/config/resources.ts';
import type { Snapshot } from '../proxy/config/schema.ts';
import { createLogger } from '../proxy/telemetry/log.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface Upstream { server: Server; port: number; hits: number; close(): Promise<void> }

/** A real HTTP server on 127.0.0.1:0 (or another loopback address/port) that counts requests. */
export async function startUpstream(handler: Handler, host = '127.0.0.1', port = 0): Promise<Upstream> {
  const u = { hits: 0 } as Upstream;
  const server = createServer((req, res) => { u.hits++; handler(req, res); });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((r, reject) => { server.once('error', reject); server.listen(port, host, () => r()); });
  u.server = server;
  u.port = (server.address() as { port: number }).port;
  u.close = () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); });
  return u;
}

/** An upstream that answers `body` (default: its own name) and echoes what it saw in headers. */
export function echo(name: string): Handler {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('x-upstream', name);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, bodyLength: Buffer.concat(chunks).length }));
    });
  };
}

export function snapshotFromYaml(yaml: string, version = '1'): Snapshot {
  const errors: string[] = [];
  const resources = parseResourceText('test.yaml', yaml, errors);
  if (errors.length) throw new ConfigError(errors);
  return compile(resources, { version, source: 'test' });
}

/** A ServiceEntry for `host` with one loopback endpoint per port, plus any `extra` YAML after it. */
export function serviceYaml(host: string, ports: number[], extra = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host} }
spec:
  hosts: [${host}]
  ports: [{ number: 80, name: http }]
  endpoints: [${ports.map((p) => `{ address: 127.0.0.1, ports: { http: ${p} } }`).join(', ')}]
${extra}`;
}

export function writeConfig(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-test-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** Start a real proxy in this process on port 0 listeners, config from YAML text. */
export async function proxyFor(yaml: string, opts: Partial<ProxyOptions> = {}): Promise<RunningProxy> {
  return startProxy({
    snapshot: snapshotFromYaml(yaml), outboundPort: 0, inboundPort: 0, adminPort: 0,
    logger: createLogger('silent'), ...opts,
  });
}

export interface Reply { status: number; headers: IncomingMessage['headers']; body: string }

/** One HTTP/1.1 request over a fresh connection (agent: false) so tests do not share sockets. */
export function send(port: number, opts: { host?: string; path?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', agent: false,
      headers: { ...(opts.host ? { host: opts.host } : {}), ...opts.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export async function getText(port: number, path: string): Promise<string> {
  return (await send(port, { path })).body;
}

/** Read one stat from the admin `/stats` text. */
export async function stat(adminPort: number, name: string): Promise<number | undefined> {
  const text = await getText(adminPort, '/stats');
  for (const line of text.split('\n')) {
    const i = line.lastIndexOf(': ');
    if (i > 0 && line.slice(0, i) === name) return Number(line.slice(i + 2));
  }
  return undefined;
}

/** Two-endpoint mesh YAML used by several tests. */
export function twoSubsetYaml(host: string, ports: { v1: number; v2: number }, extra = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host.split('.')[0]} }
spec:
  hosts: [${host}]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${ports.v1} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${ports.v2} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host.split('.')[0]} }
spec:
  host: ${host}
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
${extra}`;
}

/** A port with nothing listening (bound, then closed). */
export async function deadPort(): Promise<number> {
  const u = await startUpstream(() => {});
  const port = u.port;
  await u.close();
  return port;
}

/** The servers and proxies one test file starts; `closeAll()` (in afterAll) closes them, newest first. */
export class Fixtures {
  private closers: Array<() => Promise<void>> = [];
  add(close: () => Promise<void>): void { this.closers.push(close); }
  async upstream(handler: Handler, host?: string, port?: number): Promise<Upstream> {
    const u = await startUpstream(handler, host, port);
    this.add(() => u.close());
    return u;
  }
  async proxy(yaml: string, opts: Partial<ProxyOptions> = {}): Promise<RunningProxy> {
    const p = await proxyFor(yaml, opts);
    this.add(() => p.drain(100));
    return p;
  }
  async closeAll(): Promise<void> {
    for (const c of this.closers.splice(0).reverse()) await c();
  }
}

export interface ProxyProcess {
  child: import('node:child_process').ChildProcess;
  ports: { outbound: number; inbound: number; admin: number };
  /** The parsed ready line. */
  line: Record<string, unknown>;
  output(): string;
  /** SIGKILL if still running; resolves when it has exited. */
  stop(): Promise<void>;
}

export interface SpawnedProxy {
  child: import('node:child_process').ChildProcess;
  output(): string;
  /** The parsed ready line, or null when the process exited first (`code`). */
  line: Record<string, unknown> | null;
  code: number | null;
  /** SIGKILL if still running; resolves when it has exited. */
  stop(): Promise<void>;
}

/**
 * `meshlet proxy ARGS` as its own process (OTEL_* variables of the test runner left out, `extraEnv`
 * added); resolves at its ready line or its exit, whichever comes first within `ms`.
 */
export async function spawnProxy(args: string[], ms = 15_000, extraEnv: Record<string, string> = {}): Promise<SpawnedProxy> {
  const { spawn } = await import('node:child_process');
  const bin = new URL('../bin/meshlet.js', import.meta.url).pathname;
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_'))), ...extraEnv };
  const child = spawn(process.execPath, [bin, 'proxy', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout!.on('data', (c) => { out += c; });
  child.stderr!.on('data', (c) => { out += c; });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const line = out.split('\n').find((l) => l.includes('"meshlet proxy ready"'));
    if (line) return { child, output: () => out, line: JSON.parse(line), code: null, stop };
    if (child.exitCode !== null) return { child, output: () => out, line: null, code: child.exitCode, stop };
    await new Promise((r) => setTimeout(r, 25));
  }
  await stop();
  throw new Error(`proxy neither ready nor exited: ${out}`);
}

/** `meshlet proxy` on port 0 listeners; resolves at its ready line (throws if it exits first). */
export async function startProxyProcess(args: string[]): Promise<ProxyProcess> {
  const p = await spawnProxy(['--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', ...args]);
  if (p.line === null) throw new Error(`proxy exited ${p.code}: ${p.output()}`);
  return { child: p.child, ports: p.line.ports as ProxyProcess['ports'], line: p.line, output: p.output, stop: p.stop };
}

/** `node ARGS` as a child process (stdin closed), SIGKILLed after `killAfterMs`: its exit code and output. */
export async function runNode(args: string[], o: { env?: NodeJS.ProcessEnv; killAfterMs?: number } = {}): Promise<{ code: number | null; out: string; err: string }> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
    let out = '', err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), o.killAfterMs ?? 60_000);
    c.on('exit', (code) => { clearTimeout(t); resolve({ code, out, err }); });
  });
}
