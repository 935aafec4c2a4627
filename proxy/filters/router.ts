// The router stage (Envoy's router filter): attempts against the chosen cluster with the route's
// timeouts and retry policy, and the response streamed back. One Exchange per request, one
// Attempt per try; an Attempt is both the pool's waiter and the engine's response handler, so a
// request allocates no closures for features it does not use.
import type { ServerRequest, ServerResponse } from '../engine/server.ts';
import type { ClientConnection, ResponseHandler, UpstreamError } from '../engine/client.ts';
import { BODY, localReply, resetBody } from '../local-reply.ts';
import { applyOps, downstreamResponseHeaders } from '../listener/headers.ts';
import type { Cluster, Endpoint } from '../upstream/cluster.ts';
import { retryLimit, type Conn, type PoolFailure, type Waiter } from '../upstream/pool.ts';
import { chargeCode } from '../telemetry/stats.ts';
import { Backoff, accepts, type FailureKind, type RetryPolicy } from './retry.ts';
import type { CompiledRoute, Destination } from './route.ts';
import type { HeaderOpsSpec } from '../config/schema.ts';
import { injectHeaders, type ActiveSpan, type TraceContext, type Tracing } from '../telemetry/tracing.ts';

/** Envoy's order for joined flags (e.g. `UF,URX`). */
const FLAG_ORDER = ['UH', 'UT', 'LR', 'UR', 'UF', 'UC', 'UO', 'NR', 'DI', 'FI', 'DC', 'URX', 'UPE', 'NC', 'IH', 'SI'];

/** Resends of an idempotent request after reused keep-alive connections died under it. */
const MAX_STALE_RESENDS = 3;

export const RETRY_BUFFER_LIMIT = 1024 * 1024; // Envoy's per_connection_buffer_limit_bytes default

export interface ExchangeHooks {
  /** Called once when the exchange ends (response finished, reset, or local reply). */
  onDone(ex: Exchange): void;
}

export class Exchange {
  readonly req: ServerRequest;
  readonly res: ServerResponse;
  readonly start = performance.now();
  method: string;
  path: string;
  headers: string[];
  route: CompiledRoute | null = null;
  dest: Destination | null = null;
  cluster: Cluster | null = null;
  /** Request body: null (none), a Buffer (replayable) or the downstream request (streamed, single use). */
  body: Buffer | ServerRequest | null = null;
  bodyUsed = false;
  flags: string[] | null = null;
  status = 0;
  bytesOut = 0;
  upstreamHost: string | null = null;
  retry: RetryPolicy | null = null;
  retriesLeft = 0;
  retried = false;
  retriesHeld = 0;
  /** The once-per-request resend after a fresh connection died before any response byte was used. */
  freshResendDone = false;
  /** Resends after a reused keep-alive connection died before any response byte (bounded). */
  staleResends = 0;
  /** The next attempt must use a new connection (the last reused one was stale). */
  freshConnection = false;
  attempts = 0;
  globalTimeoutMs = 0;
  /** When the global timeout started (monotonic ms); set only when there is one. */
  timeoutStart = 0;
  committed = false;
  done = false;
  current: Attempt | null = null;
  previous: Endpoint[] | null = null;
  backoff: Backoff | null = null;
  globalTimer: NodeJS.Timeout | null = null;
  backoffTimer: NodeJS.Timeout | null = null;
  responseOps: HeaderOpsSpec[] | null = null;
  hooks: ExchangeHooks;
  dtabOverride = false;
  requestId = '';
  /** Set only for sampled requests: the tracer and the parent of this hop's spans. */
  tracing: Tracing | null = null;
  traceParent: TraceContext | null = null;
  serverSpan: ActiveSpan | null = null;
  /** An edge (strip) listener also removes l5d-* response headers: they reveal mesh internals. */
  stripL5dResponse = false;
  /** For the access log: the trace this request belongs to, when tracing is on. */
  traceId: string | null = null;
  /** The downstream side ended the stream (idle timeout, body over the limit): no upstream stats. */
  downstreamEnded = false;

  constructor(req: ServerRequest, res: ServerResponse, headers: string[], hooks: ExchangeHooks) {
    this.req = req;
    this.res = res;
    this.method = req.method;
    this.path = req.url;
    this.headers = headers;
    this.hooks = hooks;
  }

  addFlag(f: string): void {
    const fl = (this.flags ??= []);
    if (!fl.includes(f)) { fl.push(f); fl.sort((a, b) => FLAG_ORDER.indexOf(a) - FLAG_ORDER.indexOf(b)); }
  }

  flagString(): string { return this.flags ? this.flags.join(',') : '-'; }
}

/** Reply locally (no upstream response) and end the exchange. */
export function finishLocal(ex: Exchange, status: number, body: string, flag: string | null, extra?: Record<string, string>): void {
  if (ex.done) return;
  if (flag) ex.addFlag(flag);
  ex.status = status;
  if (ex.committed) ex.res.destroy(); // a reply already started cannot be replaced: reset it
  else localReply(ex.res, status, body, ex.flags ? ex.flags.join(',') : null, extra);
  end(ex);
}

function end(ex: Exchange): void {
  if (ex.done) return;
  ex.done = true;
  if (ex.globalTimer) clearTimeout(ex.globalTimer);
  if (ex.backoffTimer) clearTimeout(ex.backoffTimer);
  if (ex.retriesHeld > 0) releaseRetry(ex);
  // Router-made replies are charged to the cluster; a fault abort never reached the router, and
  // a stream the connection manager ended itself (idle timeout, body too large) is not the upstream's.
  if (ex.cluster && ex.status > 0 && !ex.committed && !ex.downstreamEnded && !(ex.flags !== null && ex.flags.includes('FI'))) chargeCode(ex.cluster.stats, ex.status);
  ex.hooks.onDone(ex);
}

/**
 * Read up to the retry buffer limit of the request body so it can be replayed; a larger body is
 * streamed (prefix first) and its request is then not retried once sent.
 */
export function prepareBody(ex: Exchange, wantReplay: boolean, cb: () => void): void {
  const req = ex.req;
  if (!req.hasBody) { ex.body = null; cb(); return; }
  if (!wantReplay || req.contentLength > RETRY_BUFFER_LIMIT) {
    if (wantReplay && ex.cluster) ex.cluster.stats.retry_or_shadow_abandoned++;
    ex.body = req;
    cb();
    return;
  }
  req.collect(RETRY_BUFFER_LIMIT, (body) => {
    if (body === null) {
      // Longer than the limit (chunked): streamed, prefix first, and not replayed.
      if (ex.cluster) ex.cluster.stats.retry_or_shadow_abandoned++;
      ex.body = req;
    } else ex.body = body;
    cb();
  });
}

/** Start forwarding: timers, downstream-reset handling, first attempt. */
export function forward(ex: Exchange): void {
  if (ex.retry) ex.retriesLeft = ex.retry.numRetries; // the Backoff is made by the first retry
  if (ex.globalTimeoutMs > 0) {
    ex.timeoutStart = performance.now();
    ex.globalTimer = setTimeout(onGlobalTimeout, ex.globalTimeoutMs, ex);
  }
  startAttempt(ex);
}

/**
 * The downstream connection closed before the response finished: Envoy's DC. The attempt is
 * abandoned (its upstream connection closed: it is mid-message) with no outlier event and no
 * upstream error stats; the exchange keeps the status it had (0 when nothing was answered).
 */
export function onDownstreamReset(ex: Exchange): void {
  if (ex.done) return;
  ex.addFlag('DC');
  ex.current?.abandon();
  ex.current = null;
  ex.status = ex.status || 0;
  end(ex);
}

/**
 * The server ends the stream itself: 408 `stream timeout` with flag SI (Envoy's stream idle
 * timeout), or 413 for a body over the limit. The attempt is abandoned as for a reset: no
 * outlier event, nothing charged to the upstream. A response already started is reset.
 */
export function onStreamError(ex: Exchange, status: 408 | 413): void {
  if (ex.done) return;
  ex.downstreamEnded = true;
  ex.current?.abandon();
  ex.current = null;
  if (ex.committed) {
    // The response started: reset it, keeping the status that was sent.
    if (status === 408) ex.addFlag('SI');
    ex.res.destroy();
    end(ex);
  } else if (status === 408) finishLocal(ex, 408, 'stream timeout', 'SI');
  else finishLocal(ex, 413, 'Payload Too Large', null);
}

function startAttempt(ex: Exchange): void {
  ex.backoffTimer = null;
  if (ex.done) return;
  const cluster = ex.cluster!;
  const ep = cluster.pick(ex.previous);
  if (!ep) {
    cluster.stats.upstream_cx_none_healthy++;
    finishLocal(ex, 503, BODY.noHealthy, 'UH');
    return;
  }
  ex.attempts++;
  ex.upstreamHost = ep.key;
  const a = new Attempt(ex, ep, ex.freshConnection);
  ex.freshConnection = false;
  ex.current = a;
  if (ex.tracing !== null) {
    a.span = ex.tracing.startSpan(ex.method, 'client', ex.traceParent, {
      'http.request.method': ex.method, 'url.path': ex.path, 'server.address': ep.spec.address, 'server.port': ep.spec.port,
      'meshlet.upstream_cluster': cluster.name, 'meshlet.subset': cluster.spec.subset, 'http.request.resend_count': ex.attempts - 1,
      'meshlet.dtab_override': ex.dtabOverride,
    });
  }
  const perTry = ex.retry?.perTryTimeoutMs ?? 0;
  // A per-try timeout at or above a non-zero global timeout is ignored (Envoy).
  if (perTry > 0 && (ex.globalTimeoutMs === 0 || perTry < ex.globalTimeoutMs)) a.timer = setTimeout(onPerTryTimeout, perTry, a);
  ep.pool.request(a);
}

/** RFC 9110 section 9.2.2: safe to send again. */
function idempotent(m: string): boolean {
  return m === 'GET' || m === 'HEAD' || m === 'OPTIONS' || m === 'PUT' || m === 'DELETE' || m === 'TRACE';
}

function canReplay(ex: Exchange): boolean {
  return !ex.bodyUsed || ex.body === null || Buffer.isBuffer(ex.body);
}

/** The retry breaker slot an exchange holds from scheduling a retry until its next result. */
function releaseRetry(ex: Exchange): void {
  const c = ex.cluster!;
  c.br.retriesActive -= ex.retriesHeld;
  ex.retriesHeld = 0;
  c.stats['circuit_breakers.default.rq_retry_open'] = c.br.retriesActive >= retryLimit(c.br) ? 1 : 0;
}

/**
 * Envoy's shouldRetry for a failure: Retry = scheduled; No = the policy does not retry this
 * result; Refused = it would, but the limit, the breaker or the budget said no. Either way but
 * Retry the failure goes to the client.
 */
type Decision = 'retry' | 'no' | 'refused';

function retryOrGiveUp(ex: Exchange, kind: FailureKind, status = 0): Decision {
  const p = ex.retry;
  if (!p || ex.done || ex.committed) return 'no';
  // Envoy's resetRetry(): the slot taken for the previous retry is given back at this result.
  if (ex.retriesHeld > 0) releaseRetry(ex);
  if (!accepts(p, kind, status)) return 'no';
  // A streamed body already sent cannot be replayed; connect failures never consumed it.
  if (!canReplay(ex)) return 'no';
  const cluster = ex.cluster!;
  if (ex.retriesLeft === 0) {
    cluster.stats.upstream_rq_retry_limit_exceeded++;
    ex.addFlag('URX');
    return 'refused';
  }
  ex.retriesLeft--;
  const br = cluster.br;
  // The breaker (max_retries, or Istio's retryBudget in its place), then meshlet's rate budget if
  // one was configured (--retry-budget-*): none by default, as Istio configures none.
  const limit = retryLimit(br);
  if (br.retriesActive >= limit || (cluster.budget !== null && !cluster.budget.tryWithdraw())) {
    cluster.stats.upstream_rq_retry_overflow++;
    ex.addFlag('UO');
    return 'refused';
  }
  br.retriesActive++;
  ex.retriesHeld = 1;
  if (br.retriesActive >= limit) cluster.stats['circuit_breakers.default.rq_retry_open'] = 1;
  cluster.stats.upstream_rq_retry++;
  cluster.stats.upstream_rq_retry_backoff_exponential++;
  if (kind === 'status') cluster.stats.retryCodes.set(status, (cluster.stats.retryCodes.get(status) ?? 0) + 1);
  ex.retried = true;
  (ex.previous ??= []).push(ex.current!.ep);
  ex.current = null;
  ex.backoffTimer = setTimeout(startAttempt, (ex.backoff ??= new Backoff()).next(), ex);
  return 'retry';
}

function onGlobalTimeout(ex: Exchange): void {
  ex.globalTimer = null;
  if (ex.done) return;
  const cluster = ex.cluster!;
  cluster.stats.upstream_rq_timeout++;
  const a = ex.current;
  if (a) {
    if (a.conn) { a.ep.pool.hostStats.rq_timeout++; cluster.detector?.onLocalOrigin(a.ep.outlier, 'timeout'); }
    a.abandon();
  }
  ex.current = null;
  // Never retried (spec section 4.1).
  finishLocal(ex, 504, BODY.timeout, 'UT');
}

function onPerTryTimeout(a: Attempt): void {
  a.timer = null;
  const ex = a.ex;
  if (a.finished || ex.done) return;
  const cluster = ex.cluster!;
  cluster.stats.upstream_rq_per_try_timeout++;
  if (a.conn) { a.ep.pool.hostStats.rq_timeout++; cluster.detector?.onLocalOrigin(a.ep.outlier, 'timeout'); }
  a.abandon();
  if (retryOrGiveUp(ex, 'per_try_timeout') === 'retry') return;
  ex.current = null;
  finishLocal(ex, 504, BODY.timeout, 'UT');
}


const OVERLOADED = { 'x-envoy-overloaded': 'true' };

/** One try: the pool's waiter, then the engine's handler for the upstream exchange. */
export class Attempt implements Waiter, ResponseHandler {
  readonly ex: Exchange;
  readonly ep: Endpoint;
  conn: Conn | null = null;
  timer: NodeJS.Timeout | null = null;
  finished = false;
  discarding = false;
  span: ActiveSpan | null = null;
  /** The pool must open a new connection for this attempt (see Waiter.fresh). */
  readonly fresh: boolean;
  private gotHeaders = false;

  constructor(ex: Exchange, ep: Endpoint, fresh: boolean) {
    this.ex = ex;
    this.ep = ep;
    this.fresh = fresh;
  }

  private endSpan(status: number, error: boolean): void {
    const a = this.span;
    if (a === null) return;
    this.span = null;
    this.ex.tracing!.end(a, status, this.ex.flagString(), error);
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
    if (this.span !== null) this.endSpan(this.ex.status, !reusable || this.ex.status >= 500);
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const c = this.conn;
    this.conn = null;
    if (c) c.pool.release(c, reusable);
  }

  // --- pool waiter ---
  onAttached(conn: Conn): void {
    if (this.finished) { conn.pool.release(conn, true); return; }
    const ex = this.ex;
    this.conn = conn;
    ex.cluster!.detector?.onConnectSuccess(this.ep.outlier);
    const headers = ex.headers.slice();
    headers.push('x-envoy-attempt-count', String(ex.attempts));
    // Per-try if armed, else what is left of the global timeout (less on a retry).
    const expected = this.timer ? ex.retry!.perTryTimeoutMs
      : ex.globalTimeoutMs > 0 ? Math.floor(ex.globalTimeoutMs - (ex.attempts > 1 ? performance.now() - ex.timeoutStart : 0)) : 0;
    if (expected > 0) headers.push('x-envoy-expected-rq-timeout-ms', String(expected));
    if (this.span !== null) injectHeaders(headers, this.span.ctx, this.span.spanId, true);
    const body = ex.body;
    if (body !== null && !Buffer.isBuffer(body)) {
      if (ex.bodyUsed) { this.onResponseError(conn.h1!, new Error('request body already consumed')); return; }
      ex.bodyUsed = true;
    }
    const max = conn.pool.br.limits.maxRequestsPerConnection;
    conn.h1!.dispatch({
      path: ex.path, method: ex.method, headers, body,
      // Ask for close on the connection's last allowed request.
      reset: max > 0 && conn.requests >= max,
      // A buffered (replayable) chunked body keeps its trailers; a streamed one carries them itself.
      trailers: body !== null && Buffer.isBuffer(body) ? ex.req.trailers : null,
    }, this);
  }

  onPoolFailure(reason: PoolFailure, detail: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.span !== null) this.endSpan(503, true);
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const ex = this.ex;
    if (ex.done) return;
    if (reason === 'overflow') {
      // Never retried, never fed to outlier detection (Envoy >= 1.26).
      ex.current = null;
      finishLocal(ex, 503, ex.retried ? resetBody('overflow', true) : BODY.overflow, 'UO', OVERLOADED);
      return;
    }
    ex.cluster!.detector?.onLocalOrigin(this.ep.outlier, 'connect');
    if (retryOrGiveUp(ex, 'connect') === 'retry') return;
    ex.current = null;
    const body = reason === 'connect_timeout'
      ? resetBody('connection timeout', ex.retried)
      : resetBody('remote connection failure', ex.retried, detail);
    finishLocal(ex, 503, body, 'UF');
  }

  // --- engine response handler ---
  onResponseStart(_conn: ClientConnection, statusCode: number, rawHeaders: string[], statusMessage: string): void {
    if (this.finished) return;
    this.gotHeaders = true;
    const ex = this.ex;
    const cluster = ex.cluster!;
    cluster.detector?.onStatus(this.ep.outlier, statusCode);
    if (statusCode >= 500) this.ep.pool.hostStats.rq_error++; else this.ep.pool.hostStats.rq_success++;
    // Envoy counts a retry as successful when the next result is one the policy would not retry.
    const d = ex.retry !== null && (statusCode >= 400 || ex.retriesHeld > 0) ? retryOrGiveUp(ex, 'status', statusCode) : 'no';
    if (d === 'retry') {
      chargeCode(cluster.stats, statusCode);
      this.discarding = true;
      this.abandon();
      return;
    }
    if (ex.retried && d === 'no') cluster.stats.upstream_rq_retry_success++;
    ex.committed = true;
    ex.status = statusCode;
    chargeCode(cluster.stats, statusCode);
    const out = downstreamResponseHeaders(rawHeaders);
    if (ex.stripL5dResponse) {
      for (let i = out.length - 2; i >= 0; i -= 2) if (out[i].length > 4 && out[i].toLowerCase().startsWith('l5d-')) out.splice(i, 2);
    }
    if (ex.responseOps) for (const ops of ex.responseOps) applyOps(out, ops);
    if (ex.flags) out.push('x-meshlet-flags', ex.flags.join(','));
    const res = ex.res;
    if (res.destroyed) return;
    res.writeHead(statusCode, statusMessage || undefined, out);
  }

  onResponseData(conn: ClientConnection, chunk: Buffer): void {
    if (this.finished || this.discarding) return;
    const ex = this.ex;
    ex.bytesOut += chunk.length;
    if (!ex.res.write(chunk)) {
      conn.pause();
      // Only while this attempt still owns the connection: once released, it belongs to another request.
      ex.res.onceDrain(() => { if (!this.finished) conn.resume(); });
    }
  }

  onResponseEnd(conn: ClientConnection): void {
    if (this.finished) return;
    const ex = this.ex;
    // A response that closes its connection must not hand the connection to a waiting request.
    const close = conn.closed || (this.conn !== null && this.conn.closed);
    this.settle(!close);
    ex.current = null;
    ex.res.end(undefined, conn.trailers); // chunked trailers (gRPC status) pass through
    end(ex);
  }

  onResponseError(_conn: ClientConnection, err: Error): void {
    if (this.finished) return;
    const ex = this.ex;
    const reused = this.conn !== null && this.conn.requests > 1;
    this.settle(false);
    if (ex.done) return;
    if ((err as UpstreamError).downstream === true) {
      // The client's side failed the body (it went away): DC, not the upstream's failure.
      ex.current = null;
      if (ex.committed) ex.res.destroy();
      onDownstreamReset(ex);
      return;
    }
    const cluster = ex.cluster!;
    if (ex.committed) {
      // Upstream reset mid-response: reset the client too, never a truncated body presented as complete.
      cluster.stats.upstream_cx_destroy_remote_with_active_rq++;
      ex.addFlag('UC');
      ex.current = null;
      ex.res.destroy();
      end(ex);
      return;
    }
    const protocol = (err as UpstreamError).protocol === true;
    if (protocol) {
      cluster.stats.upstream_cx_protocol_error++;
      cluster.detector?.onStatus(this.ep.outlier, 502);
      if (retryOrGiveUp(ex, 'reset') === 'retry') return;
      ex.current = null;
      finishLocal(ex, 502, resetBody('protocol error', ex.retried), 'UPE');
      return;
    }
    // The connection died before any response byte: a keep-alive connection the server closed as
    // we reused it, or an upstream that was killed with the request in flight. An idempotent
    // request (RFC 9110 section 9.2.2) is sent again, to another host when there is one, so an
    // endpoint dying under load fails no GET. Not a retry of the route policy: once per request
    // after a fresh connection died, and up to MAX_STALE_RESENDS times after reused ones (an
    // upstream that closes every connection after its response without saying `Connection:
    // close` can leave several stale idle connections; each failure used one of them up).
    if (!this.gotHeaders && canReplay(ex) && idempotent(ex.method)
      && (reused ? ex.staleResends < MAX_STALE_RESENDS : !ex.freshResendDone)) {
      if (reused) { ex.staleResends++; ex.freshConnection = true; } else ex.freshResendDone = true;
      // A fresh connection that died is the host's failure (a reused one may just have raced
      // the server's keep-alive close): counted and fed to outlier detection as below.
      if (!reused) {
        cluster.stats.upstream_cx_destroy_remote_with_active_rq++;
        cluster.detector?.onLocalOrigin(this.ep.outlier, 'connect');
      }
      (ex.previous ??= []).push(this.ep);
      ex.current = null;
      startAttempt(ex);
      return;
    }
    cluster.stats.upstream_cx_destroy_remote_with_active_rq++;
    cluster.detector?.onLocalOrigin(this.ep.outlier, 'connect');
    if (retryOrGiveUp(ex, 'reset') === 'retry') return;
    ex.current = null;
    finishLocal(ex, 503, resetBody('connection termination', ex.retried), 'UC');
  }
}
