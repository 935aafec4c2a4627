// The upstream HTTP/2 half of the engine, on node:http2: one `H2Connection` per session the pool
// opened, and one `H2Exchange` per request (a stream), which is the UpstreamConnection the router
// drives exactly as an HTTP/1.1 ClientConnection: dispatch, pause/resume (the stream's flow
// control), abort (RST_STREAM CANCEL: only this stream goes, the session stays).
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, SecureClientSessionOptions } from 'node:http2';
import type { Socket } from 'node:net';
import { UpstreamError, type RequestOptions, type ResponseHandler, type UpstreamConnection } from './client.ts';
import type { BodySink, ServerRequest } from './server.ts';
import { fromHeaderObject, H2_ERROR, http2, toHeaderObject } from './h2-server.ts';

/** Envoy's default for upstream HTTP/2 max_concurrent_streams (also bounded by the peer's SETTINGS). */
export const H2_DEFAULT_MAX_STREAMS = 2147483647;

export interface H2ConnectionEvents {
  /** The session is ready for streams (SETTINGS exchanged, or at least the socket connected). */
  onReady(c: H2Connection): void;
  /** Could not connect. */
  onConnectError(c: H2Connection, err: Error): void;
  /** GOAWAY received: no new streams; in-flight ones below its last stream id finish. */
  onGoaway(c: H2Connection): void;
  /** The session is gone. */
  onClose(c: H2Connection): void;
}

/** One upstream HTTP/2 session. */
export class H2Connection {
  readonly session: ClientHttp2Session;
  readonly authority: string;
  /** Streams in flight on this session. */
  active = 0;
  /** Streams ever opened (maxRequestsPerConnection). */
  total = 0;
  ready = false;
  /** No new streams: GOAWAY received, closing, or failed. */
  goingAway = false;
  closed = false;
  idleSince = performance.now();
  private readonly localMax: number;

  constructor(authority: string, createConnection: () => Socket, localMax: number, ev: H2ConnectionEvents) {
    this.authority = authority;
    this.localMax = localMax;
    this.session = http2().connect(`http://${authority}`, {
      createConnection,
      settings: { enablePush: false },
      maxSessionInvalidFrames: 1000,
    } as SecureClientSessionOptions);
    const s = this.session;
    s.on('error', (err: Error) => { if (!this.ready) ev.onConnectError(this, err); });
    s.once('connect', () => { this.ready = true; ev.onReady(this); });
    s.on('goaway', () => { if (!this.goingAway) { this.goingAway = true; ev.onGoaway(this); } });
    s.on('remoteSettings', () => { if (this.ready) ev.onReady(this); });
    s.once('close', () => { this.closed = true; this.goingAway = true; ev.onClose(this); });
    // A session stays referenced only while streams are open (the idle timeout closes it).
    s.unref();
  }

  /** Streams this session may still take now: the peer's SETTINGS_MAX_CONCURRENT_STREAMS and ours. */
  get capacity(): number {
    if (!this.ready || this.goingAway || this.closed) return 0;
    const remote = this.session.remoteSettings?.maxConcurrentStreams ?? H2_DEFAULT_MAX_STREAMS;
    return Math.min(remote, this.localMax) - this.active;
  }

  close(): void {
    this.goingAway = true;
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }

  destroy(): void {
    this.goingAway = true;
    this.closed = true;
    if (!this.session.destroyed) this.session.destroy();
  }
}

/** Request headers as node:http2 takes them: pseudo-headers from the request, Host -> :authority. */
function requestHeaders(opts: RequestOptions, defaultAuthority: string): Record<string, string | string[] | number> {
  const h: Record<string, string | string[] | number> = { ':method': opts.method, ':path': opts.path, ':scheme': 'http' };
  const hs = opts.headers;
  let authority: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < hs.length; i += 2) {
    const n = hs[i];
    if (n.length === 4 && n.toLowerCase() === 'host') { if (authority === undefined) authority = hs[i + 1]; continue; }
    // The length of a buffered body is ours; a streamed one keeps the client's (it is valid in h2).
    if (n.length === 14 && Buffer.isBuffer(opts.body) && n.toLowerCase() === 'content-length') continue;
    rest.push(n, hs[i + 1]);
  }
  h[':authority'] = authority ?? defaultAuthority;
  toHeaderObject(rest, h);
  if (Buffer.isBuffer(opts.body)) h['content-length'] = opts.body.length;
  return h;
}

/** One request on an HTTP/2 session: the UpstreamConnection for that exchange. */
export class H2Exchange implements UpstreamConnection, BodySink {
  readonly conn: H2Connection;
  closed = false;
  idleSince = 0;
  trailers: string[] | null = null;
  private stream: ClientHttp2Stream | null = null;
  private handler: ResponseHandler | null = null;
  private src: ServerRequest | null = null;
  private gotHead = false;

  constructor(conn: H2Connection) { this.conn = conn; }

  dispatch(opts: RequestOptions, handler: ResponseHandler): void {
    const c = this.conn;
    if (c.closed || c.session.destroyed) { handler.onResponseError(this, new UpstreamError('connection closed', 'ECONNRESET')); return; }
    this.handler = handler;
    const body = opts.body;
    const buffered = body === null || Buffer.isBuffer(body);
    const trailers = buffered ? opts.trailers ?? null : null;
    let st: ClientHttp2Stream;
    try {
      st = c.session.request(requestHeaders(opts, c.authority), {
        endStream: body === null || (Buffer.isBuffer(body) && body.length === 0 && trailers === null),
        // A streamed body may end with trailers (gRPC clients rarely send any, but h1 chunked can).
        waitForTrailers: !buffered || trailers !== null,
      });
    } catch (e) {
      this.handler = null;
      handler.onResponseError(this, new UpstreamError(`http2 request: ${(e as Error).message}`, 'ERR_HTTP2', true));
      return;
    }
    this.stream = st;
    st.on('response', (h: IncomingHttpHeaders) => this.onHead(h));
    st.on('data', (chunk: Buffer) => { if (this.handler !== null) this.handler.onResponseData(this, chunk); });
    st.on('trailers', (t: IncomingHttpHeaders) => { this.trailers = fromHeaderObject(t); });
    st.on('end', () => this.onEnd());
    st.on('error', () => {}); // 'close' follows with the code
    st.on('close', () => this.onStreamClose());
    if (Buffer.isBuffer(body)) {
      if (trailers !== null) st.once('wantTrailers', () => { if (!st.destroyed) st.sendTrailers(toHeaderObject(trailers, {})); });
      if (body.length > 0 || trailers !== null) st.end(body.length > 0 ? body : undefined);
    } else if (body !== null) {
      st.once('wantTrailers', () => {
        if (st.destroyed) return;
        const t = this.srcTrailers;
        st.sendTrailers(t === null ? {} : toHeaderObject(t, {}));
      });
      st.on('drain', () => { if (this.src !== null) this.src.resume(); });
      this.src = body;
      body.pipeTo(this);
    }
  }

  private srcTrailers: string[] | null = null;

  pause(): void { this.stream?.pause(); }
  resume(): void { this.stream?.resume(); }

  /** Give up on this exchange: RST_STREAM(CANCEL), the session stays for other streams. */
  abort(): void {
    this.handler = null;
    this.detachSource();
    this.closed = true;
    const st = this.stream;
    if (st !== null && !st.destroyed) st.close(H2_ERROR.CANCEL);
  }

  // --- request body (BodySink) ---
  onBodyData(chunk: Buffer): boolean {
    const st = this.stream;
    if (this.src === null || st === null || st.destroyed) return true;
    return st.write(chunk);
  }

  onBodyEnd(): void {
    const src = this.src;
    if (src === null) return;
    this.srcTrailers = src.trailers;
    this.src = null;
    if (this.stream !== null && !this.stream.destroyed) this.stream.end();
  }

  onBodyError(err: Error): void {
    if (this.src === null) return;
    this.src = null;
    this.fail(new UpstreamError(`request body: ${err.message}`, 'ECONNABORTED', false, true));
  }

  private detachSource(): void {
    if (this.src !== null) { this.src.unpipe(); this.src = null; }
  }

  // --- response ---
  private onHead(h: IncomingHttpHeaders): void {
    const handler = this.handler;
    if (handler === null) return;
    const status = Number(h[':status']);
    this.gotHead = true;
    handler.onResponseStart(this, status, fromHeaderObject(h), '');
  }

  private onEnd(): void {
    const h = this.handler;
    if (h === null || !this.gotHead) return;
    this.handler = null;
    this.closed = true;
    this.detachSource();
    h.onResponseEnd(this);
  }

  private onStreamClose(): void {
    const h = this.handler;
    this.closed = true;
    if (h === null) return;
    this.handler = null;
    this.detachSource();
    const st = this.stream!;
    const code = st.rstCode;
    // REFUSED_STREAM: the server took nothing of it (Envoy's refused-stream); anything else a reset.
    const refused = code === H2_ERROR.REFUSED_STREAM;
    const err = new UpstreamError(refused ? 'remote refused stream reset' : this.conn.closed ? 'upstream session closed' : `remote reset (HTTP/2 error ${code})`,
      refused ? 'REFUSED_STREAM' : 'ECONNRESET', code === H2_ERROR.PROTOCOL_ERROR);
    h.onResponseError(this, err);
  }

  private fail(err: Error): void {
    const h = this.handler;
    this.abort();
    if (h !== null) h.onResponseError(this, err);
  }
}
