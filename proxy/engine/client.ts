// The upstream half of the engine: one HTTP/1.1 client connection on a socket the pool connected.
// One request at a time (no pipelining, as Envoy's HTTP/1 pool). The request head is written
// with its body in one syscall when the body is small; response bodies are handed on as the
// socket's own Buffers. Response framing follows RFC 9112 §6.3 with the same strict head parser
// as the server side: anything ambiguous is a protocol error (502 UPE), never guessed at.
import type { Socket } from 'node:net';
import { ChunkedDecoder, HttpParseError, chunkHeader, headEnd, lastChunk, parseResponseHead, type ResponseHead } from './http1.ts';
import type { BodySink, ServerRequest } from './server.ts';

export interface RequestOptions {
  method: string;
  path: string;
  /** Flat [name, value, ...]; Content-Length is recomputed from `body`. */
  headers: string[];
  /** None, a buffered body, or the downstream request to stream from. */
  body: Buffer | ServerRequest | null;
  /** Ask the upstream to close the connection after this response. */
  reset?: boolean;
  /**
   * Trailer fields of a buffered body (the downstream's, kept when its chunked body was buffered
   * for retries or mirroring): the body then goes chunked so they can follow it.
   */
  trailers?: string[] | null;
  /**
   * An upgrade request: the Upgrade header value to send (with `Connection: upgrade`; both are
   * hop-by-hop, so the caller's headers never carry them). A 101 answer then hands the socket to
   * `handler.onUpgrade`; any other answer is an ordinary response, after which the connection closes.
   */
  upgrade?: string;
}

/**
 * What the router and the pools use of an upstream exchange: an HTTP/1.1 ClientConnection, or
 * one stream of an HTTP/2 session (h2-client.ts).
 */
export interface UpstreamConnection {
  closed: boolean;
  idleSince: number;
  trailers: string[] | null;
  dispatch(opts: RequestOptions, handler: ResponseHandler): void;
  pause(): void;
  resume(): void;
  abort(): void;
}

/** Callbacks for one exchange; `conn` doubles as the controller (pause, resume, abort). */
export interface ResponseHandler {
  onResponseStart(conn: UpstreamConnection, status: number, rawHeaders: string[], reason: string): void;
  onResponseData(conn: UpstreamConnection, chunk: Buffer): void;
  onResponseEnd(conn: UpstreamConnection): void;
  onResponseError(conn: UpstreamConnection, err: Error): void;
  /**
   * The upstream switched protocols (101) for an upgrade request: the connection is detached
   * (`detach()` was done; it carries no HTTP any more) and `head` holds the bytes that came after
   * the 101 head, the first of the new protocol.
   */
  onUpgrade?(conn: ClientConnection, status: number, rawHeaders: string[], reason: string, head: Buffer): void;
}

/**
 * A failure of the upstream exchange. `protocol`: the upstream broke HTTP (Envoy's UPE).
 * `downstream`: the request body failed on the client's side (it went away, or sent bad framing):
 * not the upstream's fault, so never charged to it.
 */
export class UpstreamError extends Error {
  readonly code: string;
  readonly protocol: boolean;
  readonly downstream: boolean;
  constructor(message: string, code: string, protocol = false, downstream = false) {
    super(message);
    this.code = code;
    this.protocol = protocol;
    this.downstream = downstream;
  }
}

const IDLE = 0, HEAD = 1, BODY_LENGTH = 2, BODY_CHUNKED = 3, BODY_CLOSE = 4;
const MAX_RESPONSE_HEAD = 64 * 1024;
const CHUNKED_END = '0\r\n\r\n';
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

export class ClientConnection implements BodySink, UpstreamConnection {
  readonly socket: Socket;
  /** Host header for requests that arrive without one (HTTP/1.0 clients). */
  private readonly defaultHost: string;
  /** Set once the connection must not take another request. */
  closed = false;
  /** Monotonic ms since the connection went idle (the pool's idle timeout). */
  idleSince = 0;
  /** Trailer fields of the response that just ended (chunked, validated), for `onResponseEnd`; else null. */
  trailers: string[] | null = null;
  private handler: ResponseHandler | null = null;
  private state = IDLE;
  private method = '';
  private buf: Buffer | null = null;
  private remaining = 0;
  private decoder: ChunkedDecoder | null = null;
  private keepAlive = true;
  private gotBytes = false;
  private src: ServerRequest | null = null;
  private srcChunked = false;
  private reqDone = true;
  private lastError: Error | null = null;
  private paused = false;
  private upgrading = false;
  private readonly deliver = (c: Buffer): void => { if (this.handler !== null) this.handler.onResponseData(this, c); };

  constructor(socket: Socket, defaultHost: string) {
    this.socket = socket;
    this.defaultHost = defaultHost;
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('drain', () => { if (this.src !== null) this.src.resume(); });
    socket.on('error', (e: Error) => { this.lastError = e; });
    socket.on('close', () => this.onClose());
  }

  dispatch(opts: RequestOptions, handler: ResponseHandler): void {
    if (this.closed || this.socket.destroyed) { handler.onResponseError(this, new UpstreamError('connection closed', 'ECONNRESET')); return; }
    this.handler = handler;
    this.state = HEAD;
    this.method = opts.method;
    this.keepAlive = opts.reset !== true && opts.upgrade === undefined;
    this.upgrading = opts.upgrade !== undefined;
    this.gotBytes = false;
    this.trailers = null;
    this.buf = null;
    let h = `${opts.method} ${opts.path} HTTP/1.1\r\n`;
    let host = false;
    const hs = opts.headers;
    for (let i = 0; i < hs.length; i += 2) {
      const n = hs[i];
      if (n.length === 14 && n.toLowerCase() === 'content-length') continue; // ours, from the body
      if (n.length === 4 && !host && n.toLowerCase() === 'host') host = true;
      h += `${n}: ${hs[i + 1]}\r\n`;
    }
    if (!host) h += `host: ${this.defaultHost}\r\n`;
    if (opts.upgrade !== undefined) h += `connection: upgrade\r\nupgrade: ${opts.upgrade}\r\n`;
    else if (opts.reset === true) h += 'connection: close\r\n';
    const body = opts.body;
    const s = this.socket;
    if (body === null) {
      this.reqDone = true;
      s.write(BODY_METHODS.has(opts.method) ? `${h}content-length: 0\r\n\r\n` : `${h}\r\n`, 'latin1');
    } else if (Buffer.isBuffer(body) && opts.trailers) {
      // One chunk and the trailers (rare: a buffered chunked body that had trailers).
      this.reqDone = true;
      s.cork();
      s.write(`${h}transfer-encoding: chunked\r\n\r\n${body.length > 0 ? chunkHeader(body.length) : ''}`, 'latin1');
      if (body.length > 0) { s.write(body); s.write('\r\n', 'latin1'); }
      s.write(lastChunk(opts.trailers), 'latin1');
      s.uncork();
    } else if (Buffer.isBuffer(body)) {
      this.reqDone = true;
      h += `content-length: ${body.length}\r\n\r\n`;
      if (body.length <= 16384) {
        const b = Buffer.allocUnsafe(h.length + body.length);
        b.write(h, 0, 'latin1');
        body.copy(b, h.length);
        s.write(b);
      } else {
        s.cork();
        s.write(h, 'latin1');
        s.write(body);
        s.uncork();
      }
    } else {
      // Stream from the downstream request: keep its length when it had one, else chunked.
      this.srcChunked = body.chunked || body.contentLength < 0;
      h += this.srcChunked ? 'transfer-encoding: chunked\r\n\r\n' : `content-length: ${body.contentLength}\r\n\r\n`;
      s.write(h, 'latin1');
      this.reqDone = false;
      this.src = body;
      body.pipeTo(this);
    }
  }

  // --- controller ---
  /** Stop reading the response (the downstream is backed up). */
  pause(): void { if (!this.paused) { this.paused = true; this.socket.pause(); } }
  resume(): void { if (this.paused) { this.paused = false; this.socket.resume(); } }

  /**
   * Take the socket out of HTTP: this connection stops reading it and takes no more requests, and
   * the caller relays raw bytes on it (an upgrade, or a CONNECT terminated here). The socket keeps
   * this connection's 'error' and 'close' listeners (harmless: nothing is handled any more).
   */
  detach(): Socket {
    this.handler = null;
    this.detachSource();
    this.closed = true;
    this.state = IDLE;
    const s = this.socket;
    s.removeAllListeners('data');
    s.removeAllListeners('drain');
    if (this.paused) { this.paused = false; s.resume(); }
    return s;
  }

  /** Give up on the current exchange: the connection is closed (it may be mid-message). */
  abort(): void {
    this.handler = null;
    this.detachSource();
    this.closed = true;
    this.socket.destroy();
  }

  // --- request body (BodySink) ---
  onBodyData(chunk: Buffer): boolean {
    if (this.src === null) return true;
    const s = this.socket;
    if (!this.srcChunked) return s.write(chunk);
    s.cork();
    s.write(chunkHeader(chunk.length), 'latin1');
    s.write(chunk);
    s.write('\r\n', 'latin1');
    s.uncork();
    return !s.writableNeedDrain;
  }

  onBodyEnd(): void {
    if (this.src === null) return;
    // The downstream's trailers (chunked both ways) follow the last chunk.
    if (this.srcChunked) this.socket.write(this.src.trailers === null ? CHUNKED_END : lastChunk(this.src.trailers), 'latin1');
    this.src = null;
    this.reqDone = true;
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
  private onData(chunk: Buffer): void {
    if (this.handler === null) {
      // Bytes nobody asked for: the connection's framing is lost.
      this.closed = true;
      this.socket.destroy();
      return;
    }
    this.gotBytes = true;
    let data = chunk;
    if (this.buf !== null) { data = Buffer.concat([this.buf, chunk]); this.buf = null; }
    let off = 0;
    const h0 = this.handler;
    while (off < data.length && this.handler === h0) {
      switch (this.state) {
        case HEAD: {
          let end: number;
          let head: ResponseHead;
          try {
            end = headEnd(data, off);
            if (end < 0) {
              if (data.length - off > MAX_RESPONSE_HEAD) throw new HttpParseError(502, 'HPE_HEADER_OVERFLOW', 'response head too large');
              this.buf = off === 0 ? data : data.subarray(off);
              return;
            }
            // The limit holds for a head that arrived whole in one read too.
            if (end - off > MAX_RESPONSE_HEAD) throw new HttpParseError(502, 'HPE_HEADER_OVERFLOW', 'response head too large');
            head = parseResponseHead(data.toString('latin1', off, end - 2));
          } catch (e) { this.protocolError(e as Error); return; }
          off = end;
          const st = head.status;
          if (st < 200) {
            if (st === 101 && this.upgrading && h0.onUpgrade !== undefined && this.reqDone) {
              // Switched: the rest of this read is the new protocol's first bytes.
              const rest = off < data.length ? data.subarray(off) : Buffer.alloc(0);
              this.detach();
              h0.onUpgrade(this, st, head.raw, head.reason, rest);
              return;
            }
            // Interim responses are not forwarded (the proxy answered Expect itself); 101 was never asked for.
            if (st === 101) { this.protocolError(new Error('unexpected 101 Switching Protocols')); return; }
            continue;
          }
          if (head.minor === 1 ? head.connClose : !head.connKeepAlive) this.keepAlive = false;
          const noBody = this.method === 'HEAD' || st === 204 || st === 304;
          if (noBody) this.state = IDLE;
          else if (head.chunked) { this.state = BODY_CHUNKED; this.decoder = new ChunkedDecoder(); }
          else if (head.contentLength >= 0) { this.state = head.contentLength > 0 ? BODY_LENGTH : IDLE; this.remaining = head.contentLength; }
          else { this.state = BODY_CLOSE; this.keepAlive = false; }
          this.handler.onResponseStart(this, st, head.raw, head.reason);
          if (this.state === IDLE && this.handler === h0) { this.complete(off < data.length); return; }
          continue;
        }
        case BODY_LENGTH: {
          const n = Math.min(this.remaining, data.length - off);
          this.deliver(off === 0 && n === data.length ? data : data.subarray(off, off + n));
          this.remaining -= n;
          off += n;
          if (this.remaining === 0 && this.handler === h0) { this.complete(off < data.length); return; }
          continue;
        }
        case BODY_CHUNKED: {
          let r: number;
          try {
            r = this.decoder!.feed(data, off, this.deliver);
          } catch (e) { this.protocolError(e as Error); return; }
          if (r < 0) return;
          if (this.handler === h0) this.complete(r < data.length);
          return;
        }
        case BODY_CLOSE:
          this.deliver(off === 0 ? data : data.subarray(off));
          return;
        default:
          return;
      }
    }
  }

  /** The response is complete. `extra`: bytes followed it, so the connection cannot be reused. */
  private complete(extra: boolean): void {
    const h = this.handler!;
    this.handler = null;
    this.state = IDLE;
    if (this.decoder !== null) { this.trailers = this.decoder.trailers; this.decoder = null; }
    // A connection goes back to the pool reading, whatever backpressure the last response had.
    this.resume();
    // Still sending the request body (an early response): the connection's state is unknown.
    if (extra || !this.reqDone) this.keepAlive = false;
    this.detachSource();
    if (!this.keepAlive) this.closed = true;
    h.onResponseEnd(this);
    if (this.closed && !this.socket.destroyed) this.socket.destroy();
  }

  private protocolError(e: Error): void {
    this.fail(new UpstreamError(`protocol error: ${e.message}`, 'HPE_INVALID_CONSTANT', true));
  }

  private fail(err: Error): void {
    const h = this.handler;
    this.abort();
    if (h !== null) h.onResponseError(this, err);
  }

  private onClose(): void {
    this.closed = true;
    const h = this.handler;
    if (h === null) return;
    if (this.state === BODY_CLOSE) { this.complete(false); return; }
    this.handler = null;
    this.detachSource();
    const e = this.lastError as NodeJS.ErrnoException | null;
    h.onResponseError(this, new UpstreamError(e?.message ?? (this.gotBytes ? 'upstream closed mid-response' : 'other side closed'), e?.code ?? 'UND_ERR_SOCKET'));
  }
}
