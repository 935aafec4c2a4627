// The proxy process: listeners, admin, the current Runtime, reloads and draining. Used by the
// CLI (`meshlet proxy`) and by tests that start a real proxy on loopback ports.
import type { Logger } from 'pino';
import { loadSnapshot } from './config/load.ts';
import { DEFAULT_DIR_OPTIONS, DirSource, type DirSourceOptions } from './config/watch.ts';
import type { ClusterSpec, Snapshot } from './config/schema.ts';
import { DEFAULT_CONNECTION_POOL } from './config/schema.ts';
import { Runtime } from './runtime.ts';
import { Listener } from './listener/listener.ts';
import { inboundFilters, outboundFilters, type ChainDeps } from './listener/chains.ts';
import type { HttpFilter } from './listener/stream.ts';
import { createAdmin, createHealth } from './admin/admin.ts';
import { Cluster, type ClusterOptions } from './upstream/cluster.ts';
import { retryBudgetFactory } from './filters/retry/index.ts';
import type { NamingOptions } from './filters/dtab/naming.ts';
import { Metrics, type EdgeHealth } from './telemetry/metrics.ts';
import { Telemetry } from './telemetry/telemetry.ts';
import { createLogger, type AccessLogMode } from './telemetry/log.ts';
import type { StatSource } from './telemetry/stats.ts';
import { Tracing } from './telemetry/tracing.ts';
import { delegatorHandler } from './admin/delegator.ts';
import { noteRequest } from './telemetry/memory.ts';
import { ExtAuthz } from './filters/authz/ext-authz.ts';
import { inboundAccept, outboundConnector, peerAuthMode, type InboundTlsStats, type MtlsMode, type OutboundTlsStats } from './identity/tls.ts';
import { certsHandler } from "./identity/certs.ts";

export interface ProxyOptions {
  config?: string;
  /** Bind the listeners with SO_REUSEPORT (--workers: several processes share the ports). */
  reusePort?: boolean;
  /** The ready log line's message (workers say which they are). */
  readyMessage?: string;
  snapshot?: Snapshot;
  outboundPort: number;
  inboundPort: number;
  adminPort: number;
  appPort?: number;
  /**
   * How the inbound listener talks to the app: `client` (default) keeps each request's protocol
   * (an HTTP/2 or gRPC caller reaches the app over h2c, HTTP/1.1 stays HTTP/1.1), `http2` always
   * h2c, `http1` always HTTP/1.1.
   */
  appProtocol?: 'client' | 'http1' | 'http2';
  bind: string;
  /** The inbound listener's address (default: bind). In a pod: 0.0.0.0, the rest on localhost. */
  inboundBind?: string;
  /** The health port (/healthz/ready only, for kubelet probes); absent = none. */
  healthPort?: number;
  healthBind?: string;
  service?: string;
  labels: Record<string, string>;
  logLevel: string;
  accessLog: AccessLogMode;
  watch: boolean;
  /** --watch timings (tests shorten the poll). */
  watchOptions?: Partial<DirSourceOptions>;
  drainTimeoutMs: number;
  trustEnvoyHeaders: boolean;
  shadowHostSuffix: boolean;
  legacyStatNames: boolean;
  /** meshlet's rate budget on retries (Linkerd's retryRatio/minRetriesPerSecond over 10 s); null = none (Istio's default). */
  retryBudget: { ratio: number; minPerSecond: number } | null;
  maxRequestHeadersKb: number;
  downstreamIdleTimeoutMs: number;
  /** Envoy's stream_idle_timeout: no bytes either way on a request for this long ends it (408 / reset). 0 = off. */
  streamIdleTimeoutMs: number;
  /** Request bodies above this many bytes get 413 (0 = no limit). */
  maxRequestBytes: number;
  maxMirrorsInFlight: number;
  /** Envoy's max_active_faults for the fault filter (Infinity = unbounded, Envoy's and Istio's default). */
  maxActiveFaults: number;
  /** Parent-based ratio for root requests; tracing is on when > 0 and an OTLP endpoint is set. */
  traceSampling: number;
  /** How the outbound listener names requests (Linkerd identifiers); default Host token under /svc. */
  identifier?: import('./dtab/index.ts').IdentifierConfig;
  dstPrefix?: string;
  /** l5d-* context headers: trusted (sidecar default) or stripped unread (`--edge`). */
  dtabHeaders: 'trust' | 'strip';
  /** The inbound listener's own setting (default: dtabHeaders). Injected pods strip: other pods are not trusted. */
  inboundDtabHeaders?: 'trust' | 'strip';
  traceEndpoint?: string;
  traceProtocol?: string;
  nodeId?: string;
  logger?: Logger;
  /** DNS clusters (ServiceEntry resolution DNS): re-resolution interval (default 5 s, Envoy's dns_refresh_rate). */
  dnsRefreshMs?: number;
  /** This proxy's locality (--zone/--region): locality-aware balancing (proxy/upstream/locality.ts). */
  locality?: { zone: string; region: string };
  /**
   * Embedding: change a listener's filter chain (e.g. insert a filter before the router). Gets the
   * default chain (listener/chains.ts) and returns the one to run; the last filter must be terminal.
   */
  chains?: { outbound?: (filters: HttpFilter[]) => HttpFilter[]; inbound?: (filters: HttpFilter[]) => HttpFilter[] };
  /** DNS clusters: the resolver (default: the OS resolver, getaddrinfo). */
  dnsLookup?: import('./upstream/dns.ts').DnsLookup;
  /**
   * The workload's namespace (--namespace, POD_NAMESPACE): short host names resolve in it, and
   * with the service account it is the workload's identity and decides which policies apply.
   */
  namespace?: string;
  serviceAccount?: string;
  /** Istio's numTrustedProxies: X-Forwarded-For hops trusted for remote.ip / remoteIpBlocks. */
  numTrustedProxies?: number;
  /** CUSTOM AuthorizationPolicy providers (Istio meshConfig extensionProviders, envoyExtAuthzHttp). */
  extAuthzProviders?: import('./filters/authz/ext-authz.ts').ExtAuthzProvider[];
  /** Workload identity and mTLS (proxy/identity): null/absent = plaintext only. */
  identity?: import('./identity/identity.ts').Identity;
}

export const DEFAULT_PROXY_OPTIONS: ProxyOptions = {
  outboundPort: 15001, inboundPort: 15006, adminPort: 15000, bind: '127.0.0.1', labels: {}, logLevel: 'info',
  accessLog: 'off', watch: false, drainTimeoutMs: 10_000, trustEnvoyHeaders: false, shadowHostSuffix: false,
  legacyStatNames: false, retryBudget: null, maxRequestHeadersKb: 60,
  downstreamIdleTimeoutMs: 60_000, streamIdleTimeoutMs: 300_000, maxRequestBytes: 0, maxMirrorsInFlight: 64, maxActiveFaults: Infinity, traceSampling: 0.01, dtabHeaders: 'trust',
};

export interface RunningProxy {
  ports: { outbound: number; inbound: number; admin: number; health?: number };
  /** The listeners (a TLS front hands sockets to `listeners.x.h2.acceptTls`, the ALPN hook). */
  listeners: { outbound: Listener; inbound: Listener };
  log: Logger;
  runtime(): Runtime | null;
  /** Validate and apply a snapshot atomically; throws with the validation message. */
  apply(snapshot: Snapshot): void;
  /** Re-read the config path; the old config stays in force on error. */
  reload(): { ok: true; version: string } | { ok: false; error: string };
  /** Record a config refused elsewhere (a NACKed control push): /config_dump's last_error until the next good apply. */
  rejected(error: string): void;
  /** Stop accepting, let in-flight requests finish (bounded), close everything. */
  drain(timeoutMs?: number): Promise<void>;
  inFlight(): number;
  /** Downstream requests so far, both listeners. */
  requestsTotal(): number;
  /** The outbound clusters' traffic since the last call (a view of the Istio series) for a report to the control server. */
  edgeReports(): import('./telemetry/edges.ts').EdgeReport[];
}

export async function startProxy(partial: Partial<ProxyOptions>): Promise<RunningProxy> {
  const opts: ProxyOptions = { ...DEFAULT_PROXY_OPTIONS, ...partial };
  const log = opts.logger ?? createLogger(opts.logLevel);
  const clusterOpts: ClusterOptions & NamingOptions = { retryBudget: retryBudgetFactory(opts.retryBudget), identifier: opts.identifier, dstPrefix: opts.dstPrefix, namespace: opts.namespace };
  // Workload identity: mTLS origination to endpoints with a sidecar (and DestinationRule tls).
  const identity = opts.identity ?? null;
  const tlsOut: OutboundTlsStats = { 'ssl.handshake': 0, 'ssl.fail_verify_san': 0, 'ssl.session_reused': 0 };
  const tlsIn: InboundTlsStats = { 'ssl.handshake': 0, 'ssl.connection_error': 0, 'ssl.plaintext_refused': 0, 'ssl.no_certificate': 0 };
  clusterOpts.transport = (c, e) => outboundConnector(() => identity, c, e, tlsOut);
  clusterOpts.dnsLookup = opts.dnsLookup;
  clusterOpts.dnsRefreshMs = opts.dnsRefreshMs;
  clusterOpts.locality = opts.locality;
  clusterOpts.onDnsError = (cluster, name, err) => log.warn({ cluster, name, err: err.message }, 'DNS resolution failed; the last good addresses stay in use');
  const metrics = new Metrics({ workload: opts.service ?? 'unknown', version: opts.labels.version ?? 'unknown' });
  let version = 0;
  let runtime = null as Runtime | null;
  let lastError: string | null = null;
  let draining = false;
  let inFlight = 0;
  let inbound: Cluster | null = null;
  if (opts.appPort !== undefined) {
    const spec: ClusterSpec = {
      name: `inbound|${opts.appPort}||`, service: opts.service ?? 'app', subset: '', port: opts.appPort, lb: 'ROUND_ROBIN',
      endpoints: [{ address: '127.0.0.1', port: opts.appPort, labels: opts.labels }], connectionPool: { ...DEFAULT_CONNECTION_POOL },
    };
    const ap = opts.appProtocol ?? 'client';
    if (ap !== 'http1') spec.protocol = ap;
    inbound = new Cluster(spec, undefined, clusterOpts);
  }

  const apply = (snapshot: Snapshot): void => {
    const next = Runtime.build(snapshot, runtime, clusterOpts);
    const prev = runtime;
    runtime = next;
    prev?.retire(next);
    lastError = null;
    log.info({ version: snapshot.version, hash: snapshot.hash, source: snapshot.source, clusters: snapshot.clusters.length }, 'config applied');
  };

  const loadFromPath = (): Snapshot => loadSnapshot(opts.config!, String(version + 1));
  if (opts.snapshot) { apply(opts.snapshot); version = Number(opts.snapshot.version) || 1; }
  else if (opts.config) { apply(loadFromPath()); version = 1; }
  // Like Envoy's init manager: serve once DNS clusters have their first answer (bounded).
  await runtime?.warm();

  const otlpConfigured = opts.traceEndpoint ?? process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const tracing = opts.traceSampling >= 0 && otlpConfigured
    ? await Tracing.start({ samplingRatio: opts.traceSampling, serviceName: opts.service ?? 'meshlet', nodeId: opts.nodeId ?? `${opts.service ?? 'meshlet'}-${process.pid}`, endpoint: opts.traceEndpoint, protocol: opts.traceProtocol })
    : null;
  const telemetry = new Telemetry({ metrics, tracing, accessLog: opts.accessLog, log });
  const listenerCtx = {
    draining: () => draining,
    tracing: () => tracing,
    onStart: () => { inFlight++; noteRequest(); },
    onDone: (info: import('./core/stream-info.ts').StreamInfo) => { inFlight--; telemetry.record(info); },
    log,
  };
  const workload = { namespace: opts.namespace ?? 'default', labels: opts.labels };
  const deps: ChainDeps = {
    runtime: () => runtime,
    inboundCluster: () => inbound,
    fault: { maxActiveFaults: opts.maxActiveFaults },
    mirror: { maxInFlight: opts.maxMirrorsInFlight, shadowSuffix: opts.shadowHostSuffix },
    authz: {
      workload, numTrustedProxies: opts.numTrustedProxies ?? 0, destinationPort: opts.appPort,
      extAuthz: Object.fromEntries((opts.extAuthzProviders ?? []).map((p) => [p.name, new ExtAuthz(p)])),
      onDecision: (d, s) => log.debug({ policy: d.policy, reason: d.reason, path: s.req.url }, 'rbac: denied'),
    },
    jwt: { workload },
  };
  const common = {
    maxHeaderBytes: opts.maxRequestHeadersKb * 1024, idleTimeoutMs: opts.downstreamIdleTimeoutMs, headersTimeoutMs: 10_000,
    streamIdleTimeoutMs: opts.streamIdleTimeoutMs, maxRequestBytes: opts.maxRequestBytes,
    trustEnvoyHeaders: opts.trustEnvoyHeaders, dtabHeaders: opts.dtabHeaders,
  };
  // PeerAuthentication for this workload's port, resolved once per snapshot.
  let modeFor: Snapshot | null = null;
  let mode: MtlsMode = 'PERMISSIVE';
  const inboundMode = (): MtlsMode => {
    const snap = runtime?.snapshot ?? null;
    if (snap !== modeFor) { modeFor = snap; mode = peerAuthMode(snap?.security, workload.namespace, workload.labels, opts.appPort ?? opts.inboundPort); }
    return mode;
  };
  const accept = inboundAccept(() => identity, inboundMode, tlsIn);
  const outbound = new Listener({ ...common, name: 'outbound' }, (opts.chains?.outbound ?? same)(outboundFilters(deps)), listenerCtx);
  const inboundL = new Listener({ ...common, name: 'inbound', dtabHeaders: opts.inboundDtabHeaders ?? opts.dtabHeaders, accept }, (opts.chains?.inbound ?? same)(inboundFilters(deps)), listenerCtx);

  const sep = opts.legacyStatNames ? '' : ';'; // Istio >= 1.23 alt_stat_name ends in ';'
  const statSources = (): StatSource[] => {
    const out: StatSource[] = [];
    const cs = [...(runtime?.clusters.values() ?? []), ...(inbound ? [inbound] : [])];
    for (const c of cs) out.push({ prefix: `cluster.${c.name}${sep}`, stats: c.stats as unknown as StatSource['stats'], prom: ['envoy_cluster_', { cluster_name: c.name }] });
    for (const l of [outbound, inboundL]) {
      const prom: StatSource['prom'] = ['envoy_http_', { http_conn_manager_prefix: l.opts.name }];
      out.push({ prefix: l.prefix, stats: l.stats, prom });
      for (const f of l.filterStats()) out.push({ prefix: l.prefix, stats: f.stats, prom });
    }
    out.push({ prefix: 'listener.inbound', stats: tlsIn as unknown as StatSource['stats'], prom: ['envoy_listener_', { listener_prefix: 'inbound' }] });
    out.push({ prefix: 'cluster_manager.outbound', stats: tlsOut as unknown as StatSource['stats'], prom: ['envoy_cluster_manager_', {}] });
    if (tracing) out.push({ prefix: 'tracing', stats: tracing.stats as unknown as StatSource['stats'], prom: ['meshlet_tracing_', {}] });
    return out;
  };
  let listening = false;
  const ready = () => (draining ? { ok: false, state: 'DRAINING' } : listening && runtime ? { ok: true, state: 'LIVE' } : { ok: false, state: 'INITIALIZING' });
  const health = opts.healthPort !== undefined ? createHealth(ready) : null;
  const admin = createAdmin({
    ready,
    runtime: () => runtime,
    statSources,
    metrics,
    clusters: () => [...(runtime?.clusters.values() ?? []), ...(inbound ? [inbound] : [])],
    extra: certsHandler(() => identity, delegatorHandler(() => runtime)),
    configDump: () => ({
      version: runtime?.snapshot.version ?? null, hash: runtime?.snapshot.hash ?? null, source: runtime?.snapshot.source ?? null,
      applied_at: runtime?.appliedAt.toISOString() ?? null, last_error: lastError,
      node: { service: opts.service ?? null, labels: opts.labels },
      snapshot: runtime?.snapshot ?? null,
    }),
  });

  const ports = {
    outbound: await outbound.listen(opts.outboundPort, opts.bind, opts.reusePort),
    inbound: await inboundL.listen(opts.inboundPort, opts.inboundBind ?? opts.bind, opts.reusePort),
    admin: await admin.listen(opts.adminPort, opts.bind),
    ...(health ? { health: await health.listen(opts.healthPort!, opts.healthBind ?? '0.0.0.0') } : {}),
  };
  listening = true;

  const reload = (): { ok: true; version: string } | { ok: false; error: string } => {
    if (!opts.config) return { ok: false, error: 'no --config path to reload' };
    try {
      const snap = loadFromPath();
      if (runtime && snap.hash === runtime.snapshot.hash) {
        // Nothing to apply (e.g. a bad edit was reverted), but the file is valid again: the old
        // error no longer describes it. Logged too, so every reload leaves a line.
        log.info({ version: runtime.snapshot.version, hash: snap.hash, cleared_error: lastError !== null }, 'config reloaded: unchanged');
        lastError = null;
        return { ok: true, version: runtime.snapshot.version };
      }
      apply(snap);
      version++;
      return { ok: true, version: snap.version };
    } catch (e) {
      lastError = (e as Error).message;
      log.error({ err: lastError }, 'config rejected; the previous config stays in force');
      return { ok: false, error: lastError };
    }
  };

  // The control server's watcher (config/watch.ts): follows atomic saves and ConfigMap symlink
  // swaps, debounced, delivers only a stable read, and polls in case an event is missed.
  const watcher = opts.watch && opts.config
    ? new DirSource(opts.config, { ...DEFAULT_DIR_OPTIONS, ...opts.watchOptions }, () => { reload(); }, log)
    : null;

  log.info({ ports, version: runtime?.snapshot.version ?? null, pid: process.pid }, opts.readyMessage ?? 'meshlet proxy ready');

  return {
    ports, log, listeners: { outbound, inbound: inboundL },
    runtime: () => runtime,
    apply: (s) => { apply(s); version = Math.max(version, Number(s.version) || version + 1); },
    reload,
    rejected: (error) => { lastError = error; },
    inFlight: () => inFlight,
    requestsTotal: () => outbound.stats.downstream_rq_total + inboundL.stats.downstream_rq_total,
    edgeReports: () => {
      const health: EdgeHealth[] = [];
      for (const c of runtime?.clusters.values() ?? []) {
        let healthy = 0;
        for (const e of c.endpoints) if (!e.outlier.ejected) healthy++;
        health.push({ cluster: c.name, service: c.service, subset: c.version(), healthy, total: c.endpoints.length });
      }
      return metrics.drainEdges(health);
    },
    async drain(timeoutMs = opts.drainTimeoutMs) {
      draining = true;
      watcher?.close();
      identity?.close();
      // Envoy's drain for HTTP/1: listeners stop accepting, every response from now on carries
      // `Connection: close` (its connection closes after it), so a keep-alive client learns of
      // the drain from an answer and is never reset. A connection left idle for `quiet` is closed
      // with a FIN; whatever is still open at the deadline is destroyed.
      const closed = Promise.all([outbound.close(), inboundL.close()]);
      const deadline = performance.now() + timeoutMs;
      const quiet = Math.min(1000, timeoutMs / 2);
      while (performance.now() < deadline) {
        outbound.closeIdle(quiet);
        inboundL.closeIdle(quiet);
        if (inFlight === 0 && outbound.server.connections === 0 && inboundL.server.connections === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      outbound.destroyConnections();
      inboundL.destroyConnections();
      await closed;
      const adminClosed = admin.close();
      admin.destroyConnections();
      await adminClosed;
      if (health) { const c = health.close(); health.destroyConnections(); await c; }
      runtime?.retire(null);
      inbound?.drain();
      // Flushing spans is bounded too: an unresponsive collector must not hold the exit (the
      // exporter's own timeouts add up to minutes). What is left of the drain time, at least 250 ms, at most 5 s.
      if (tracing) await bounded(tracing.shutdown(), Math.max(250, Math.min(5000, deadline - performance.now())));
      for (const c of [...(runtime?.clusters.values() ?? []), ...(inbound ? [inbound] : [])]) for (const e of c.endpoints) e.pool.destroy();
    },
  };
}

const same = (filters: HttpFilter[]): HttpFilter[] => filters;

/** Wait for `p` (its failure ignored), at most `ms`. */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
    p.then(() => { clearTimeout(t); resolve(); }, () => { clearTimeout(t); resolve(); });
  });
}
