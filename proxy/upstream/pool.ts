// The endpoint level: one connection pool per upstream host, with Envoy's HTTP/1.1 circuit
// breaker semantics (envoy-semantics.md section 2). Each connection is one engine
// ClientConnection on a socket we connect ourselves, so the pool knows exactly when a connection
// is ready, can hold requests in a bounded pending queue, and can count connections against
// cluster limits.
import { connect as netConnect, type Socket } from 'node:net';
import { ClientConnection, type UpstreamConnection } from '../engine/client.ts';
import type { ConnectionPoolSpec } from '../config/schema.ts';
import type { ClusterStats } from '../telemetry/stats.ts';

/** Limits and counters shared by every host of one cluster (Envoy: cluster x priority). */
export interface Breakers {
  limits: ConnectionPoolSpec;
  stats: ClusterStats;
  cxActive: number;
  rqActive: number;
  pendingActive: number;
  retriesActive: number;
  /** Hosts whose backoffUntil is set: 0 lets the balancer skip its per-host pass. */
  hostsInBackoff: number;
}

/**
 * How many retries may be outstanding now: Envoy's retry_budget when configured (a share of the
 * active and pending requests, truncated, at least the minimum), else max_retries.
 */
export function retryLimit(br: Breakers): number {
  const b = br.limits.retryBudget;
  if (b === undefined) return br.limits.maxRetries;
  return Math.max(b.minRetryConcurrency, Math.floor(b.percent / 100 * (br.rqActive + br.pendingActive)));
}

export type PoolFailure = 'overflow' | 'connect_failure' | 'connect_timeout';

/** A request waiting for (or holding) a connection. */
export interface Waiter {
  /**
   * Only a new connection will do: the request is being resent because a reused keep-alive
   * connection died under it, and the host's other idle ones may be just as stale.
   */
  readonly fresh: boolean;
  /** The request arrived over HTTP/2 (a useClientProtocol pool sends it on over HTTP/2 too). */
  readonly downstreamH2?: boolean;
  onAttached(conn: Conn): void;
  onPoolFailure(reason: PoolFailure, detail: string): void;
}

export interface HostStats {
  cx_active: number; cx_connect_fail: number; cx_total: number;
  rq_active: number; rq_error: number; rq_success: number; rq_timeout: number; rq_total: number;
}

export class Conn {
  /** The exchange's connection: HTTP/1.1, or one HTTP/2 stream (H2Pool). */
  h1: UpstreamConnection | null = null;
  pool: EndpointPool;
  requests = 0;
  busy = false;
  closed = false;
  constructor(pool: EndpointPool) { this.pool = pool; }
}

/**
 * After a failed connect the balancer passes a host over for a while (a refused connect never
 * accumulates active requests, so LEAST_REQUEST would otherwise keep choosing a dead host):
 * 100 ms doubling per consecutive failure up to 3 s; the first request after that is the probe.
 * A successful connect clears it. Independent of outlier detection, which Istio leaves off by
 * default and whose 10 % ejection cap ejects nothing below 10 hosts.
 */
export const CONNECT_BACKOFF_BASE_MS = 100;
export const CONNECT_BACKOFF_MAX_MS = 3_000;

/**
 * Opens the transport to an upstream host when it is not plain TCP (proxy/identity/tls.ts: mTLS
 * origination): the socket to speak HTTP on, and the event that says it is ready.
 */
export type Connector = (host: string, port: number) => { socket: Socket; ready: 'connect' | 'secureConnect' };

export class EndpointPool {
  readonly host: string;
  readonly port: number;
  /** Host header for requests that have none. */
  readonly authority: string;
  readonly br: Breakers;
  readonly hostStats: HostStats = { cx_active: 0, cx_connect_fail: 0, cx_total: 0, rq_active: 0, rq_error: 0, rq_success: 0, rq_timeout: 0, rq_total: 0 };
  private conns = new Set<Conn>();
  private idle: Conn[] = [];
  private pending: Waiter[] = [];
  private connecting = 0;
  private draining = false;
  /** Consecutive failed connects, and until when (monotonic ms) the balancer skips this host; 0 = not. */
  connectFailures = 0;
  backoffUntil = 0;
  /** The transport hook (TLS origination); undefined = plain TCP. */
  connector: Connector | undefined = undefined;

  constructor(host: string, port: number, br: Breakers) {
    this.host = host;
    this.port = port;
    this.authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.br = br;
  }

  get activeRequests(): number { return this.hostStats.rq_active; }
  get connectionCount(): number { return this.conns.size; }

  /** Envoy's newStream: attach to a ready connection, else queue (bounded) and connect. */
  request(w: Waiter): void {
    const br = this.br;
    const c = w.fresh ? undefined : this.popIdle();
    // A fresh connection at the connection limit takes the place of an idle one (suspect anyway).
    if (w.fresh && br.cxActive >= br.limits.maxConnections && this.idle.length > 0) this.destroyConn(this.idle[0]);
    if (c) {
      if (br.rqActive >= br.limits.maxRequests) { this.idle.push(c); return this.overflow(w); }
      this.attach(c, w);
      return;
    }
    if (br.pendingActive >= br.limits.maxPendingRequests) return this.overflow(w);
    this.pending.push(w);
    br.pendingActive++;
    br.stats.upstream_rq_pending_active++;
    br.stats.upstream_rq_pending_total++;
    this.updateOpen();
    this.maybeConnect();
  }

  /** Remove a waiter that gave up (downstream reset, route timeout) while still pending. */
  cancel(w: Waiter): boolean {
    const i = this.pending.indexOf(w);
    if (i < 0) return false;
    this.pending.splice(i, 1);
    this.br.pendingActive--;
    this.br.stats.upstream_rq_pending_active--;
    this.br.stats.upstream_rq_cancelled++;
    this.updateOpen();
    return true;
  }

  /** A request finished with its connection. `reusable` = the exchange ended cleanly with keep-alive. */
  release(conn: Conn, reusable: boolean): void {
    if (!conn.busy) return;
    conn.busy = false;
    this.br.rqActive--;
    this.br.stats.upstream_rq_active--;
    this.hostStats.rq_active--;
    const max = this.br.limits.maxRequestsPerConnection;
    if (!reusable || conn.closed || this.draining || (max > 0 && conn.requests >= max)) {
      this.destroyConn(conn);
      this.maybeConnect();
    } else {
      this.onReady(conn);
    }
    this.updateOpen();
  }

  private clearBackoff(): void {
    if (this.backoffUntil !== 0) this.br.hostsInBackoff--;
    this.connectFailures = 0;
    this.backoffUntil = 0;
  }

  /** Stop using this pool: close idle connections now, busy ones after their request. */
  drain(): void {
    this.draining = true;
    this.clearBackoff();
    for (const c of this.idle) this.destroyConn(c);
    this.idle = [];
    for (const w of this.pending.splice(0)) {
      this.br.pendingActive--;
      this.br.stats.upstream_rq_pending_active--;
      w.onPoolFailure('connect_failure', 'endpoint removed');
    }
  }

  destroy(): void {
    this.drain();
    for (const c of [...this.conns]) this.destroyConn(c);
  }

  private overflow(w: Waiter): void {
    this.br.stats.upstream_rq_pending_overflow++;
    w.onPoolFailure('overflow', 'overflow');
  }

  private popIdle(): Conn | undefined {
    while (this.idle.length > 0) {
      const c = this.idle.pop()!; // LIFO: the warmest connection, and idle ones age out
      if (!c.closed && performance.now() - c.h1!.idleSince < this.br.limits.idleTimeoutMs) return c;
      this.destroyConn(c); // dropping it without this would leak its slot in cxActive
    }
    return undefined;
  }

  private attach(c: Conn, w: Waiter): void {
    c.busy = true;
    c.requests++;
    this.br.rqActive++;
    this.br.stats.upstream_rq_active++;
    this.br.stats.upstream_rq_total++;
    this.hostStats.rq_active++;
    this.hostStats.rq_total++;
    w.onAttached(c);
  }

  private onReady(c: Conn): void {
    while (this.pending.length > 0) {
      // Oldest first, except that a used connection passes over waiters that need a fresh one.
      let i = 0;
      if (c.requests > 0) while (i < this.pending.length && this.pending[i].fresh) i++;
      if (i === this.pending.length) break;
      const w = i === 0 ? this.pending.shift()! : this.pending.splice(i, 1)[0];
      this.br.pendingActive--;
      this.br.stats.upstream_rq_pending_active--;
      if (this.br.rqActive >= this.br.limits.maxRequests) { this.overflow(w); continue; }
      this.attach(c, w);
      this.updateOpen();
      return;
    }
    c.h1!.idleSince = performance.now();
    this.idle.push(c);
    watchIdle(this);
    if (this.pending.length > 0) {
      // Only waiters that need a fresh connection are left: at the limit this used one makes room.
      if (this.br.cxActive >= this.br.limits.maxConnections) this.destroyConn(c);
      this.maybeConnect();
    }
  }

  /** Close connections idle longer than the idle timeout (the sweeper's tick). */
  sweepIdle(now: number): boolean {
    const max = this.br.limits.idleTimeoutMs;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i];
      if (c.closed || now - c.h1!.idleSince >= max) this.destroyConn(c);
    }
    return this.idle.length > 0;
  }

  private maybeConnect(): void {
    const br = this.br;
    // Connect only while queued requests outnumber connections already on their way.
    while (!this.draining && this.pending.length > this.connecting) {
      if (br.cxActive >= br.limits.maxConnections) {
        br.stats.upstream_cx_overflow++;
        // Envoy opens a connection anyway when this host's pool has none at all (spec section 9.2).
        if (this.conns.size > 0) return;
      }
      this.connect();
    }
  }

  private connect(): void {
    const conn = new Conn(this);
    const br = this.br;
    this.conns.add(conn);
    this.connecting++;
    br.cxActive++;
    br.stats.upstream_cx_active++;
    br.stats.upstream_cx_total++;
    this.hostStats.cx_active++;
    this.hostStats.cx_total++;
    this.updateOpen();
    const opened = this.connector !== undefined ? this.connector(this.host, this.port) : null;
    const sock: Socket = opened !== null ? opened.socket : netConnect({ host: this.host, port: this.port });
    sock.setNoDelay(true);
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; sock.destroy(); }, br.limits.connectTimeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      this.connecting--;
      br.stats.upstream_cx_connect_fail++;
      if (timedOut) br.stats.upstream_cx_connect_timeout++;
      this.hostStats.cx_connect_fail++;
      // Connects that were already under way when the host died fail together: one step, not many.
      const now = performance.now();
      if (!this.draining && now >= this.backoffUntil) {
        if (this.backoffUntil === 0) br.hostsInBackoff++;
        this.connectFailures++;
        this.backoffUntil = now + Math.min(CONNECT_BACKOFF_BASE_MS * 2 ** (this.connectFailures - 1), CONNECT_BACKOFF_MAX_MS);
      }
      this.destroyConn(conn);
      // Requests queued beyond the connections still on their way fail with this one.
      const reason: PoolFailure = timedOut ? 'connect_timeout' : 'connect_failure';
      const detail = timedOut ? 'connection timeout' : transportText(err);
      while (this.pending.length > this.connecting) {
        const w = this.pending.shift()!;
        br.pendingActive--;
        br.stats.upstream_rq_pending_active--;
        br.stats.upstream_rq_pending_failure_eject++;
        w.onPoolFailure(reason, detail);
      }
      this.updateOpen();
    };
    sock.once('error', onError);
    const onCloseWhileConnecting = () => { if (timedOut) onError(new Error('connection timeout')); };
    sock.once('close', onCloseWhileConnecting);
    sock.once(opened !== null ? opened.ready : 'connect', () => {
      clearTimeout(timer);
      sock.removeListener('error', onError);
      sock.removeListener('close', onCloseWhileConnecting);
      // An idle connection the upstream closes leaves the pool at once.
      sock.once('close', () => { conn.closed = true; if (!conn.busy) this.destroyConn(conn); });
      this.connecting--;
      this.clearBackoff();
      conn.h1 = new ClientConnection(sock, this.authority);
      if (this.draining) { this.destroyConn(conn); return; }
      this.onReady(conn);
    });
  }

  private destroyConn(conn: Conn): void {
    conn.closed = true;
    if (!this.conns.delete(conn)) return;
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.br.cxActive--;
    this.br.stats.upstream_cx_active--;
    this.hostStats.cx_active--;
    this.updateOpen();
    conn.h1?.abort();
  }

  private updateOpen(): void {
    const br = this.br;
    const s = br.stats;
    s['circuit_breakers.default.cx_open'] = br.cxActive >= br.limits.maxConnections ? 1 : 0;
    s['circuit_breakers.default.rq_pending_open'] = br.pendingActive >= br.limits.maxPendingRequests ? 1 : 0;
    s['circuit_breakers.default.rq_open'] = br.rqActive >= br.limits.maxRequests ? 1 : 0;
  }
}

// One coarse timer for every pool's idle connections: nothing per request.
const watched = new Set<EndpointPool>();
let sweeper: NodeJS.Timeout | null = null;
function watchIdle(p: EndpointPool): void {
  if (watched.has(p)) return;
  watched.add(p);
  if (sweeper !== null) return;
  sweeper = setInterval(() => {
    const now = performance.now();
    for (const q of watched) if (!q.sweepIdle(now)) watched.delete(q);
    if (watched.size === 0) { clearInterval(sweeper!); sweeper = null; }
  }, 500);
  sweeper.unref();
}

function transportText(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ? `delayed connect error: ${code === 'ECONNREFUSED' ? 'Connection refused' : code}` : err.message;
}
