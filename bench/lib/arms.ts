// The arms of the benchmark: what is measured, each started as its own process(es).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonPort, peerEnv, startProc, which, type Proc } from './procs.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = process.execPath;
export const HOST = 'upstream.bench';
/** A reference peer's entry file (bench/peers). */
export const peerFile = (file: string): string => join(ROOT, 'bench/peers', file);

export interface Arm {
  name: string;
  about: string;
  /** Why it cannot run here, or null. */
  skip(): string | null;
  start(upstreams: { a: number; b: number }, dir: string): Promise<Proc>;
  /** The Node peer files it starts, whose compile cache the run fills first (procs.ts warmPeers). */
  peers?: string[];
}

export function realisticYaml(a: number, b: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: upstream }
spec:
  hosts: [${HOST}]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${a} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${b} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: upstream }
spec:
  host: ${HOST}
  trafficPolicy:
    connectionPool: { tcp: { maxConnections: 1000 }, http: { http1MaxPendingRequests: 1000, maxRetries: 3 } }
    outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: upstream }
spec:
  hosts: [${HOST}]
  http:
    - match: [{ headers: { x-canary: { exact: "always" } } }]
      route: [{ destination: { host: ${HOST}, subset: v2 } }]
    - route:
        - { destination: { host: ${HOST}, subset: v1 }, weight: 80 }
        - { destination: { host: ${HOST}, subset: v2 }, weight: 20 }
      retries: { attempts: 2, retryOn: "connect-failure,reset" }
`;
}

export function minimalYaml(a: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: upstream }
spec:
  hosts: [${HOST}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${a} } }]
`;
}

// The proxy's contract: one JSON line with msg "meshlet proxy ready" and the bound ports.
function meshletPorts(line: string): { outbound: number; admin: number } | null {
  if (!line.includes('"meshlet proxy ready"')) return null;
  try {
    const j = JSON.parse(line) as { ports?: { outbound?: number; admin?: number } };
    return j.ports?.outbound && j.ports.admin ? { outbound: j.ports.outbound, admin: j.ports.admin } : null;
  } catch { return null; }
}
const meshletReady = (line: string) => meshletPorts(line)?.outbound ?? null;

/** A meshlet sidecar arm: `extra` are proxy flags, `nodeFlags` go to node before bin/meshlet.js (e.g. V8 flags). */
export function meshlet(name: string, about: string, yaml: (a: number, b: number) => string, extra: string[] = [], root = (): string | null => ROOT, nodeFlags: string[] = []): Arm {
  return {
    name, about, skip: () => (root() === null ? 'set MESHLET_BEFORE=<checkout of an earlier meshlet> to compare against it in the same run' : null),
    async start(u, dir) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, yaml(u.a, u.b));
      // A tracing endpoint inherited from the environment would turn tracing on in every arm.
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
      const p = await startProc(name, NODE, [...nodeFlags, join(root()!, 'bin/meshlet.js'), 'proxy', '--config', file, '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0',
        '--log-level', 'warn', '--access-log', 'off', ...extra], { ready: meshletReady, env });
      try {
        // The contract: admin /ready answers 200 once the proxy serves.
        const r = await fetch(`http://127.0.0.1:${meshletPorts(p.readyLine)!.admin}/ready`, { signal: AbortSignal.timeout(3000) });
        await r.arrayBuffer();
        if (r.status !== 200) throw new Error(`admin /ready answered ${r.status}`);
      } catch (e) {
        await p.stop();
        throw e;
      }
      return p;
    },
  };
}

function nodePeer(name: string, about: string, file: string): Arm {
  return {
    name, about, skip: () => null, peers: [peerFile(file)],
    start: (u) => startProc(name, NODE, [peerFile(file), '--port', '0', '--upstream', `127.0.0.1:${u.a}`], { ready: jsonPort, env: peerEnv() }),
  };
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); }); });
}

export function allArms(): Arm[] {
  return [
    { name: 'direct', about: 'no proxy', skip: () => null, start: async (u) => ({ name: 'direct', child: null as never, pid: 0, port: u.a, readyLine: '', stop: async () => {} }) },
    meshlet('meshlet-realistic', 'header match + 80/20 split + pool limits + outlier detection + retries, metrics on', realisticYaml),
    meshlet('meshlet-minimal', 'one ServiceEntry, default routing', (a) => minimalYaml(a)),
    meshlet('meshlet-tracing-1pct', 'realistic + tracing at 1 % sampling (OTLP to a dead local collector)', realisticYaml, ['--trace-sampling', '0.01', '--trace-endpoint', 'http://127.0.0.1:9/v1/traces']),
    meshlet('meshlet-accesslog-errors', 'realistic + access log for errors only', realisticYaml, ['--access-log', 'errors']),
    meshlet('meshlet-realistic-2w', 'realistic, --workers 2 (SO_REUSEPORT)', realisticYaml, ['--workers', '2']),
    meshlet('meshlet-before', 'realistic, run from the checkout in $MESHLET_BEFORE (before/after in one run)', realisticYaml, [], () => process.env.MESHLET_BEFORE ?? null),
    nodePeer('tcp-pipe', 'reference: bytes copied between sockets, no HTTP (the floor of a Node proxy)', 'tcp-pipe.ts'),
    nodePeer('undici-dispatch', 'http.createServer + undici Pool.dispatch (~40 lines)', 'undici-dispatch.ts'),
    nodePeer('reply-from', 'fastify + @fastify/reply-from', 'reply-from.ts'),
    nodePeer('http-proxy', 'node-http-proxy with a keep-alive agent', 'http-proxy.ts'),
    {
      name: 'nginx', about: 'nginx, 1 worker, upstream keepalive',
      skip: () => (which('nginx') ? null : 'nginx is not installed (apt-get install nginx-light)'),
      async start(u, dir) {
        const port = await freePort();
        const conf = join(dir, 'nginx.conf');
        writeFileSync(conf, `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; upstream up { server 127.0.0.1:${u.a}; keepalive 128; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; } } }
`);
        return startProc('nginx', which('nginx')!, ['-c', conf, '-p', dir], { probePort: port });
      },
    },
    {
      name: 'haproxy', about: 'haproxy, 1 thread',
      skip: () => (which('haproxy') ? null : 'haproxy is not installed (apt-get install haproxy)'),
      async start(u, dir) {
        const port = await freePort();
        const conf = join(dir, 'haproxy.cfg');
        writeFileSync(conf, `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:${u.a}
`);
        return startProc('haproxy', which('haproxy')!, ['-f', conf, '-db'], { probePort: port });
      },
    },
  ];
}

export function scratchDir(): string { return mkdtempSync(join(tmpdir(), 'meshlet-bench-')); }
