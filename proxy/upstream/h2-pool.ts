// The endpoint pool for HTTP/2 upstreams, with Envoy's multiplexed-pool semantics: requests take a
// stream on an existing session while it has capacity (the peer's SETTINGS_MAX_CONCURRENT_STREAMS
// and the cluster's maxConcurrentStreams); a new connection is opened only when every session's
// streams are exhausted (or going away); a GOAWAY drains its session (streams in flight finish,
// new ones go elsewhere). The breakers are the cluster's, as for HTTP/1.1: `maxRequests`
// (Istio http2MaxRequests) bounds active streams, `maxPendingRequests` the queue for a stream,
// `maxConnections` the sessions. With `useClientProtocol` (mode 'client') a request that came
// over HTTP/1.1 goes to the HTTP/1.1 pool this class extends, an HTTP/2 one to a session.
import { connect as netConnect, type Socket } from 'node:net';
import { H2Connection, H2Exchange, H2_DEFAULT_MAX_STREAMS } from '../engine/h2-client.ts';
import { CONNECT_BACKOFF_BASE_MS, CONNECT_BACKOFF_MAX_MS, Conn, EndpointPool, type Breakers, type PoolFailure, type Waiter } from './pool.ts';

/** Which requests go over HTTP/2: all of them, or those that arrived over HTTP/2 (useClientProtocol). */
export type H2Mode = 'http2' | 'client';

/** A stream slot: the pool's Conn for one request, bound to its session. */
class H2Conn extends Conn {
  readonly session: H2Connection;
  constructor(pool: H2Pool, session: H2Connection) { super(pool); this.session = session; }
}

export class H2Pool extends EndpointPool {
  readonly mode: H2Mode;
  private sessions: H2Connection[] = [];
  private waiting: Waiter[] = [];
  private connectingH2 = 0;
  private drainingH2 = false;
  private readonly events = {
    onReady: (c: H2Connection) => this.sessionReady(c),
    onConnectError: (c: H2Connection, err: Error) => this.onConnectError(c, err),
    onGoaway: (c: H2Connection) => { this.br.stats.upstream_cx_close_notify++; this.forget(c, false); this.connectIfNeeded(); },
    onClose: (c: H2Connection) => { this.forget(c, true); this.connectIfNeeded(); },
  };

  constructor(host: string, port: number, br: Breakers, mode: H2Mode) {
    super(host, port, br);
    this.mode = mode;
  }

  override get connectionCount(): number { return super.connectionCount + this.sessions.length; }

  override request(w: Waiter): void {
    if (this.mode === 'client' && w.downstreamH2 !== true) { super.request(w); return; }
    const br = this.br;
    const s = this.pick();
    if (s !== null) {
      if (br.rqActive >= br.limits.maxRequests) return this.overflowH2(w);
      this.attachH2(s, w);
      return;
    }
    if (br.pendingActive >= br.limits.maxPendingRequests) return this.overflowH2(w);
    this.waiting.push(w);
    br.pendingActive++;
    br.stats.upstream_rq_pending_active++;
    br.stats.upstream_rq_pending_total++;
    this.connectIfNeeded();
  }

  override cancel(w: Waiter): boolean {
    const i = this.waiting.indexOf(w);
    if (i < 0) return super.cancel(w);
    this.waiting.splice(i, 1);
    this.br.pendingActive--;
    this.br.stats.upstream_rq_pending_active--;
    this.br.stats.upstream_rq_cancelled++;
    return true;
  }

  override release(conn: Conn, reusable: boolean): void {
    if (!(conn instanceof H2Conn)) { super.release(conn, reusable); return; }
    if (!conn.busy) return;
    conn.busy = false;
    conn.closed = true;
    this.br.rqActive--;
    this.br.stats.upstream_rq_active--;
    this.hostStats.rq_active--;
    const s = conn.session;
    s.active--;
    if (s.active === 0) {
      s.idleSince = performance.now();
      // A session that is going away closes with its last stream.
      if (s.goingAway || this.drainingH2) s.close();
    }
    this.serveWaiting();
  }

  override drain(): void {
    super.drain();
    this.drainingH2 = true;
    for (const s of this.sessions) if (s.active === 0) s.close(); else s.goingAway = true;
    for (const w of this.waiting.splice(0)) {
      this.br.pendingActive--;
      this.br.stats.upstream_rq_pending_active--;
      w.onPoolFailure('connect_failure', 'endpoint removed');
    }
  }

  override destroy(): void {
    this.drain();
    super.destroy();
    for (const s of [...this.sessions]) s.destroy();
  }

  override sweepIdle(now: number): boolean {
    const max = this.br.limits.idleTimeoutMs;
    for (const s of this.sessions) if (s.active === 0 && now - s.idleSince >= max) s.close();
    return super.sweepIdle(now) || this.sessions.length > 0;
  }

  /** The session with room, preferring the busiest (fewer sessions stay warm, as Envoy's pool). */
  private pick(): H2Connection | null {
    let best: H2Connection | null = null;
    const perConn = this.br.limits.maxRequestsPerConnection;
    for (const s of this.sessions) {
      if (s.capacity <= 0) continue;
      if (perConn > 0 && s.total >= perConn) { s.goingAway = true; if (s.active === 0) s.close(); continue; }
      if (best === null || s.active > best.active) best = s;
    }
    return best;
  }

  private attachH2(s: H2Connection, w: Waiter): void {
    const c = new H2Conn(this, s);
    c.busy = true;
    s.active++;
    s.total++;
    c.requests = s.total;
    c.h1 = new H2Exchange(s);
    this.br.rqActive++;
    this.br.stats.upstream_rq_active++;
    this.br.stats.upstream_rq_total++;
    this.hostStats.rq_active++;
    this.hostStats.rq_total++;
    w.onAttached(c);
  }

  private overflowH2(w: Waiter): void {
    this.br.stats.upstream_rq_pending_overflow++;
    w.onPoolFailure('overflow', 'overflow');
  }

  /** Give waiting requests the streams that are free now. */
  private serveWaiting(): void {
    while (this.waiting.length > 0) {
      const s = this.pick();
      if (s === null) break;
      const w = this.waiting.shift()!;
      this.br.pendingActive--;
      this.br.stats.upstream_rq_pending_active--;
      if (this.br.rqActive >= this.br.limits.maxRequests) { this.overflowH2(w); continue; }
      this.attachH2(s, w);
    }
    this.connectIfNeeded();
  }

  /** Connect only when the waiting requests exceed what sessions on their way can take. */
  private connectIfNeeded(): void {
    const br = this.br;
    if (this.drainingH2 || this.waiting.length === 0 || this.connectingH2 > 0) return;
    if (this.pick() !== null) return;
    if (br.cxActive >= br.limits.maxConnections) {
      br.stats.upstream_cx_overflow++;
      if (this.sessions.length > 0) return;
    }
    this.connectH2();
  }

  private connectH2(): void {
    const br = this.br;
    this.connectingH2++;
    br.cxActive++;
    br.stats.upstream_cx_active++;
    br.stats.upstream_cx_total++;
    br.stats.upstream_cx_http2_total++;
    this.hostStats.cx_active++;
    this.hostStats.cx_total++;
    let timedOut = false;
    let sock: Socket | null = null;
    const s = new H2Connection(this.authority, () => {
      sock = netConnect({ host: this.host, port: this.port });
      sock.setNoDelay(true);
      return sock;
    }, br.limits.maxConcurrentStreams ?? H2_DEFAULT_MAX_STREAMS, this.events);
    (s as H2Connection & { timer?: NodeJS.Timeout }).timer = setTimeout(() => {
      if (s.ready) return;
      timedOut = true;
      this.onConnectError(s, new Error('connection timeout'), true);
      s.destroy();
    }, br.limits.connectTimeoutMs);
    void timedOut;
    this.sessions.push(s);
  }

  private sessionReady(s: H2Connection): void {
    const t = (s as H2Connection & { timer?: NodeJS.Timeout }).timer;
    if (t) { clearTimeout(t); (s as H2Connection & { timer?: NodeJS.Timeout }).timer = undefined; this.connectingH2--; }
    if (this.connectFailures !== 0 || this.backoffUntil !== 0) {
      if (this.backoffUntil !== 0) this.br.hostsInBackoff--;
      this.connectFailures = 0;
      this.backoffUntil = 0;
    }
    if (this.drainingH2) { s.close(); return; }
    watchH2(this);
    this.serveWaiting();
  }

  private onConnectError(s: H2Connection, err: Error, timedOut = false): void {
    const t = (s as H2Connection & { timer?: NodeJS.Timeout }).timer;
    if (t === undefined) return; // already settled
    clearTimeout(t);
    (s as H2Connection & { timer?: NodeJS.Timeout }).timer = undefined;
    this.connectingH2--;
    const br = this.br;
    br.stats.upstream_cx_connect_fail++;
    if (timedOut) br.stats.upstream_cx_connect_timeout++;
    this.hostStats.cx_connect_fail++;
    const now = performance.now();
    if (!this.drainingH2 && now >= this.backoffUntil) {
      if (this.backoffUntil === 0) br.hostsInBackoff++;
      this.connectFailures++;
      this.backoffUntil = now + Math.min(CONNECT_BACKOFF_BASE_MS * 2 ** (this.connectFailures - 1), CONNECT_BACKOFF_MAX_MS);
    }
    this.forget(s, true);
    s.destroy();
    const reason: PoolFailure = timedOut ? 'connect_timeout' : 'connect_failure';
    const code = (err as NodeJS.ErrnoException).code;
    const detail = timedOut ? 'connection timeout' : code ? `delayed connect error: ${code === 'ECONNREFUSED' ? 'Connection refused' : code}` : err.message;
    // Waiting requests beyond what other sessions on their way can take fail with this one.
    if (this.connectingH2 === 0 && this.pick() === null) {
      for (const w of this.waiting.splice(0)) {
        br.pendingActive--;
        br.stats.upstream_rq_pending_active--;
        br.stats.upstream_rq_pending_failure_eject++;
        w.onPoolFailure(reason, detail);
      }
    }
  }

  /** Take a session out of the pool (`gone`: closed, its connection slot is freed). */
  private forget(s: H2Connection, gone: boolean): void {
    if (!gone) return; // going away: it stays listed until it closes, but `capacity` is 0
    const i = this.sessions.indexOf(s);
    if (i < 0) return;
    this.sessions.splice(i, 1);
    this.br.cxActive--;
    this.br.stats.upstream_cx_active--;
    this.hostStats.cx_active--;
  }
}

// One coarse timer for every HTTP/2 pool's idle sessions (the HTTP/1.1 pools have their own).
const watched = new Set<H2Pool>();
let sweeper: NodeJS.Timeout | null = null;
function watchH2(p: H2Pool): void {
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
