// The router (Envoy's router filter), the terminal filter of every chain: attempts against the
// cluster the earlier filters chose, with the route's timeouts and retry policy, and the
// response streamed back. One Forward per request, one Attempt per try; an Attempt is both the
// pool's waiter and the engine's response handler, so a request allocates no closures for
// features it does not use. Every entry from the pool, the engine or a timer is guarded: a bug
// here fails this request (HttpStream.fail), never the process.
import type { ClientConnection, ResponseHandler, UpstreamError } from '../../engine/client.ts';
import { BODY, resetBody } from '../../local-reply.ts';
import type { Cluster, Endpoint } from '../../upstream/cluster.ts';
import type { Conn, PoolFailure, Waiter } from '../../upstream/pool.ts';
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import { Flag } from '../../core/stream-info.ts';
import { chargeCode } from '../../telemetry/stats.ts';
import { injectHeaders, type ActiveSpan } from '../../telemetry/tracing.ts';
import { NO_RETRY, RetryState, requestPolicy, type Decision, type FailureKind, type RetryPolicy } from '../retry/index.ts';
import { perTryArmed, routeTimeoutMs } from './timeouts.ts';
import { newUpgradeStats, requestedUpgrade, startTunnel, upgradeAllowed, type TunnelOwner } from './upgrade.ts';
import type { Socket } from 'node:net';
import { formatGrpcTimeout, grpcStatusOf } from '../../grpc.ts';

/** Replace (or add) grpc-timeout with `ms` left. */
function setGrpcTimeout(headers: string[], ms: number): void {
  const v = formatGrpcTimeout(ms);
  for (let i = 0; i < headers.length; i += 2) if (headers[i].length === 12 && headers[i].toLowerCase() === 'grpc-timeout') { headers[i + 1] = v; return; }
  headers.push('grpc-timeout', v);
}

/** Resends of an idempotent request after reused keep-alive connections died under it. */
const MAX_STALE_RESENDS = 3;

const OVERLOADED = { 'x-envoy-overloaded': 'true' };

export class RouterFilter implements HttpFilter {
  readonly name = 'router';
  /** Upgrades and CONNECT tunnels (upgrade.ts): `http.<listener>.downstream_cx_upgrades_*`. */
  readonly stats = newUpgradeStats();

  onRequest(s: HttpStream): boolean {
    const cluster = s.cluster;
    if (cluster === null) { s.sendLocalReply(503, '', Flag.NC); return false; }
    const up = requestedUpgrade(s);
    if (up !== null && !upgradeAllowed(s, up)) {
      // Envoy's answer for an upgrade the route does not allow (details upgrade_failed).
      this.stats.downstream_rq_ws_on_non_ws_route++;
      s.sendLocalReply(403, '', 0);
      return false;
    }
    if (up !== null && cluster.spec.protocol === 'http2') {
      // A tunnel needs a raw HTTP/1.1 connection upstream; WebSocket and CONNECT over HTTP/2
      // (RFC 8441 extended CONNECT) are not built, so an HTTP/2-only cluster refuses them.
      this.stats.downstream_rq_ws_on_non_ws_route++;
      s.sendLocalReply(403, '', 0);
      return false;
    }
    const fw = new Forward(s, cluster, this.stats);
    if (up === 'connect') fw.connect = true;
    else if (up !== null) fw.upgrade = s.req.header('upgrade') ?? null;
    s.setState(this, fw);
    s.info.upstreamCluster = cluster;
    fw.globalTimeoutMs = routeTimeoutMs(s);
    const policy = requestPolicy(s.route?.retry ?? NO_RETRY, s.req.rawHeaders, s.owner.trustEnvoyHeaders);
    fw.policy = policy;
    cluster.budget?.onRequest();
    // Buffer the body only when a retry could need to replay it after it was sent.
    // A gRPC request is kept for a replay on a gRPC condition only when its body is already
    // complete (a unary call): a streaming call is never held back waiting for its end (it
    // would stall a bidirectional stream); it streams, and is then not retried once sent.
    if (policy !== null && (policy.replayNeeded || (policy.grpcOn && s.info.grpc && s.req.bodyDone))) { s.bufferBody(this); return false; }
    s.streamBody();
    fw.start();
    return false;
  }

  onBody(s: HttpStream): void {
    s.state<Forward>(this)!.start();
  }

  onDone(s: HttpStream): void {
    const fw = s.state<Forward>(this);
    if (fw !== undefined) fw.done();
  }
}

/** RFC 9110 section 9.2.2: safe to send again. */
function idempotent(m: string): boolean {
  return m === 'GET' || m === 'HEAD' || m === 'OPTIONS' || m === 'PUT' || m === 'DELETE' || m === 'TRACE';
}

/** The router's state for one request: retries, timers, the current attempt, hosts tried. */
class Forward {
  readonly s: HttpStream;
  readonly cluster: Cluster;
  /** The request's retry policy (shared, read-only); its RetryState is made at the first failure. */
  policy: RetryPolicy | null = null;
  retry: RetryState | null = null;
  globalTimeoutMs = 0;
  /** When the global timeout started (monotonic ms); set only when there is one. */
  timeoutStart = 0;
  current: Attempt | null = null;
  /** Tunnels: the Upgrade header value to send (an upgrade request), or a CONNECT to terminate. */
  upgrade: string | null = null;
  connect = false;
  readonly upgradeStats: ReturnType<typeof newUpgradeStats>;
  /** Hosts this request already tried (the balancer avoids them while others remain). */
  previous: Endpoint[] | null = null;
  globalTimer: NodeJS.Timeout | null = null;
  backoffTimer: NodeJS.Timeout | null = null;
  /** The once-per-request resend after a fresh connection died before any response byte was used. */
  freshResendDone = false;
  /** Resends after a reused keep-alive connection died before any response byte (bounded). */
  staleResends = 0;
  /** The next attempt must use a new connection (the last reused one was stale). */
  freshConnection = false;
  /** A consistent-hash cookie the balancer generated (cluster.pick): set on the response. */
  setCookie: string | null = null;

  constructor(s: HttpStream, cluster: Cluster, upgradeStats: ReturnType<typeof newUpgradeStats>) {
    this.s = s;
    this.cluster = cluster;
    this.upgradeStats = upgradeStats;
  }

  /** The tunnel is up: the route's and the try's timeouts covered only the way there (Envoy >= 1.36). */
  clearTimers(): void {
    if (this.globalTimer) { clearTimeout(this.globalTimer); this.globalTimer = null; }
  }

  get retried(): boolean { return this.retry !== null && this.retry.retried; }

  /** Timers, then the first attempt. */
  start(): void {
    if (this.s.done) return;
    if (this.globalTimeoutMs > 0) {
      this.timeoutStart = performance.now();
      this.globalTimer = setTimeout(onGlobalTimeout, this.globalTimeoutMs, this);
    }
    this.attempt();
  }

  /** A reply the router makes (no upstream response): charged to the cluster, as Envoy's router does. */
  reply(status: number, body: string, flag: number, extra?: Record<string, string>): void {
    const s = this.s;
    if (s.done) return;
    this.current = null;
    if (!s.committed) chargeCode(this.cluster.stats, status);
    s.sendLocalReply(status, body, flag, extra);
  }

  /** The stream ended (any way): stop timers, abandon an attempt in flight, give back the retry slot. */
  done(): void {
    if (this.globalTimer) { clearTimeout(this.globalTimer); this.globalTimer = null; }
    if (this.backoffTimer) { clearTimeout(this.backoffTimer); this.backoffTimer = null; }
    const a = this.current;
    this.current = null;
    if (a !== null) a.abandon();
    this.retry?.release(this.cluster);
  }

  attempt(): void {
    this.backoffTimer = null;
    const s = this.s;
    if (s.done) return;
    const cluster = this.cluster;
    const ep = cluster.pick(this.previous, this);
    if (!ep) {
      cluster.stats.upstream_cx_none_healthy++;
      this.reply(503, BODY.noHealthy, Flag.UH);
      return;
    }
    const info = s.info;
    info.attempts++;
    info.upstreamHost = ep.key;
    // A CONNECT tunnel needs a connection of its own: never one that carried HTTP.
    const a = new Attempt(this, ep, this.freshConnection || this.connect);
    this.freshConnection = false;
    this.current = a;
    if (s.tracing !== null) {
      a.span = s.tracing.startSpan(s.method, 'client', s.traceParent, {
        'http.request.method': s.method, 'url.path': s.path, 'server.address': ep.spec.address, 'server.port': ep.spec.port,
        'meshlet.upstream_cluster': cluster.name, 'meshlet.subset': cluster.spec.subset, 'http.request.resend_count': info.attempts - 1,
        'meshlet.dtab_override': info.dtabOverride,
      });
    }
    const perTry = this.policy?.perTryTimeoutMs ?? 0;
    if (perTryArmed(perTry, this.globalTimeoutMs)) a.timer = setTimeout(onPerTryTimeout, perTry, a);
    ep.pool.request(a);
  }

  /** Retry this failure if the policy, the limits and the body allow; schedules the retry. */
  decide(kind: FailureKind, status: number): Decision {
    const s = this.s;
    if (this.policy === null || s.done || s.committed) return 'no';
    const r = (this.retry ??= new RetryState(this.policy));
    const d = r.decide(kind, status, this.cluster, s.canReplay(), s.info);
    if (d === 'retry') {
      (this.previous ??= []).push(this.current!.ep);
      this.current = null;
      this.backoffTimer = setTimeout(onBackoffDone, r.nextDelayMs(), this);
    }
    return d;
  }
}

function onBackoffDone(fw: Forward): void {
  try { fw.attempt(); } catch (e) { fw.s.fail('router', e); }
}

function onGlobalTimeout(fw: Forward): void {
  fw.globalTimer = null;
  if (fw.s.done) return;
  try {
    const cluster = fw.cluster;
    cluster.stats.upstream_rq_timeout++;
    const a = fw.current;
    if (a) {
      if (a.conn) { a.ep.pool.hostStats.rq_timeout++; cluster.detector?.onLocalOrigin(a.ep.outlier, 'timeout'); }
      a.abandon();
    }
    // Never retried (spec section 4.1).
    fw.reply(504, BODY.timeout, Flag.UT);
  } catch (e) { fw.s.fail('router', e); }
}

function onPerTryTimeout(a: Attempt): void {
  a.timer = null;
  const fw = a.fw;
  if (a.finished || fw.s.done) return;
  try {
    const cluster = fw.cluster;
    cluster.stats.upstream_rq_per_try_timeout++;
    if (a.conn) { a.ep.pool.hostStats.rq_timeout++; cluster.detector?.onLocalOrigin(a.ep.outlier, 'timeout'); }
    a.abandon();
    if (fw.decide('per_try_timeout', 0) === 'retry') return;
    fw.reply(504, BODY.timeout, Flag.UT);
  } catch (e) { fw.s.fail('router', e); }
}

/** One try: the pool's waiter, then the engine's handler for the upstream exchange (and a tunnel's owner). */
class Attempt implements Waiter, ResponseHandler, TunnelOwner {
  readonly fw: Forward;
  readonly ep: Endpoint;
  conn: Conn | null = null;
  timer: NodeJS.Timeout | null = null;
  finished = false;
  discarding = false;
  span: ActiveSpan | null = null;
  /** The pool must open a new connection for this attempt (see Waiter.fresh). */
  readonly fresh: boolean;
  private gotHeaders = false;
  /** When the attempt started (monotonic ms): PEAK_EWMA's RTT runs to the first response byte. */
  private readonly sentAt = performance.now();

  /** For a useClientProtocol pool: the request came over HTTP/2. */
  get downstreamH2(): boolean { return this.fw.s.req.httpVersion === '2'; }

  constructor(fw: Forward, ep: Endpoint, fresh: boolean) {
    this.fw = fw;
    this.ep = ep;
    this.fresh = fresh;
  }

  private endSpan(status: number, error: boolean): void {
    const a = this.span;
    if (a === null) return;
    this.span = null;
    const s = this.fw.s;
    s.tracing!.end(a, status, s.info.flagString(), error);
  }

  /** Stop this attempt (timeout, retry of a status, downstream reset). */
  abandon(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.span !== null) this.endSpan(0, true);
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.conn) {
      const c = this.conn;
      this.conn = null;
      c.h1!.abort();
      c.pool.release(c, false);
    } else {
      this.ep.pool.cancel(this);
    }
  }

  private settle(reusable: boolean): void {
    this.finished = true;
    if (this.span !== null) this.endSpan(this.fw.s.info.status, !reusable || this.fw.s.info.status >= 500);
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const c = this.conn;
    this.conn = null;
    if (c) c.pool.release(c, reusable);
  }

  // --- pool waiter (guarded entries) ---
  onAttached(conn: Conn): void {
    try { this.attached(conn); } catch (e) { this.fw.s.fail('router', e); }
  }

  onPoolFailure(reason: PoolFailure, detail: string): void {
    try { this.poolFailure(reason, detail); } catch (e) { this.fw.s.fail('router', e); }
  }

  // --- engine response handler (guarded entries) ---
  onResponseStart(_conn: ClientConnection, statusCode: number, rawHeaders: string[], statusMessage: string): void {
    try { this.responseStart(statusCode, rawHeaders, statusMessage); } catch (e) { this.fw.s.fail('router', e); }
  }

  onResponseData(conn: ClientConnection, chunk: Buffer): void {
    if (this.finished || this.discarding) return;
    try {
      if (!this.fw.s.sendData(chunk)) {
        conn.pause();
        // Only while this attempt still owns the connection: once released, it belongs to another request.
        this.fw.s.res.onceDrain(() => { if (!this.finished) conn.resume(); });
      }
    } catch (e) { this.fw.s.fail('router', e); }
  }

  onResponseEnd(conn: ClientConnection): void {
    try { this.responseEnd(conn); } catch (e) { this.fw.s.fail('router', e); }
  }

  onResponseError(_conn: ClientConnection, err: Error): void {
    try { this.responseError(err); } catch (e) { this.fw.s.fail('router', e); }
  }

  onUpgrade(conn: ClientConnection, status: number, rawHeaders: string[], reason: string, head: Buffer): void {
    try { this.switched(conn.socket, status, rawHeaders, reason, head); } catch (e) { conn.socket.destroy(); this.fw.s.fail('router', e); }
  }

  // --- tunnel owner ---
  get s(): HttpStream { return this.fw.s; }
  get cluster(): Cluster { return this.fw.cluster; }
  get stats() { return this.fw.upgradeStats; }

  onTunnelClosed(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.span !== null) this.endSpan(this.fw.s.info.status, false);
    const c = this.conn;
    this.conn = null;
    if (this.fw.current === this) this.fw.current = null;
    if (c) c.pool.release(c, false);
  }

  /** The upstream switched (101), or a CONNECT's connection is up: the tunnel starts. */
  private switched(up: Socket, status: number, rawHeaders: string[], reason: string | undefined, head: Buffer): void {
    if (this.finished) { up.destroy(); return; }
    const fw = this.fw;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    fw.clearTimers();
    this.gotHeaders = true;
    fw.cluster.detector?.onStatus(this.ep.outlier, status);
    this.ep.pool.hostStats.rq_success++;
    if (fw.retried) fw.cluster.stats.upstream_rq_retry_success++;
    chargeCode(fw.cluster.stats, status);
    if (startTunnel(this, status, reason, rawHeaders, up, head) === null) this.onTunnelClosed();
  }

  private attached(conn: Conn): void {
    if (this.finished) { conn.pool.release(conn, true); return; }
    const fw = this.fw;
    const s = fw.s;
    this.conn = conn;
    fw.cluster.detector?.onConnectSuccess(this.ep.outlier);
    // CONNECT terminated here (Envoy's connect_config): the new connection carries the payload raw.
    if (fw.connect) {
      // A tunnel needs a raw HTTP/1.1 connection; an HTTP/2 session cannot be detached (WebSocket
      // and CONNECT over HTTP/2, RFC 8441 extended CONNECT, are not built).
      // onRequest refuses tunnels to HTTP/2-only clusters, so this is an HTTP/1.1 connection.
      this.switched((conn.h1 as ClientConnection).detach(), 200, [], undefined, Buffer.alloc(0));
      return;
    }
    const headers = s.headers.slice();
    headers.push('x-envoy-attempt-count', String(s.info.attempts));
    // Per-try if armed, else what is left of the global timeout (less on a retry).
    const expected = this.timer ? fw.policy!.perTryTimeoutMs
      : fw.globalTimeoutMs > 0 ? Math.floor(fw.globalTimeoutMs - (s.info.attempts > 1 ? performance.now() - fw.timeoutStart : 0)) : 0;
    if (expected > 0) headers.push('x-envoy-expected-rq-timeout-ms', String(expected));
    // gRPC: the deadline goes on as grpc-timeout, less the time already spent here (Envoy).
    if (s.info.grpc && fw.globalTimeoutMs > 0) setGrpcTimeout(headers, this.timer ? expected : fw.globalTimeoutMs - (performance.now() - fw.timeoutStart));
    if (this.span !== null) injectHeaders(headers, this.span.ctx, this.span.spanId, true);
    const body = s.body ?? null;
    if (body !== null && !Buffer.isBuffer(body)) {
      if (s.bodyUsed) { this.responseError(new Error('request body already consumed')); return; }
      s.bodyUsed = true;
    }
    const max = conn.pool.br.limits.maxRequestsPerConnection;
    conn.h1!.dispatch({
      path: s.path, method: s.method, headers, body,
      // Ask for close on the connection's last allowed request.
      reset: max > 0 && conn.requests >= max,
      // A buffered (replayable) chunked body keeps its trailers; a streamed one carries them itself.
      trailers: body !== null && Buffer.isBuffer(body) ? s.req.trailers : null,
      upgrade: fw.upgrade ?? undefined,
    }, this);
  }

  private poolFailure(reason: PoolFailure, detail: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.span !== null) this.endSpan(503, true);
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const fw = this.fw;
    if (fw.s.done) return;
    if (reason === 'overflow') {
      // Never retried, never fed to outlier detection (Envoy >= 1.26).
      fw.reply(503, fw.retried ? resetBody('overflow', true) : BODY.overflow, Flag.UO, OVERLOADED);
      return;
    }
    fw.cluster.detector?.onLocalOrigin(this.ep.outlier, 'connect');
    if (fw.decide('connect', 0) === 'retry') return;
    const body = reason === 'connect_timeout'
      ? resetBody('connection timeout', fw.retried)
      : resetBody('remote connection failure', fw.retried, detail);
    fw.reply(503, body, Flag.UF);
  }

  private responseStart(statusCode: number, rawHeaders: string[], statusMessage: string): void {
    if (this.finished) return;
    this.gotHeaders = true;
    const fw = this.fw;
    const cluster = fw.cluster;
    cluster.detector?.onStatus(this.ep.outlier, statusCode);
    cluster.observeRtt(this.ep, performance.now() - this.sentAt);
    if (statusCode >= 500) this.ep.pool.hostStats.rq_error++; else this.ep.pool.hostStats.rq_success++;
    // Envoy counts a retry as successful when the next result is one the policy would not retry.
    // Only a status the policy might retry, or one that settles a retry in flight, needs a decision.
    // gRPC conditions read grpc-status from the response headers (a trailers-only response).
    let kind: FailureKind = 'status';
    let code = statusCode;
    if (fw.policy !== null && fw.policy.grpcOn && fw.s.info.grpc) {
      const gs = grpcStatusOf(rawHeaders);
      if (gs > 0) { kind = 'grpc'; code = gs; }
    }
    const d = fw.policy !== null && (kind === 'grpc' || statusCode >= 400 || (fw.retry !== null && fw.retry.holding)) ? fw.decide(kind, code) : 'no';
    if (d === 'retry') {
      chargeCode(cluster.stats, statusCode);
      this.discarding = true;
      this.abandon();
      return;
    }
    if (fw.retried && d === 'no') cluster.stats.upstream_rq_retry_success++;
    chargeCode(cluster.stats, statusCode);
    if (fw.setCookie !== null) rawHeaders.push('set-cookie', fw.setCookie);
    fw.s.sendHeaders(statusCode, statusMessage, rawHeaders);
  }

  private responseEnd(conn: ClientConnection): void {
    if (this.finished) return;
    const fw = this.fw;
    // A response that closes its connection must not hand the connection to a waiting request.
    const close = conn.closed || (this.conn !== null && this.conn.closed);
    this.settle(!close);
    fw.current = null;
    fw.s.sendEnd(conn.trailers); // chunked trailers (gRPC status) pass through
  }

  private responseError(err: Error): void {
    if (this.finished) return;
    const fw = this.fw;
    const s = fw.s;
    const reused = this.conn !== null && this.conn.requests > 1;
    this.settle(false);
    if (s.done) return;
    if ((err as UpstreamError).downstream === true) {
      // The client's side failed the body (it went away): DC, not the upstream's failure.
      fw.current = null;
      if (s.committed) s.res.destroy();
      s.downstreamReset();
      return;
    }
    const cluster = fw.cluster;
    if (s.committed) {
      // Upstream reset mid-response: reset the client too, never a truncated body presented as complete.
      cluster.stats.upstream_cx_destroy_remote_with_active_rq++;
      fw.current = null;
      s.reset(Flag.UC);
      return;
    }
    if ((err as UpstreamError).protocol === true) {
      cluster.stats.upstream_cx_protocol_error++;
      cluster.detector?.onStatus(this.ep.outlier, 502);
      if (fw.decide('reset', 0) === 'retry') return;
      fw.reply(502, resetBody('protocol error', fw.retried), Flag.UPE);
      return;
    }
    // The connection died before any response byte: a keep-alive connection the server closed as
    // we reused it, or an upstream that was killed with the request in flight. An idempotent
    // request (RFC 9110 section 9.2.2) is sent again, to another host when there is one, so an
    // endpoint dying under load fails no GET. Not a retry of the route policy: once per request
    // after a fresh connection died, and up to MAX_STALE_RESENDS times after reused ones (an
    // upstream that closes every connection after its response without saying `Connection:
    // close` can leave several stale idle connections; each failure used one of them up).
    if (!this.gotHeaders && s.canReplay() && idempotent(s.method)
      && (reused ? fw.staleResends < MAX_STALE_RESENDS : !fw.freshResendDone)) {
      if (reused) { fw.staleResends++; fw.freshConnection = true; } else fw.freshResendDone = true;
      // A fresh connection that died is the host's failure (a reused one may just have raced
      // the server's keep-alive close): counted and fed to outlier detection as below.
      if (!reused) {
        cluster.stats.upstream_cx_destroy_remote_with_active_rq++;
        cluster.detector?.onLocalOrigin(this.ep.outlier, 'connect');
      }
      (fw.previous ??= []).push(this.ep);
      fw.current = null;
      fw.attempt();
      return;
    }
    cluster.stats.upstream_cx_destroy_remote_with_active_rq++;
    cluster.detector?.onLocalOrigin(this.ep.outlier, 'connect');
    if (fw.decide('reset', 0) === 'retry') return;
    fw.reply(503, resetBody('connection termination', fw.retried), Flag.UC);
  }
}
