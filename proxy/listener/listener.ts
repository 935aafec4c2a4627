// A listener (Envoy's HTTP connection manager): an HTTP/1.1 server whose requests are sanitised
// here — hop-by-hop removal, x-forwarded-*, x-request-id, the trust boundary for x-envoy-* and
// l5d-* headers, the tracing decision — and then run through the listener's filter chain
// (listener/chains.ts). The listener owns the downstream stats, the stream's start and end, and
// the error boundary's accounting: a filter that throws fails its request, never the process.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { HttpServer, type ServerRequest, type ServerResponse } from '../engine/server.ts';
import { H2Server } from '../engine/h2-server.ts';
import { contentTypeOf, isGrpcContentType } from '../grpc.ts';
import { getRaw, upstreamRequestHeaders } from './headers.ts';
import { FilterChain, HttpStream, type FilterStatSource, type HttpFilter, type StreamOwner } from './stream.ts';
import { StreamInfo, type ListenerName } from '../core/stream-info.ts';
import { localReply } from '../local-reply.ts';
import { extractContext, injectHeaders, isTraceHeader, randomHex, type Tracing } from '../telemetry/tracing.ts';
import { chargeDownstream, newHttpStats, type HttpStats } from '../telemetry/stats.ts';

export interface ListenerOptions {
  name: ListenerName;
  maxHeaderBytes: number;
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  /** Envoy's stream_idle_timeout (0 = off). */
  streamIdleTimeoutMs: number;
  /** Request bodies above this are refused with 413 (0 = no limit). */
  maxRequestBytes: number;
  /** Honour x-envoy-* control headers from callers (off by default, as Istio sidecars). */
  trustEnvoyHeaders: boolean;
  /**
   * `trust`: read l5d-ctx-dtab / l5d-dtab (the app and the mesh's own sidecars); `strip`: remove
   * every l5d-* request header unread (Linkerd's clearContext: edges facing untrusted clients).
   */
  dtabHeaders: 'trust' | 'strip';
  /** The transport below HTTP (inbound mTLS termination, proxy/identity/tls.ts). */
  accept?: import('../engine/server.ts').ServerOptions['accept'];
}

/** What a listener needs from the proxy around it. */
export interface ListenerContext {
  onStart(): void;
  /** The stream ended: telemetry reads its StreamInfo. */
  onDone(info: StreamInfo): void;
  draining(): boolean;
  /** The tracer when tracing is on, else null (then requests do no tracing work at all). */
  tracing(): Tracing | null;
  log: Logger;
}

/** Distinct filter errors logged with their stack (later repeats are only counted). */
const MAX_LOGGED_ERRORS = 100;

export class Listener implements StreamOwner {
  readonly opts: ListenerOptions;
  readonly server: HttpServer<HttpStream>;
  /** HTTP/2 on the same port (h2c prior knowledge; `h2.acceptTls` for ALPN): the same hooks as `server`. */
  readonly h2: H2Server<HttpStream>;
  readonly stats: HttpStats = newHttpStats();
  readonly prefix: string;
  readonly chain: FilterChain;
  readonly trustEnvoyHeaders: boolean;
  private readonly ctx: ListenerContext;
  private readonly logged = new Set<string>();
  private lastRejectLog = 0;

  constructor(opts: ListenerOptions, filters: HttpFilter[], ctx: ListenerContext) {
    this.opts = opts;
    this.ctx = ctx;
    this.chain = new FilterChain(filters);
    this.trustEnvoyHeaders = opts.trustEnvoyHeaders;
    this.prefix = `http.${opts.name}`;
    // Malformed requests get a clear status from the engine (400, 408, 431), never a crash.
    this.server = new HttpServer<HttpStream>({
      maxHeaderBytes: opts.maxHeaderBytes, idleTimeoutMs: opts.idleTimeoutMs, headersTimeoutMs: opts.headersTimeoutMs,
      streamIdleTimeoutMs: opts.streamIdleTimeoutMs, maxRequestBytes: opts.maxRequestBytes, accept: opts.accept,
    }, {
      onRequest: (req, res) => this.handle(req, res),
      onAbort: (res) => {
        const s = res.stream;
        if (s === null) return;
        this.stats.downstream_rq_rx_reset++;
        s.downstreamReset();
      },
      onStreamError: (res, status) => {
        if (status === 408) this.stats.downstream_rq_idle_timeout++; else this.stats.downstream_rq_too_large++;
        res.stream?.streamError(status);
      },
      // Bytes that are not HTTP/1 (TLS, a database protocol) on a captured port: refused with a
      // 400 and closed at once, never held. Node cannot read SO_ORIGINAL_DST, so the original
      // destination is unknown and the bytes cannot be passed through (docs/kubernetes.md): the
      // log line says which port to exclude from capture. At most one line a second.
      onReject: (status, code, remote) => {
        const now = Date.now();
        if (now - this.lastRejectLog < 1000) return;
        this.lastRejectLog = now;
        this.ctx.log.warn({ listener: this.opts.name, status, code, remote }, 'refused a connection that is not HTTP/1 (or a malformed request); non-HTTP traffic on a captured port cannot be passed through: exclude its port (meshlet iptables --exclude-outbound-ports / --exclude-inbound-ports)');
      },
      onConnection: (open) => {
        if (open) { this.stats.downstream_cx_total++; this.stats.downstream_cx_active++; } else this.stats.downstream_cx_active--;
      },
    });
    this.h2 = new H2Server(this.server, {}, this.stats);
    this.h2.enablePriorKnowledge();
  }

  listen(port: number, host = '127.0.0.1', reusePort = false): Promise<number> {
    return this.server.listen(port, host, reusePort);
  }

  /** Stop accepting; open connections get `Connection: close` on their next response (draining). */
  close(): Promise<void> { this.h2.close(); return this.server.close(); }

  /** Draining: close (FIN) connections idle for `quietMs`. */
  closeIdle(quietMs: number): void { this.server.closeIdle(quietMs); }

  destroyConnections(): void { this.server.destroyConnections(); this.h2.destroy(); }

  /** The filters' stats, for /stats: `http.<listener>.<name>`. */
  filterStats(): FilterStatSource[] { return this.chain.stats; }

  // --- StreamOwner ---
  streamDone(s: HttpStream): void {
    this.stats.downstream_rq_active--;
    const info = s.info;
    if (info.status > 0) chargeDownstream(this.stats, info.status);
    info.bytesReceived = s.req.bodyBytes;
    info.durationMs = performance.now() - info.startMs;
    try { this.ctx.onDone(info); } catch (e) { this.filterError('telemetry', e); }
  }

  filterError(filter: string, err: unknown): void {
    this.stats.downstream_rq_filter_error++;
    const e = err instanceof Error ? err : new Error(String(err));
    const key = `${filter}|${e.stack ?? e.message}`;
    if (this.logged.has(key) || this.logged.size >= MAX_LOGGED_ERRORS) return;
    this.logged.add(key);
    this.ctx.log.error({ listener: this.opts.name, filter, err: { message: e.message, stack: e.stack } }, 'filter error: the request was failed (500 or reset); later repeats are only counted');
  }

  private handle(req: ServerRequest, res: ServerResponse<HttpStream>): void {
    const st = this.stats;
    st.downstream_rq_total++;
    st.downstream_rq_active++;
    let s: HttpStream | null = null;
    try {
      s = this.begin(req, res);
      if (s !== null) s.continue();
    } catch (e) {
      // A bug in the listener's own work: the same boundary as a filter's.
      if (s !== null) { s.fail('listener', e); return; }
      this.filterError('listener', e);
      st.downstream_rq_active--;
      localReply(res, 500, 'internal error', null);
    }
  }

  /** Sanitise the request and make its stream; null = answered here already. */
  private begin(req: ServerRequest, res: ServerResponse<HttpStream>): HttpStream | null {
    const st = this.stats;
    if (this.ctx.draining()) res.shouldKeepAlive = false;
    const raw = req.rawHeaders;
    const tracing = this.ctx.tracing();
    let sampled = false;
    let parent = null;
    if (tracing !== null) {
      parent = extractContext(raw);
      sampled = tracing.decide(parent);
    }
    // Dtab context headers: read (trust) or removed unread (strip).
    let ctxDtab: string[] | null = null;
    let userDtab: string[] | null = null;
    let anyL5d = false;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      if (n.length < 4 || n.charCodeAt(1) !== 0x35 || (n.charCodeAt(0) | 0x20) !== 0x6c) continue; // 'l5'
      const l = n.toLowerCase();
      if (!l.startsWith('l5d-')) continue;
      anyL5d = true;
      if (l === 'l5d-dtab') (userDtab ??= []).push(raw[i + 1]);
      else if (l === 'l5d-ctx-dtab') (ctxDtab ??= []).push(raw[i + 1]);
    }
    const strip = this.opts.dtabHeaders === 'strip';
    if (strip) { ctxDtab = null; userDtab = null; }
    const dropDtab = strip ? anyL5d : ctxDtab !== null || userDtab !== null;
    // A sampled request gets our span ids downstream, so the incoming trace headers are replaced.
    const drop = sampled
      ? (dropDtab ? (l: string) => isTraceHeader(l) || dropsL5d(l, strip) : isTraceHeader)
      : (dropDtab ? (l: string) => dropsL5d(l, strip) : null);
    const headers = upstreamRequestHeaders(raw, drop);
    let requestId = getRaw(raw, 'x-request-id');
    if (!requestId) { requestId = randomUUID(); headers.push('x-request-id', requestId); }
    const xff = getRaw(raw, 'x-forwarded-for');
    const remote = req.remoteAddress;
    if (xff !== undefined) {
      for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() === 'x-forwarded-for') { headers[i + 1] = `${xff}, ${remote}`; break; }
    } else headers.push('x-forwarded-for', remote);
    headers.push('x-forwarded-proto', 'http');
    const peer = req.peer;

    const info = new StreamInfo(this.opts.name, req.method, req.url, `HTTP/${req.httpVersion}`, remote, performance.now());
    info.grpc = isGrpcContentType(contentTypeOf(raw));
    if (peer !== null) { info.mtls = true; info.sourcePrincipal = peer.identity; info.destinationPrincipal = peer.localIdentity; }
    if (this.opts.name === 'inbound') xfcc(headers, peer);
    const s = new HttpStream(req, res, info, headers, this.chain, this);
    res.stream = s;
    this.ctx.onStart();
    if (this.opts.maxRequestBytes > 0 && req.contentLength > this.opts.maxRequestBytes) {
      // Refused before anything is forwarded (Envoy's buffer filter: 413 for a declared length).
      st.downstream_rq_too_large++;
      s.downstreamEnded = true;
      s.sendLocalReply(413, 'Payload Too Large', 0);
      return null;
    }
    info.requestId = requestId;
    // An upgrade or CONNECT is routed like any request; the router allows or refuses it
    // (filters/router/upgrade.ts). Any answer but a switch closes the connection after it: bytes
    // behind a refused upgrade may be upgrade payload hiding a smuggled request.
    if (req.method === 'CONNECT' || (req.upgrade !== null && !isH2cOnly(req.upgrade))) res.shouldKeepAlive = false;
    s.stripL5dResponse = strip;
    s.dtabCtx = ctxDtab;
    s.dtabUser = userDtab;
    if (sampled) {
      if (this.opts.name === 'inbound') {
        // One server span per inbound request; the app sees it as its parent.
        const sp = tracing!.startSpan(s.method, 'server', parent, {
          'http.request.method': s.method, 'url.path': s.path, 'network.peer.address': remote,
          'user_agent.original': getRaw(raw, 'user-agent') ?? '',
        });
        info.serverSpan = sp;
        injectHeaders(headers, sp.ctx, sp.spanId, true);
      } else {
        // Outbound: one client span per attempt, made by the router.
        s.tracing = tracing;
        s.traceParent = parent;
      }
    } else if (tracing !== null && parent === null) {
      // An unsampled root: pass the decision on so the next hops do not roll again.
      info.traceId = randomHex(16);
      headers.push('traceparent', `00-${info.traceId}-${randomHex(8)}-00`);
    }
    if (parent !== null) info.traceId = parent.traceId;
    else if (info.serverSpan !== null) info.traceId = info.serverSpan.ctx.traceId;
    return s;
  }
}

/**
 * x-forwarded-client-cert as Istio's sidecars set it (Envoy SANITIZE_SET): a caller's own value is
 * dropped; an mTLS caller's is `By=<our id>;Hash=<sha256 of its cert>;Subject="";URI=<its id>`.
 */
function xfcc(headers: string[], peer: import('../engine/server.ts').ConnPeer | null): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i].length === 23 && headers[i].toLowerCase() === 'x-forwarded-client-cert') headers.splice(i, 2);
  if (peer === null || peer.identity === null) return;
  headers.push('x-forwarded-client-cert', `By=${peer.localIdentity ?? ''};Hash=${peer.certHash ?? ''};Subject="";URI=${peer.identity}`);
}

/** `Upgrade: h2c` alone: Envoy strips it and serves the request as plain HTTP/1.1 (the headers are hop-by-hop). */
function isH2cOnly(protocols: string[]): boolean {
  return protocols.length === 1 && protocols[0] === 'h2c';
}

/** Dtab headers the proxy consumes (trust) or every l5d-* header (strip). */
function dropsL5d(lower: string, strip: boolean): boolean {
  return strip ? lower.startsWith('l5d-') : lower === 'l5d-dtab' || lower === 'l5d-ctx-dtab';
}
