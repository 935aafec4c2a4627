// The control server, startable in-process (tests, demos) or from `meshlet control`.
// Discovery on one port (proxies), the ops API on another (operators); both optionally behind a
// bearer token, and never on a non-loopback address without one.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { createLogger } from '../proxy/telemetry/log.ts';
import { apiHandler } from './api/server.ts';
import { TopologyWindow, parseEdgesReport, splits } from './mesh/topology.ts';
import { meshPage, type MeshData } from './mesh/page.ts';
import { Discovery } from './discovery/server.ts';
import { HttpError, isLoopback, readJson, sendError, sendJson, tokenChecker, unauthorized } from './http.ts';
import { DEFAULT_DIR_OPTIONS, DirSource, readDir, type DirSourceOptions } from './sources/dir.ts';
import { ControlState } from './state.ts';
import type { KubernetesControlOptions } from './kubernetes/control.ts';
import { canaryApi } from './canary/api.ts';
import { CanaryController } from './canary/controller.ts';
import { VersionMetrics } from './canary/metrics.ts';
import { fromDirFiles } from './canary/source.ts';
import { CertificateAuthority } from './ca/ca.ts';
import { handleCsr } from './ca/endpoint.ts';
import { authzCheck, CheckError, type CheckRequest } from './authz-check.ts';
import type { Snapshot } from '../proxy/config/schema.ts';

export interface ControlOptions {
  configDir: string;
  port?: number;              // discovery (default 15010; 0 = pick one)
  topologyWindowS?: number;   // rolling window of the mesh view (default 30 s)
  apiPort?: number;           // ops API (default 15014; 0 = pick one)
  bind?: string;              // default 127.0.0.1
  token?: string;             // bearer token required on every request when set
  /**
   * Sidecar authentication on the discovery port besides (or instead of) the static token: e.g.
   * Kubernetes TokenReview of a projected service-account token (control/kubernetes/token-review.ts).
   */
  authenticate?: import('./kubernetes/token-review.ts').Authenticator;
  endpointTtlMs?: number;     // registered endpoints expire after this without a heartbeat
  keepaliveMs?: number;       // stream keepalive period
  dir?: Partial<DirSourceOptions>;
  /** Discovery and config from the Kubernetes API server (`--kubernetes`), besides the directory. */
  kubernetes?: KubernetesControlOptions;
  logger?: Logger;
  logLevel?: string;
  /** The mutating admission webhook (HTTPS: kube-apiserver calls webhooks over TLS only). */
  webhook?: { port: number; bind?: string; certPem: string; keyPem: string; inject: import('./inject.ts').InjectOptions };
  /** The CA's directory: the root generated there on first start, or the user's cacerts. Unset = a root in memory. */
  caDir?: string;
  trustDomain?: string;
  /** Longest leaf lifetime signed (default 24 h). */
  leafTtlMs?: number;
}

export interface RunningControl {
  ports: { discovery: number; api: number; webhook?: number };
  state: ControlState;
  discovery: Discovery;
  canaries: CanaryController;
  ca: CertificateAuthority;
  log: Logger;
  kubernetes: import('./kubernetes/control.ts').RunningKubernetes | null;
  close(): Promise<void>;
}

export const DEFAULT_CONTROL = { port: 15010, apiPort: 15014, bind: '127.0.0.1', endpointTtlMs: 15_000, keepaliveMs: 10_000 };

function listen(server: Server, port: number, bind: string): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, bind, () => { server.off('error', rej); res((server.address() as { port: number }).port); });
  });
}

export async function startControl(opts: ControlOptions): Promise<RunningControl> {
  const bind = opts.bind ?? DEFAULT_CONTROL.bind;
  if (!isLoopback(bind) && !opts.token) {
    throw new Error(`refusing to bind ${bind} without a token: a non-loopback control server must require one (--token-file; the ops API needs it even with --kubernetes sidecar authentication)`);
  }
  const dir = resolve(opts.configDir);
  let st;
  try { st = statSync(dir); } catch { throw new Error(`--config-dir ${dir}: no such directory`); }
  if (!st.isDirectory()) throw new Error(`--config-dir ${dir}: not a directory`);
  const log = opts.logger ?? createLogger(opts.logLevel ?? 'info', 'meshlet-control');

  let discovery: Discovery | null = null;
  const state = new ControlState({
    dir, log, endpointTtlMs: opts.endpointTtlMs ?? DEFAULT_CONTROL.endpointTtlMs,
    onSnapshot: (s) => discovery?.publish(s),
  });
  discovery = new Discovery({ log, keepaliveMs: opts.keepaliveMs ?? DEFAULT_CONTROL.keepaliveMs, registry: state.registry });
  // Kubernetes first: the startup build combines the directory with the first full list of every
  // watched kind (bounded wait: an unreachable API server must not keep the directory unserved).
  const kube = opts.kubernetes ? await (await import('./kubernetes/control.ts')).startKubernetes(opts.kubernetes, state, log) : null;
  // An invalid directory at start is not fatal: the API shows why, and the first valid edit is served.
  state.fromDir(readDir(dir), 'startup');
  kube?.started();
  const authn = opts.authenticate ?? kube?.authenticate ?? undefined;
  const cur = state.current();
  // Canaries (control/canary/): read from the same directory; a Kubernetes source feeds the same sink.
  const canaries = new CanaryController({ state, metrics: new VersionMetrics(), log, dir });
  canaries.feed('directory', fromDirFiles(readDir(dir)));
  canaries.start();
  // With --kubernetes, Canary/MetricTemplate objects from the API server too (meshlet.io and flagger.app).
  const canaryWatch = kube ? (await import('./kubernetes/canaries.ts')).watchCanaries(kube.kc, canaries, log) : null;
  const source = new DirSource(dir, { ...DEFAULT_DIR_OPTIONS, ...opts.dir }, (files) => { state.fromDir(files); canaries.feed('directory', fromDirFiles(files)); }, log);
  const gc = setInterval(() => discovery!.gc(3_600_000), 60_000);
  gc.unref();

  const ca = await CertificateAuthority.load(opts.caDir, { trustDomain: opts.trustDomain, leafTtlMs: opts.leafTtlMs });
  const topology = new TopologyWindow(opts.topologyWindowS ?? 30);
  const authorized = tokenChecker(opts.token);
  const meshData = (): MeshData => {
    const t = topology.topology();
    return {
      topology: t, splits: splits(state.current()?.snapshot.virtualHosts ?? [], t),
      proxies: { version: state.current()?.snapshot.version ?? null, proxies: discovery!.views() }, at: new Date().toISOString(),
      canaries: canaries.list(),
    };
  };
  // The discovery port: a sidecar is let in by the static token or, when configured, by its own
  // workload token (TokenReview); with neither configured (loopback only) it is open. The ops
  // API takes the static token only: a workload's token never grants ops changes.
  const staticOnly = opts.token ? authorized : null;
  const sidecarAuthorized = async (req: IncomingMessage): Promise<boolean> => {
    if (!authn) return authorized(req);
    if (staticOnly?.(req)) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m ? (await authn(m[1])) !== null : false;
  };
  // The CSR's credential: a workload token (TokenReview) limits the certificate to that workload's
  // own identity; the static bootstrap token (or an open loopback server) is development mode.
  const csrCredential = async (req: IncomingMessage) => {
    if (!authn || staticOnly?.(req)) return null;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m ? authn(m[1]) : null;
  };
  const guard = (handler: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>) =>
    async (req: IncomingMessage, res: ServerResponse) => {
      // The mesh page loads without a header (a browser has the token only in the URL fragment,
      // which it uses for the API fetches); it carries the current data only for a request that
      // may see it, and otherwise shows "loading…" until the first fetch answers.
      if (req.method === 'GET' && (req.url === '/' || req.url?.startsWith('/?')) && handler === api) {
        const page = meshPage(authorized(req) ? meshData() : null);
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(page), 'cache-control': 'no-cache' });
        res.end(page);
        return;
      }
      let url: URL;
      try { url = new URL(req.url ?? '/', 'http://control'); } catch { sendJson(res, 400, { error: 'bad request target' }); return; }
      const ok = handler === api ? authorized(req) : await sidecarAuthorized(req);
      // /healthz is liveness (the process answers; restarting would not fix a bad directory);
      // /ready is readiness: 503 while there is no valid snapshot to serve. Both answer without
      // the token (kubelet probes carry none), with the errors only for an authorized caller.
      if (req.method === 'GET' && url.pathname === '/healthz') { sendJson(res, 200, { ok: true, version: state.current()?.snapshot.version ?? null, ...state.serving() }); return; }
      if (req.method === 'GET' && url.pathname === '/ready') {
        const s = state.serving();
        sendJson(res, s.serving ? 200 : 503, { ...s, version: state.current()?.snapshot.version ?? null, ...(ok ? { last_error: state.lastRejection() } : {}) });
        return;
      }
      if (!ok) { req.resume(); unauthorized(res); return; }
      handler(req, res, url).catch((e) => { log.error({ err: (e as Error).message }, 'request failed'); if (!res.headersSent) sendJson(res, 500, { error: (e as Error).message }); });
    };
  const d = discovery;
  const discoveryServer = createServer(guard(async (req, res, url) => {
    if (url.pathname === '/v1/report' && req.method === 'POST') {
      // Per-edge traffic from a sidecar, for the mesh view (docs/control-protocol.md).
      try {
        const report = parseEdgesReport(await readJson(req));
        topology.ingest(report);
        canaries.metrics.ingest(report);
      } catch (e) {
        return sendError(res, e instanceof HttpError ? e : new HttpError(400, (e as Error).message));
      }
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === '/v1/certificates' && req.method === 'POST') return handleCsr(ca, req, res, csrCredential);
    if (!(await d.handle(req, res, url))) sendJson(res, 404, { error: `no route ${req.method} ${url.pathname}` });
  }));
  const ops = apiHandler(state, d);
  const canaryOps = canaryApi(canaries, dir, () => canaries.feed('directory', fromDirFiles(readDir(dir))));
  const api = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    if (req.method === 'GET') {
      if (url.pathname === '/api/v1/topology') return sendJson(res, 200, topology.topology());
      if (url.pathname === '/api/v1/splits') return sendJson(res, 200, { splits: splits(state.current()?.snapshot.virtualHosts ?? [], topology.topology()) });
      if (url.pathname === '/api/v1/proxies') return sendJson(res, 200, { version: state.current()?.snapshot.version ?? null, proxies: d.views() });
    }
    if (await canaryOps(req, res, url)) return;
    if (req.method === 'POST' && url.pathname === '/v1/authz/check') return authzCheckHandler(state.current()?.snapshot ?? null, req, res);
    return ops(req, res, url);
  };
  const apiServer = createServer(guard(api));
  // ACK/heartbeat connections are kept alive by clients; streams are long-lived by design.
  for (const s of [discoveryServer, apiServer]) { s.keepAliveTimeout = 65_000; s.requestTimeout = 0; }

  // The webhook: POST /inject with an AdmissionReview. It authenticates nothing itself: only the
  // apiserver can reach it usefully (it answers with a patch for the pod it was sent, no secrets).
  const webhookServer = opts.webhook ? (await import('node:https')).createServer({ cert: opts.webhook.certPem, key: opts.webhook.keyPem }, (req, res) => {
    if (req.method !== 'POST' || !(req.url ?? '').startsWith('/inject')) { req.resume(); sendJson(res, 404, { error: 'POST /inject only' }); return; }
    readJson(req).then(async (review) => {
      const { admit } = await import('./kubernetes/webhook.ts');
      const r = admit(review, opts.webhook!.inject);
      const pr = (review as { request?: { namespace?: string; object?: { metadata?: { name?: string; generateName?: string } } } }).request;
      log.info({ namespace: pr?.namespace, pod: pr?.object?.metadata?.name ?? pr?.object?.metadata?.generateName, injected: r.injected, ...(r.reason ? { reason: r.reason } : {}) }, 'admission review');
      sendJson(res, 200, r.review);
    }).catch((e) => sendError(res, e instanceof HttpError ? e : new HttpError(400, (e as Error).message)));
  }) : null;

  let ports;
  try {
    ports = {
      discovery: await listen(discoveryServer, opts.port ?? DEFAULT_CONTROL.port, bind),
      api: await listen(apiServer, opts.apiPort ?? DEFAULT_CONTROL.apiPort, bind),
      ...(webhookServer ? { webhook: await listen(webhookServer as unknown as Server, opts.webhook!.port, opts.webhook!.bind ?? bind) } : {}),
    };
  } catch (e) {
    source.close(); state.close(); d.close(); clearInterval(gc); canaries.close(); await canaryWatch?.stop(); await kube?.close();
    discoveryServer.close(); apiServer.close(); webhookServer?.close();
    throw e;
  }
  log.info({ ports, dir, bind, auth: Boolean(opts.token), version: cur?.snapshot.version ?? null, ...(cur ? {} : { status: state.serving().status }) }, 'meshlet control ready');

  return {
    ports, state, discovery: d, log, kubernetes: kube, canaries, ca,
    async close() {
      canaries.close();
      await canaryWatch?.stop();
      await kube?.close();
      source.close();
      state.close();
      clearInterval(gc);
      d.close();
      await Promise.all([discoveryServer, apiServer, ...(webhookServer ? [webhookServer as unknown as Server] : [])].map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); })));
    },
  };
}

/** POST /v1/authz/check {to, fromPrincipal, method, path, headers}: `meshlet ctl authz check`. */
async function authzCheckHandler(snap: Snapshot | null, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (snap === null) return sendJson(res, 503, { error: 'no snapshot is served yet' });
  let q: CheckRequest;
  try { q = await readJson(req) as unknown as CheckRequest; } catch (e) { return sendError(res, e instanceof HttpError ? e : new HttpError(400, (e as Error).message)); }
  if (typeof q?.to !== 'string') return sendJson(res, 400, { error: 'field "to" (a service) is required' });
  try { sendJson(res, 200, authzCheck(snap, q)); } catch (e) {
    if (e instanceof CheckError) return sendJson(res, 404, { error: e.message });
    throw e;
  }
}
