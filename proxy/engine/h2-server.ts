// The downstream HTTP/2 half of the engine, on node:http2 (nghttp2). Each HTTP/2 stream becomes
// the same ServerRequest / ServerResponse pair an HTTP/1.1 request does, handed to the same hooks
// (the listener), so routing, resilience and telemetry never ask which protocol a request came
// on. Sessions arrive three ways: h2c with prior knowledge (HttpServer sniffs the connection
// preface in the first bytes and hands the socket over), a TLS socket whose ALPN chose `h2`
// (`acceptTls`, the hook for the TLS listener), or `emit('connection')` by an embedder.
//
// `Upgrade: h2c` is not taken up: as Envoy, the header is hop-by-hop and the request is served as
// HTTP/1.1 (RFC 9113 deprecates the upgrade; node:http2 cannot adopt its stream 1 either).
//
// Flood protection, Envoy's defaults where node:http2 has the knob:
//   - SETTINGS / PING floods: nghttp2 ends the session (GOAWAY ENHANCE_YOUR_CALM) when more than
//     1000 control-frame ACKs wait to be written (Envoy max_outbound_control_frames = 1000).
//   - RST_STREAM floods ("rapid reset", CVE-2023-44487): nghttp2's reset rate limit (burst 1000,
//     33/s), and Envoy's premature-reset rule, kept here: a stream the client resets within 1 s of
//     opening is premature; a connection is closed once half of its closed streams (after 500) or
//     250 of its first 500 were premature (overload.premature_reset_* runtime defaults).
//   - invalid frames: at most `maxSessionInvalidFrames` (1000), streams refused past
//     `maxSessionRejectedStreams` (100), then the session is destroyed.
//   - header lists: `maxHeaderBytes` (Envoy max_request_headers_kb, 60 KiB) and 100 headers
//     (max_headers_count) are sent as SETTINGS_MAX_HEADER_LIST_SIZE and enforced; over -> reset.
//   - max_concurrent_streams: Envoy's default 2147483647 (SETTINGS_MAX_CONCURRENT_STREAMS).
import type { Http2Server, ServerHttp2Session, ServerHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { HttpServer, ServerRequest, ServerResponse, type ReadSource } from './server.ts';
import type { RequestHead } from './http1.ts';
import { httpDate } from './date.ts';

/** RFC 9113 section 3.4: the client connection preface. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface H2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS (Envoy's default 2147483647). */
  maxConcurrentStreams?: number;
  /** Envoy's premature reset rule: streams before the ratio check applies (500) and the lifetime (1 s). */
  prematureResetTotal?: number;
  prematureResetMinLifetimeMs?: number;
}

/** Envoy's names; the listener passes its own stats object so they show under http.<listener>. */
export interface H2Stats {
  downstream_cx_http2_total: number;
  downstream_cx_http2_active: number;
  /** Connections closed by the premature-reset rule. */
  downstream_rq_too_many_premature_resets: number;
}

/** Connection-specific fields RFC 9113 section 8.2.2 forbids in HTTP/2 (node:http2 throws on them). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

/**
 * node:http2, loaded at the first HTTP/2 connection rather than with the proxy: most sidecars
 * never see one, and the module with its TLS dependency is ~4 MB of private memory per process
 * (docs/performance.md). getBuiltinModule is synchronous and returns the same module every time.
 */
export const http2 = (): typeof import('node:http2') => process.getBuiltinModule('node:http2');

/** RFC 9113 section 7 error codes (the values of node:http2's NGHTTP2_* constants), usable before the module loads. */
export const H2_ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;
const NO_ERROR = H2_ERROR.NO_ERROR;

/** Flat [name, value, ...] trailers -> a header object for node:http2 (repeated names -> arrays). */
export function toHeaderObject(flat: string[], into: Record<string, string | string[] | number>): Record<string, string | string[] | number> {
  for (let i = 0; i < flat.length; i += 2) {
    const n = flat[i].toLowerCase();
    if (CONNECTION_SPECIFIC.has(n) || n.charCodeAt(0) === 0x3a) continue;
    if (n === 'te' && flat[i + 1].toLowerCase() !== 'trailers') continue;
    const prev = into[n];
    if (prev === undefined) into[n] = flat[i + 1];
    else if (Array.isArray(prev)) prev.push(flat[i + 1]);
    else into[n] = [String(prev), flat[i + 1]];
  }
  return into;
}

/** A node:http2 header object (trailers) -> flat [name, value, ...], pseudo-headers left out. */
export function fromHeaderObject(h: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const n in h) {
    if (n.charCodeAt(0) === 0x3a) continue;
    const v = h[n];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(n, x); else out.push(n, String(v));
  }
  return out;
}

/** The stream as the request's ReadSource: backpressure is the stream's flow-control window. */
class StreamSource implements ReadSource {
  readonly remoteAddress: string;
  // HTTP/2 is not offered on the mTLS hop (ALPN http/1.1), so a stream has no TLS peer.
  readonly peer = null;
  readonly localAddress: string;
  readonly localPort: number;
  private readonly stream: ServerHttp2Stream;
  constructor(stream: ServerHttp2Stream, remote: string) {
    this.stream = stream;
    this.remoteAddress = remote;
    this.localAddress = stream.session?.socket?.localAddress ?? '';
    this.localPort = stream.session?.socket?.localPort ?? 0;
  }
  pauseReading(): void { this.stream.pause(); }
  resumeReading(): void { this.stream.resume(); }
}

/**
 * A response on one HTTP/2 stream. The head is held until the first body bytes or the end, so a
 * reply without a body goes out as one HEADERS frame with END_STREAM (a gRPC trailers-only
 * response stays one); a streamed response waits for trailers, which `end` sends (or an empty
 * END_STREAM DATA frame when there are none).
 */
export class H2Response<S = unknown> extends ServerResponse<S> {
  private readonly h2: ServerHttp2Stream;
  private pending: Record<string, string | string[] | number> | null = null;
  private responded = false;
  private noBodyH2 = false;
  private readonly session: H2Session;

  constructor(stream: ServerHttp2Stream, req: ServerRequest, session: H2Session) {
    // The HTTP/1.1 connection is never used: every method that would touch it is overridden.
    super(null as never, req);
    this.h2 = stream;
    this.session = session;
    stream.on('drain', () => this.drained());
  }

  override writeHead(status: number, _reason: string | undefined, headers: string[]): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.statusCode = status;
    const h = toHeaderObject(headers, { ':status': status });
    if (h.date === undefined) h.date = httpDate();
    // Framing is HTTP/2's own; a content-length from an HTTP/1.1 upstream is kept (it is valid in h2).
    this.noBodyH2 = this.req.method === 'HEAD' || status === 204 || status === 304;
    if (this.noBodyH2) delete h['content-length'];
    this.pending = h;
  }

  private respond(endStream: boolean, waitForTrailers: boolean): void {
    const h = this.pending!;
    this.pending = null;
    this.responded = true;
    if (this.h2.destroyed || this.h2.closed) return;
    try {
      this.h2.respond(h, { endStream, waitForTrailers });
    } catch {
      // A header node:http2 refuses (an invalid name or value from the upstream): reset the stream.
      this.destroy();
    }
  }

  override write(chunk: Buffer): boolean {
    if (this.ended || this.destroyed) return false;
    if (!this.responded) this.respond(this.noBodyH2, !this.noBodyH2);
    if (this.noBodyH2 || chunk.length === 0 || this.h2.destroyed) return true;
    return this.h2.write(chunk);
  }

  override end(body?: Buffer | string, trailers: string[] | null = null): void {
    if (this.ended || this.destroyed) return;
    if (!this.headersSent) this.writeHead(200, undefined, ['content-length', String(body === undefined ? 0 : Buffer.byteLength(body))]);
    const chunk = body === undefined || this.noBodyH2 ? null : typeof body === 'string' ? Buffer.from(body) : body;
    const hasTrailers = trailers !== null && trailers.length > 0 && !this.noBodyH2;
    const s = this.h2;
    this.ended = true;
    if (!this.responded) {
      const empty = chunk === null || chunk.length === 0;
      if (empty && !hasTrailers) { this.respond(true, false); this.session.streamEnded(); return; }
      this.respond(false, hasTrailers);
      if (hasTrailers) s.once('wantTrailers', () => sendTrailers(s, trailers!));
      if (!s.destroyed) s.end(empty ? undefined : chunk);
      this.session.streamEnded();
      return;
    }
    // Streamed: the stream waits for trailers (respond had waitForTrailers).
    if (!this.noBodyH2) s.once('wantTrailers', () => sendTrailers(s, hasTrailers ? trailers! : []));
    if (!s.destroyed) s.end(chunk !== null && chunk.length > 0 ? chunk : undefined);
    this.session.streamEnded();
  }

  override destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // The client sees the stream reset (never a truncated body as complete); the session goes on.
    if (!this.h2.destroyed) this.h2.close(H2_ERROR.INTERNAL_ERROR);
  }
}

function dispatchLater<S>(hooks: HttpServer<S>['hooks'], req: ServerRequest, res: H2Response<S>): void {
  if (res.destroyed) return; // reset before it was dispatched
  hooks.onRequest(req, res);
}

function sendTrailers(s: ServerHttp2Stream, flat: string[]): void {
  if (s.destroyed) return;
  try { s.sendTrailers(toHeaderObject(flat, {})); } catch { s.close(H2_ERROR.INTERNAL_ERROR); }
}

/** Per-session state: Envoy's premature-reset accounting. */
class H2Session {
  readonly session: ServerHttp2Session;
  closedStreams = 0;
  premature = 0;
  constructor(session: ServerHttp2Session) { this.session = session; }
  streamEnded(): void { /* a response completed: nothing to count (kept for symmetry with resets) */ }
}

export class H2Server<S = unknown> {
  readonly http1: HttpServer<S>;
  private h2server: Http2Server | null = null;
  readonly stats: H2Stats;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly prematureTotal: number;
  private readonly prematureMs: number;
  private readonly maxStreams: number;
  private closing = false;

  /** Serves HTTP/2 next to `http1`: same hooks, same limits. */
  constructor(http1: HttpServer<S>, opts: H2Options = {}, stats?: H2Stats) {
    this.http1 = http1;
    this.stats = stats ?? { downstream_cx_http2_total: 0, downstream_cx_http2_active: 0, downstream_rq_too_many_premature_resets: 0 };
    this.prematureTotal = opts.prematureResetTotal ?? 500;
    this.prematureMs = opts.prematureResetMinLifetimeMs ?? 1000;
    this.maxStreams = opts.maxConcurrentStreams ?? 2147483647;
  }

  /** The node:http2 server, made (and the module loaded) at the first HTTP/2 connection. */
  get server(): Http2Server { return this.h2server ??= this.makeServer(); }

  private makeServer(): Http2Server {
    const o = this.http1.opts;
    const server = http2().createServer({
      settings: {
        maxConcurrentStreams: this.maxStreams,
        maxHeaderListSize: o.maxHeaderBytes,
        enablePush: false,
      },
      // 100 headers as Envoy's max_headers_count, plus the four pseudo-headers.
      maxHeaderListPairs: 104,
      maxSessionInvalidFrames: 1000,
      maxSessionRejectedStreams: 100,
      streamResetBurst: 1000,
      streamResetRate: 33,
    } as Parameters<typeof import('node:http2').createServer>[0]);
    server.on('session', (sess: ServerHttp2Session) => this.onSession(sess));
    return server;
  }

  /** h2c with prior knowledge on the HTTP/1.1 listener: connections opening with the preface come here. */
  enablePriorKnowledge(): void {
    this.http1.sniff = {
      isPreface: (first) => first.length >= 3 && first[0] === 0x50 && first[1] === 0x52 && first[2] === 0x49
        && H2_PREFACE.subarray(0, Math.min(first.length, H2_PREFACE.length)).equals(first.subarray(0, Math.min(first.length, H2_PREFACE.length))),
      take: (socket) => this.take(socket),
    };
  }

  /** A plaintext socket that starts with the preface. */
  take(socket: Socket): void {
    if (this.closing) { socket.destroy(); return; }
    // node:http2 feeds what the socket already buffered (the sniffed bytes) to nghttp2 itself.
    this.server.emit('connection', socket);
  }

  /**
   * The ALPN hook for TLS listeners: a socket that negotiated `h2` is an HTTP/2 session, anything
   * else (`http/1.1`, no ALPN) is HTTP/1.1. The TLS server should offer ALPNProtocols ['h2', 'http/1.1'].
   */
  acceptTls(socket: TLSSocket): void {
    if (socket.alpnProtocol === 'h2') this.take(socket); else this.http1.adopt(socket);
  }

  get sessionCount(): number { return this.sessions.size; }

  private onSession(sess: ServerHttp2Session): void {
    this.sessions.add(sess);
    this.stats.downstream_cx_http2_total++;
    this.stats.downstream_cx_http2_active++;
    this.http1.hooks.onConnection(true);
    const st = new H2Session(sess);
    // Streams are taken from the session (a stream reset at once may have no `.session` left).
    sess.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, raw: string[]) => this.onStream(st, stream, headers, raw));
    const idle = this.http1.opts.idleTimeoutMs;
    // Envoy's idle_timeout for a connection with no active streams.
    if (idle > 0) sess.setTimeout(idle, () => { if (!sess.destroyed) sess.close(); });
    sess.on('error', () => {}); // a flood or protocol error: nghttp2 sent GOAWAY; 'close' follows
    sess.on('frameError', () => {});
    sess.on('goaway', () => {});
    sess.once('close', () => {
      this.sessions.delete(sess);
      this.stats.downstream_cx_http2_active--;
      this.http1.hooks.onConnection(false);
    });
    if (this.closing) sess.close();
  }

  private onStream(st: H2Session, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawH: string[]): void {
    const sess = st.session;
    const opened = performance.now();
    stream.on('error', () => {}); // 'close' follows
    if (stream.destroyed || stream.closed) { this.countClose(st, true); return; } // reset in the same read
    const method = String(headers[':method'] ?? '');
    const path = headers[':path'];
    const authority = headers[':authority'];
    if (method === 'CONNECT' || typeof path !== 'string' || path.length === 0) {
      // HTTP/2 CONNECT (and extended CONNECT) is not served here: Envoy's answer without a
      // CONNECT route, before anything is forwarded.
      try { stream.respond({ ':status': method === 'CONNECT' ? 405 : 400, 'content-length': 0 }, { endStream: true }); } catch { /* stream gone */ }
      return;
    }
    // Headers as HTTP/1.1 would carry them: pseudo-headers out, Host from :authority, the split
    // cookie fields joined again (RFC 9113 section 8.2.3).
    const raw: string[] = [];
    let host: string | undefined;
    let cookie: string | null = null;
    let contentLength = -1;
    for (let i = 0; i < rawH.length; i += 2) {
      const n = rawH[i];
      if (n.charCodeAt(0) === 0x3a) continue;
      if (n === 'cookie') { cookie = cookie === null ? rawH[i + 1] : `${cookie}; ${rawH[i + 1]}`; continue; }
      if (n === 'host') { if (host !== undefined) continue; host = rawH[i + 1]; }
      if (n === 'content-length' && /^\d+$/.test(rawH[i + 1])) contentLength = Number(rawH[i + 1]);
      raw.push(n, rawH[i + 1]);
    }
    if (host === undefined && typeof authority === 'string') { host = authority; raw.unshift('host', authority); }
    if (cookie !== null) raw.push('cookie', cookie);
    const hasBody = !stream.endAfterHeaders;
    const head: RequestHead = {
      method, url: path, host, upgrade: null, expectContinue: false, minor: 1, raw,
      // A body without content-length is framed by END_STREAM: "chunked" for an HTTP/1.1 upstream.
      contentLength: hasBody ? contentLength : 0, chunked: hasBody && contentLength < 0,
      connClose: false, connKeepAlive: true, connUpgrade: false,
    };
    const remote = sess.socket?.remoteAddress ?? '';
    const req = new ServerRequest(new StreamSource(stream, remote), head, '2');
    const res = new H2Response<S>(stream, req, st);
    const hooks = this.http1.hooks;
    const maxBody = this.http1.opts.maxRequestBytes ?? 0;
    if (hasBody) {
      stream.on('data', (c: Buffer) => {
        if (maxBody > 0 && req.bodyBytes + c.length > maxBody) { this.streamError(res, 413); return; }
        req.push(c);
      });
      stream.on('trailers', (t: IncomingHttpHeaders) => { req.trailers = fromHeaderObject(t); });
      stream.on('end', () => { if (!req.bodyDone) req.finish(); });
    } else {
      stream.resume();
    }
    const si = this.http1.opts.streamIdleTimeoutMs ?? 0;
    if (si > 0) stream.setTimeout(si, () => this.streamError(res, 408));
    stream.once('close', () => {
      const resetByPeer = !res.ended && !res.destroyed;
      if (resetByPeer) {
        res.destroyed = true;
        hooks.onAbort(res);
      }
      if (!req.bodyDone) req.fail(new Error('client reset the stream'));
      this.countClose(st, resetByPeer && stream.rstCode !== NO_ERROR && performance.now() - opened < this.prematureMs);
    });
    // A request with a body goes on after this read is processed, so the DATA frames that came
    // with its HEADERS (a unary gRPC call) are in: its body is complete and can be kept for a retry.
    if (hasBody) setImmediate(dispatchLater, hooks, req, res);
    else hooks.onRequest(req, res);
  }

  /** The server ends this stream itself (stream idle timeout, body over the limit), as HttpServer does. */
  private streamError(res: H2Response<S>, status: 408 | 413): void {
    if (res.ended || res.destroyed) return;
    this.http1.hooks.onStreamError?.(res, status);
    if (res.ended || res.destroyed) return;
    if (res.headersSent) { res.destroy(); return; }
    const body = status === 408 ? 'stream timeout' : 'Payload Too Large';
    res.writeHead(status, undefined, ['content-type', 'text/plain', 'content-length', String(body.length)]);
    res.end(body);
  }

  /** Envoy's maybeDrainDueToPrematureResets. */
  private countClose(st: H2Session, premature: boolean): void {
    st.closedStreams++;
    if (premature) st.premature++;
    const limit = this.prematureTotal;
    const over = st.closedStreams < limit ? st.premature >= limit / 2 : st.premature * 2 >= st.closedStreams;
    if (!over || st.session.destroyed) return;
    this.stats.downstream_rq_too_many_premature_resets++;
    // GOAWAY then close: the abusive connection alone goes.
    st.session.goaway(H2_ERROR.ENHANCE_YOUR_CALM);
    st.session.destroy();
  }

  /** Draining: GOAWAY every session (streams in flight finish; no new ones). */
  close(): void {
    this.closing = true;
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  destroy(): void {
    for (const s of this.sessions) s.destroy();
  }
}
