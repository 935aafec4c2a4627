// `meshlet proxy`: flags -> startProxy, signals (SIGHUP reload, SIGTERM/SIGINT drain). It lives
// in cli/, not proxy/: it is the one caller of the composition root (proxy/main.ts), and nothing
// under proxy/ may import that (test/unit/layering.test.ts).
import { FlagError, helpText, parseFlags, type FlagSpec } from './flags.ts';
import { ConfigError } from '../proxy/config/resources.ts';
import { startProxy, DEFAULT_PROXY_OPTIONS as D } from '../proxy/main.ts';
import type { AccessLogMode } from '../proxy/telemetry/log.ts';
import type { IdentifierConfig } from '../proxy/dtab/index.ts';
import { startMemoryGuard } from '../proxy/telemetry/memory.ts';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { startControlClient } from '../proxy/xds/client.ts';

const SPECS: FlagSpec[] = [
  { name: 'config', type: 'string', help: 'resource file or directory (Istio-shaped YAML)' },
  { name: 'control', type: 'string', help: 'control server URL (http://host:15010, or host:15010); with --config: start from the file, then follow control' },
  { name: 'node-id', type: 'string', help: 'this proxy\'s id at the control server (default <hostname>-<pid>)' },
  { name: 'control-token-file', type: 'string', help: 'file holding the bearer token for the control server' },
  { name: 'advertise-address', type: 'string', help: "address registered for the app's endpoint (default: --bind, or 127.0.0.1 when binding all addresses)" },
  { name: 'register', type: 'boolean', default: true, help: "with --control, --service and --app-port: register the app's endpoint (--register=false under Kubernetes discovery: the EndpointSlices are the endpoints)" },
  { name: 'report-interval', type: 'number', default: 5, help: 'seconds between per-edge traffic reports to the control server' },
  { name: 'outbound-port', type: 'number', default: D.outboundPort, help: 'outbound listener port (0 = pick one)' },
  { name: 'inbound-port', type: 'number', default: D.inboundPort, help: 'inbound listener port (0 = pick one)' },
  { name: 'admin-port', type: 'number', default: D.adminPort, help: 'admin port (0 = pick one)' },
  { name: 'app-port', type: 'number', help: 'the local app behind the inbound listener (127.0.0.1:<port>)' },
  { name: 'app-protocol', type: 'string', default: 'client', help: "client (each request in the protocol it came in: HTTP/2 and gRPC callers reach the app over h2c) | http1 | http2" },
  { name: 'bind', type: 'string', default: D.bind, help: 'address the listeners bind' },
  { name: 'inbound-bind', type: 'string', help: 'address of the inbound listener only (default: --bind); in a pod 0.0.0.0 while outbound and admin stay on 127.0.0.1' },
  { name: 'health-port', type: 'number', help: 'serve GET /healthz/ready (only) on this port for kubelet probes (Istio: 15021)' },
  { name: 'health-bind', type: 'string', default: '0.0.0.0', help: 'address of the health port' },
  { name: 'service', type: 'string', help: 'the service this sidecar fronts' },
  { name: 'labels', type: 'string', help: "labels of this sidecar's app, e.g. 'version=v2,team=a'" },
  { name: 'namespace', type: 'string', help: "the workload's namespace (default: env POD_NAMESPACE, else 'default'): short names like 'reviews' resolve in it; its identity and which policies apply" },
  { name: 'log-level', type: 'string', default: D.logLevel, help: 'trace|debug|info|warn|error|silent' },
  { name: 'access-log', type: 'string', default: D.accessLog, help: 'off | errors (status >= 500 or any flag) | all' },
  { name: 'watch', type: 'boolean', default: false, help: 're-read the config when the file or directory changes' },
  { name: 'drain-timeout', type: 'number', default: D.drainTimeoutMs / 1000, help: 'seconds in-flight requests and keep-alive clients get on SIGTERM (responses say Connection: close meanwhile)' },
  { name: 'stream-idle-timeout', type: 'number', default: D.streamIdleTimeoutMs / 1000, help: "seconds a request may see no bytes either way before it is ended (408, flag SI; Envoy's stream_idle_timeout); 0 = never" },
  { name: 'max-request-bytes', type: 'number', default: D.maxRequestBytes, help: 'largest request body accepted (413 above it, also for chunked bodies); 0 = no limit' },
  { name: 'trust-envoy-headers', type: 'boolean', default: false, help: 'honour x-envoy-* timeout/retry headers from callers' },
  { name: 'shadow-host-suffix', type: 'boolean', default: false, help: "append '-shadow' to mirrored Host (Istio < 1.28 behaviour)" },
  { name: 'max-active-faults', type: 'number', help: "most requests a fault (delay or abort) may be active on at once; beyond it no fault is injected (fault.faults_overflow; Envoy's max_active_faults; default: no limit, as Istio)" },
  { name: 'legacy-stat-names', type: 'boolean', default: false, help: "cluster stat names without Istio's ';' (Istio < 1.23)" },
  { name: 'retry-budget-ratio', type: 'number', help: 'turn on a rate budget for retries: at most this fraction of the requests of the last 10 s (Linkerd retryRatio; default none, as Istio)' },
  { name: 'retry-budget-min-per-second', type: 'number', help: 'with a rate budget: retries always allowed per second (default 10)' },
  { name: 'identifier', type: 'string', help: "how requests are named: header-token[:<header>] (default, Host), method-and-host[:uri], path[:<segments>][:consume], header[:<header>] (Linkerd's identifiers)" },
  { name: 'dst-prefix', type: 'string', default: '/svc', help: 'prefix of the logical names the identifier makes' },
  { name: 'edge', type: 'boolean', default: false, help: 'this proxy faces clients outside the mesh: l5d-* headers are stripped unread (see --dtab-headers)' },
  { name: 'dtab-headers', type: 'string', help: 'trust | strip the l5d-dtab / l5d-ctx-dtab headers (default: trust; strip with --edge)' },
  { name: 'inbound-dtab-headers', type: 'string', help: 'trust | strip l5d-dtab headers arriving on the inbound listener (default: as --dtab-headers; injected pods: strip)' },
  { name: 'trace-sampling', type: 'number', default: D.traceSampling, help: 'sampling ratio for requests with no incoming trace (parent-based otherwise)' },
  { name: 'trace-endpoint', type: 'string', help: 'OTLP/HTTP traces URL (else OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT; tracing is off when none is set)' },
  { name: 'workers', type: 'number', default: 1, help: 'proxy processes sharing the ports with SO_REUSEPORT; --admin-port is the primary\'s (/ready, /workers, /stats and /stats/prometheus for all workers), each worker\'s admin port is picked by the kernel (listed in /workers)' },
  { name: 'max-request-headers-kb', type: 'number', default: D.maxRequestHeadersKb, help: 'request head size limit (431 above it)' },
  { name: 'zone', type: 'string', help: "this proxy's zone (topology.kubernetes.io/zone): with an outlierDetection block, same-zone endpoints are preferred (Istio locality failover)" },
  { name: 'region', type: 'string', help: "this proxy's region (topology.kubernetes.io/region), for locality failover" },
  { name: 'service-account', type: 'string', help: "the workload's service account (env SERVICE_ACCOUNT). With --control, the proxy gets a certificate for spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> from the control server's CA (development mode: the bootstrap token is the credential) and speaks mTLS to sidecars" },
  { name: 'trust-domain', type: 'string', default: 'cluster.local', help: 'SPIFFE trust domain' },
  { name: 'cert-ttl', type: 'number', default: 24, help: 'hours of workload certificate asked for (renewed at half life)' },
  { name: 'num-trusted-proxies', type: 'number', default: 0, help: "X-Forwarded-For hops trusted for remote.ip / remoteIpBlocks (Istio's numTrustedProxies)" },
  { name: 'ext-authz-providers', type: 'string', help: 'JSON file: a list of {name, service, pathPrefix, timeoutMs, failOpen, statusOnError, includeRequestHeadersInCheck, headersToUpstreamOnAllow, headersToDownstreamOnDeny} for CUSTOM AuthorizationPolicies' },
  { name: 'dns-refresh-rate', type: 'number', default: 5, help: 'seconds between re-resolutions of ServiceEntry resolution: DNS names (Envoy dns_refresh_rate)' },
];

function inboundDtab(v: string | undefined): 'trust' | 'strip' | undefined {
  if (v === undefined) return undefined;
  if (v !== 'trust' && v !== 'strip') throw new FlagError('--inbound-dtab-headers must be trust or strip');
  return v;
}

function maxActiveFaults(n: number | undefined): number {
  if (n === undefined) return Infinity;
  if (!Number.isInteger(n) || n < 0) throw new FlagError(`--max-active-faults: must be a whole number >= 0, got ${n}`);
  return n;
}

function dnsRefreshMs(seconds: number): number {
  if (!Number.isFinite(seconds) || seconds < 0.01) throw new FlagError(`--dns-refresh-rate: must be a number of seconds >= 0.01, got ${seconds}`);
  return seconds * 1000;
}

/**
 * The control token file, re-read when it changes (a projected service-account token is rotated
 * by the kubelet); the first read fails loudly, a later unreadable moment keeps the last token.
 */
function tokenReader(file: string): () => string {
  let last = readFileSync(file, 'utf8').trim();
  let checked = Date.now();
  return () => {
    if (Date.now() - checked < 10_000) return last;
    checked = Date.now();
    try { last = readFileSync(file, 'utf8').trim() || last; } catch { /* keep the last token */ }
    return last;
  };
}

export function parseLabels(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!s) return out;
  for (const part of s.split(',')) {
    const [k, ...v] = part.split('=');
    if (!k.trim() || v.length === 0) throw new FlagError(`--labels: expected key=value, got '${part}'`);
    out[k.trim()] = v.join('=').trim();
  }
  return out;
}

/** `--retry-budget-*` -> the rate budget, or null when neither flag is given (Istio has none). */
export function retryBudget(ratio: number | undefined, minPerSecond: number | undefined): { ratio: number; minPerSecond: number } | null {
  if (ratio === undefined && minPerSecond === undefined) return null;
  const r = ratio ?? 0.2;
  const m = minPerSecond ?? 10;
  if (!(r >= 0) || !(m >= 0)) throw new FlagError('--retry-budget-ratio and --retry-budget-min-per-second must be >= 0');
  return { ratio: r, minPerSecond: m };
}

/** `--identifier` -> Linkerd identifier config. */
export function parseIdentifier(s: string | undefined): IdentifierConfig | undefined {
  if (!s) return undefined;
  const [kind, ...args] = s.split(':');
  switch (kind) {
    case 'header-token': return { kind: 'io.l5d.header.token', ...(args[0] ? { header: args[0] } : {}) };
    case 'header': return { kind: 'io.l5d.header', ...(args[0] ? { header: args[0] } : {}) };
    case 'method-and-host': return { kind: 'io.l5d.methodAndHost', httpUriInDst: args[0] === 'uri' };
    case 'path': {
      const n = args[0] && /^\d+$/.test(args[0]) ? Number(args[0]) : 1;
      if (n < 1) throw new FlagError('--identifier path:<segments>: segments must be >= 1');
      return { kind: 'io.l5d.path', segments: n, consume: args.includes('consume') };
    }
    default: throw new FlagError(`--identifier: unknown identifier '${kind}' (header-token, method-and-host, path, header)`);
  }
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try {
    p = parseFlags(argv, SPECS);
  } catch (e) {
    console.error(`meshlet proxy: ${(e as Error).message}`);
    return 2;
  }
  if (p.help) { console.log(helpText('meshlet proxy --config <file|dir> [flags]', 'Run the sidecar: outbound and inbound listeners and the admin port.', SPECS)); return 0; }
  const f = p.flags;
  const accessLog = String(f['access-log']);
  if (!['off', 'errors', 'all'].includes(accessLog)) { console.error(`meshlet proxy: --access-log must be off, errors or all`); return 2; }
  const dtabHeaders = (f['dtab-headers'] as string | undefined) ?? (f.edge ? 'strip' : 'trust');
  if (dtabHeaders !== 'trust' && dtabHeaders !== 'strip') { console.error('meshlet proxy: --dtab-headers must be trust or strip'); return 2; }
  if (!f.config && !f.control) { console.error('meshlet proxy: --config <file|dir> or --control <url> is required'); return 2; }
  for (const n of ['stream-idle-timeout', 'max-request-bytes', 'drain-timeout']) {
    const v = f[n] as number;
    if (!Number.isFinite(v) || v < 0) { console.error(`meshlet proxy: --${n} must be a number >= 0`); return 2; }
  }
  const nWorkers = f.workers as number;
  if (!Number.isInteger(nWorkers) || nWorkers < 1 || nWorkers > 64) { console.error('meshlet proxy: --workers must be an integer from 1 to 64'); return 2; }
  let worker: { index: number; ports: import('../proxy/workers.ts').WorkerPorts | null } | null = null;
  if (nWorkers > 1) {
    const w = await import('../proxy/workers.ts');
    const index = w.workerIndex();
    if (index === null) {
      return w.runPrimary({
        workers: nWorkers, bind: f.bind as string, reportMs: 10_000,
        ports: { outbound: f['outbound-port'] as number, inbound: f['inbound-port'] as number, admin: f['admin-port'] as number },
      });
    }
    worker = { index, ports: w.workerPorts() };
  }
  const namespace = (f.namespace as string | undefined) ?? (process.env.POD_NAMESPACE || undefined);
  const serviceAccount = (f['service-account'] as string | undefined) ?? process.env.SERVICE_ACCOUNT;
  // Re-read when it changes: a projected service-account token is rotated by the kubelet.
  const controlToken = f['control-token-file'] ? tokenReader(f['control-token-file'] as string) : undefined;
  let identity: import('../proxy/identity/identity.ts').Identity | undefined;
  let proxy;
  try {
    const nTrusted = f['num-trusted-proxies'] as number;
    if (!Number.isInteger(nTrusted) || nTrusted < 0) throw new FlagError('--num-trusted-proxies must be a whole number >= 0');
    if (f['service-account'] && !f.control) throw new FlagError('--service-account needs --control: the certificate for the identity comes from the control server\'s CA');
    if (serviceAccount && f.control) {
      // The key is made here; only the CSR goes to the control server's CA.
      const { Identity, controlCertSource } = await import('../proxy/identity/identity.ts');
      const url = String(f.control).startsWith('http') ? String(f.control) : `http://${String(f.control)}`;
      const hours = f['cert-ttl'] as number;
      if (!(hours > 0)) throw new FlagError('--cert-ttl must be > 0');
      identity = await Identity.start({
        namespace: namespace ?? 'default', serviceAccount, trustDomain: f['trust-domain'] as string,
        source: controlCertSource(url, controlToken), ttlMs: hours * 3600_000,
      });
    }
    proxy = await startProxy({
      namespace, serviceAccount, identity, numTrustedProxies: nTrusted,
      extAuthzProviders: f['ext-authz-providers'] ? JSON.parse(readFileSync(f['ext-authz-providers'] as string, 'utf8')) : undefined,
      config: f.config as string | undefined,
      outboundPort: worker?.ports?.outbound ?? f['outbound-port'] as number, inboundPort: worker?.ports?.inbound ?? f['inbound-port'] as number,
      adminPort: worker?.ports?.admin ?? f['admin-port'] as number, reusePort: worker !== null,
      readyMessage: worker !== null ? `meshlet worker ${worker.index} ready` : undefined,
      appPort: f['app-port'] as number | undefined, appProtocol: appProtocol(f['app-protocol'] as string), bind: f.bind as string,
      inboundBind: f['inbound-bind'] as string | undefined, healthPort: f['health-port'] as number | undefined, healthBind: f['health-bind'] as string,
      service: f.service as string | undefined, labels: parseLabels(f.labels as string | undefined),
      logLevel: f['log-level'] as string, accessLog: accessLog as AccessLogMode, watch: f.watch as boolean,
      drainTimeoutMs: (f['drain-timeout'] as number) * 1000, trustEnvoyHeaders: f['trust-envoy-headers'] as boolean,
      shadowHostSuffix: f['shadow-host-suffix'] as boolean, legacyStatNames: f['legacy-stat-names'] as boolean,
      retryBudget: retryBudget(f['retry-budget-ratio'] as number | undefined, f['retry-budget-min-per-second'] as number | undefined),
      maxRequestHeadersKb: f['max-request-headers-kb'] as number,
      streamIdleTimeoutMs: (f['stream-idle-timeout'] as number) * 1000, maxRequestBytes: f['max-request-bytes'] as number,
      traceSampling: f['trace-sampling'] as number, traceEndpoint: f['trace-endpoint'] as string | undefined,
      dtabHeaders, inboundDtabHeaders: inboundDtab(f['inbound-dtab-headers'] as string | undefined), identifier: parseIdentifier(f.identifier as string | undefined), dstPrefix: f['dst-prefix'] as string,
      dnsRefreshMs: dnsRefreshMs(f['dns-refresh-rate'] as number),
      locality: f.zone !== undefined || f.region !== undefined ? { zone: (f.zone as string | undefined) ?? '', region: (f.region as string | undefined) ?? '' } : undefined,
      maxActiveFaults: maxActiveFaults(f['max-active-faults'] as number | undefined),
    });
  } catch (e) {
    let code = 1;
    if (e instanceof FlagError) { console.error(`meshlet proxy: ${e.message}`); code = 2; }
    else if (e instanceof ConfigError) console.error(`meshlet proxy: invalid config: ${e.message}`);
    else console.error(`meshlet proxy: ${(e as Error).message}`);
    // A worker's IPC channel keeps it alive: exit, so the primary sees the failed start.
    if (worker !== null) process.exit(code);
    return code;
  }
  if (worker !== null) {
    const p = proxy;
    (await import('../proxy/workers.ts')).reportToPrimary(worker.index, p.ports, p.requestsTotal, 1000);
  } else if (!proxy.log.isLevelEnabled('info')) {
    // The ready line is the contract for scripts and tests: print it whatever the log level.
    process.stdout.write(`${JSON.stringify({ level: 30, time: new Date().toISOString(), pid: process.pid, ports: proxy.ports, msg: 'meshlet proxy ready' })}\n`);
  }
  // With --control and no --config the proxy starts with no runtime: /ready says INITIALIZING
  // until the first snapshot is applied.
  let control: ReturnType<typeof startControlClient> | null = null;
  if (f.control) {
    try {
      const bind = f.bind as string;
      // Loaded only with --control.
      control = (await import('../proxy/xds/client.ts')).startControlClient(proxy, {
        url: f.control as string, nodeId: (f['node-id'] as string | undefined) ?? `${hostname()}-${process.pid}`,
        service: f.service as string | undefined, labels: parseLabels(f.labels as string | undefined), log: proxy.log,
        token: controlToken, ...(identity ? { identity: { serviceAccount: identity.serviceAccount } } : {}),
        register: f.service && f['app-port'] !== undefined && f.register !== false
          ? { address: (f['advertise-address'] as string | undefined) ?? (bind === '0.0.0.0' || bind === '::' ? '127.0.0.1' : bind), port: proxy.ports.inbound }
          : undefined,
        reportMs: Math.max(0.1, f['report-interval'] as number) * 1000,
      });
    } catch (e) {
      console.error(`meshlet proxy: --control: ${(e as Error).message}`);
      await proxy.drain(0);
      return 1;
    }
  }
  // MESHLET_MEMORY_GUARD=0 trades memory for large-body throughput (see docs/operations.md).
  if (process.env.MESHLET_MEMORY_GUARD !== '0') startMemoryGuard();
  process.on('SIGHUP', () => { proxy.reload(); });
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    proxy.log.info({ signal: sig, inFlight: proxy.inFlight() }, 'draining');
    (control ? control.stop() : Promise.resolve()).then(() => proxy.drain()).then(() => { proxy.log.info('drained; exiting'); process.exit(0); });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return undefined;
}

function appProtocol(v: string): 'client' | 'http1' | 'http2' {
  if (v === 'client' || v === 'http1' || v === 'http2') return v;
  throw new FlagError(`--app-protocol: expected client, http1 or http2, got "${v}"`);
}
