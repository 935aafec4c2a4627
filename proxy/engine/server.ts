// The downstream half of the engine: an HTTP/1.1 server on plain `net` sockets. It parses only
// what routing and framing need (one latin1 string per head, raw header arrays, no header
// objects), hands bodies through as the Buffers the socket produced, and writes a response head
// together with its first body bytes in one syscall. One request at a time per connection:
// pipelined requests wait, unparsed, until the response before them has ended (RFC 9112 §9.3.2).
import { createServer, type Server, type Socket } from 'node:net';
import { ChunkedDecoder, HttpParseError, chunkHeader, headEnd, lastChunk, parseRequestHead, type RequestHead } from './http1.ts';
import { httpDate } from './date.ts';

export interface ServerOptions {
  /** Largest request head (request line + headers) accepted; larger is a 431. */
  maxHeaderBytes: number;
  /** A connection with no request in progress is closed after this long. 0 = never. */
  idleTimeoutMs: number;
  /** A request head must arrive within this long of its first byte (408 otherwise). */
  headersTimeoutMs: number;
  /**
   * Envoy's `stream_idle_timeout`: a request in progress with no bytes either way for this long
   * is ended (408 before a response started, else reset). 0 = never (the default here).
   */
  streamIdleTimeoutMs?: number;
  /** Largest request body accepted (413 above it; a chunked body is cut when it passes). 0 = no limit. */
  maxRequestBytes?: number;
  /**
   * Accept hook (the transport below HTTP, e.g. TLS termination with first-bytes detection): gets
   * each accepted socket and calls `ready` with the socket to speak HTTP on (the same or a wrapper)
   * and what it learned of the peer (null: plaintext); or destroys the socket to refuse it.
   */
  accept?: (socket: Socket, ready: (s: Socket, peer: ConnPeer | null) => void) => void;
}

/** The authenticated peer of a connection, as the accept hook found it (the engine does not read it). */
export interface ConnPeer {
  /** The peer certificate's identity (a SPIFFE ID: `spiffe://td/ns/x/sa/y`), null if it sent none. */
  identity: string | null;
  /** The server name the client asked for (TLS SNI). */
  sni: string | null;
  /** The local identity presented (our certificate's). */
  localIdentity: string | null;
  /** sha256 (hex) of the peer certificate's DER, for x-forwarded-client-cert. */
  certHash?: string;
}

/** `S`: what the user of the server hangs on each response (`res.stream`): the listener's stream. */
export interface ServerHooks<S = unknown> {
  onRequest(req: ServerRequest, res: ServerResponse<S>): void;
  /** The connection went away before `res` ended. */
  onAbort(res: ServerResponse<S>): void;
  /**
   * The server ends this stream itself: 408 (stream idle timeout) or 413 (body over
   * `maxRequestBytes`). The owner stops its work and may reply; if `res` has not ended when this
   * returns, the server replies `status` itself (or resets the stream if a response started).
   */
  onStreamError?(res: ServerResponse<S>, status: 408 | 413): void;
  /** A connection's bytes were refused before any request (not HTTP, or malformed): for a log line. */
  onReject?(status: number, code: string, remote: string | undefined): void;
  onConnection(open: boolean): void;
}

/** Where a request body goes: `onBodyData` returning false asks the producer to pause. */
export interface BodySink {
  onBodyData(chunk: Buffer): boolean;
  onBodyEnd(): void;
  onBodyError(err: Error): void;
}

/** Pipelined bytes held while a response is in progress before reading pauses. */
const HOLD_LIMIT = 64 * 1024;
/** Body bytes queued before anything consumes them, before reading pauses. */
const QUEUE_LIMIT = 64 * 1024;
/** Unread body bytes the server will read and drop after a response to keep the connection. */
const DISCARD_LIMIT = 64 * 1024;
/**
 * Lingering close (nginx `lingering_close`, Envoy's delayed close): a connection closed with
 * request bytes still coming is half-closed after the response and read (and dropped) for up to
 * this long / this many bytes, so the client reads the response instead of a reset. Closing a
 * socket with unread data makes the kernel send RST, and the client's kernel then drops the
 * response it had not read yet.
 */
const LINGER_MS = 3000;
const LINGER_BYTES = 32 * 1024 * 1024;
/**
 * Fairness: body bytes one connection may hand on before it yields the event loop (setImmediate),
 * so one bulk upload cannot hold the loop for a whole batch of socket reads while other
 * connections wait.
 */
const YIELD_BYTES = 64 * 1024;
/** Reason phrases (RFC 9110), so the engine need not load node:http. */
const STATUS_CODES: Record<number, string> = {
  100: 'Continue', 101: 'Switching Protocols', 102: 'Processing', 103: 'Early Hints',
  200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information', 204: 'No Content', 205: 'Reset Content', 206: 'Partial Content',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable',
  407: 'Proxy Authentication Required', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed',
  413: 'Payload Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 417: 'Expectation Failed', 418: "I'm a Teapot",
  421: 'Misdirected Request', 422: 'Unprocessable Entity', 425: 'Too Early', 426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
};
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
const CHUNKED_END = '0\r\n\r\n';

/** What a request needs from the connection it arrived on (an HTTP/1.1 ServerConn, or an HTTP/2 stream). */
export interface ReadSource {
  readonly remoteAddress: string;
  /** The TLS peer of the connection (mTLS), or null. */
  readonly peer: ConnPeer | null;
  readonly localAddress: string;
  readonly localPort: number;
  pauseReading(): void;
  resumeReading(): void;
}

export class ServerRequest {
  readonly method: string;
  /** Origin-form (an absolute-form target was rewritten by the parser, its authority made the Host). */
  readonly url: string;
  readonly httpVersion: string;
  readonly minor: number;
  readonly rawHeaders: string[];
  readonly host: string | undefined;
  readonly contentLength: number;
  readonly chunked: boolean;
  readonly hasBody: boolean;
  /** What the client asked for: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with keep-alive. */
  readonly wantsKeepAlive: boolean;
  /** Upgrade protocols asked for (`Connection: upgrade` + Upgrade), lower-case; null for none. */
  readonly upgrade: string[] | null;
  readonly remoteAddress: string;
  /** The connection's authenticated peer (null: plaintext). */
  readonly peer: ConnPeer | null;
  /** Trailer fields of a chunked body (validated, prohibited ones dropped), once it ended; null for none. */
  trailers: string[] | null = null;
  bodyDone: boolean;
  bodyBytes = 0;
  /** Set when the body cannot complete (client gone, bad framing). */
  bodyError: Error | null = null;
  private conn: ReadSource;
  private queued: Buffer[] | null = null;
  private queuedBytes = 0;
  private sink: BodySink | null = null;
  private collectLimit = 0;
  private collectCb: ((body: Buffer | null) => void) | null = null;
  discard = false;
  private headerObj: Record<string, string> | null = null;

  /** `httpVersion`: set by the HTTP/2 server ('2'); HTTP/1.x derives it from the request line. */
  constructor(conn: ReadSource, h: RequestHead, httpVersion?: string) {
    this.conn = conn;
    this.method = h.method;
    this.url = h.url;
    this.minor = h.minor;
    this.httpVersion = httpVersion ?? (h.minor === 1 ? '1.1' : '1.0');
    this.rawHeaders = h.raw;
    this.host = h.host;
    this.contentLength = h.contentLength;
    this.chunked = h.chunked;
    this.hasBody = h.chunked || h.contentLength > 0;
    this.wantsKeepAlive = h.minor === 1 ? !h.connClose : h.connKeepAlive;
    this.upgrade = h.upgrade;
    this.bodyDone = !this.hasBody;
    this.remoteAddress = conn.remoteAddress;
    this.peer = conn.peer;
  }

  /** The local address and port the connection was accepted on. */
  get localAddress(): string { return this.conn.localAddress; }
  get localPort(): number { return this.conn.localPort; }

  /** One header, lower-case name; repeated fields joined with ", " (RFC 9110 §5.3). */
  header(lower: string): string | undefined {
    const raw = this.rawHeaders;
    let out: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      if (n.length === lower.length && n.toLowerCase() === lower) out = out === undefined ? raw[i + 1] : `${out}, ${raw[i + 1]}`;
    }
    return out;
  }

  /** A lower-cased header object, built on first use (only features that need one ask). */
  get headers(): Record<string, string> {
    if (this.headerObj !== null) return this.headerObj;
    const o: Record<string, string> = Object.create(null);
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i].toLowerCase();
      const prev = o[n];
      o[n] = prev === undefined ? raw[i + 1] : `${prev}${n === 'cookie' ? '; ' : ', '}${raw[i + 1]}`;
    }
    return (this.headerObj = o);
  }

  /** Stream the body to `sink`: what arrived already first, then the rest as it comes. */
  pipeTo(sink: BodySink): void {
    this.sink = sink;
    const q = this.queued;
    this.queued = null;
    this.queuedBytes = 0;
    let ok = true;
    if (q !== null) for (const c of q) ok = sink.onBodyData(c);
    if (this.bodyError !== null) { sink.onBodyError(this.bodyError); return; }
    if (this.bodyDone) { sink.onBodyEnd(); return; }
    if (ok) this.conn.resumeReading(); else this.conn.pauseReading();
  }

  /** Stop streaming to the current sink (an attempt gave up); data queues again. */
  unpipe(): void { this.sink = null; }

  /**
   * Buffer the whole body if it is at most `limit` bytes: `cb(buffer)`. A longer body stays
   * queued, ready to stream with `pipeTo`: `cb(null)`.
   */
  collect(limit: number, cb: (body: Buffer | null) => void): void {
    if (this.bodyDone && this.bodyError === null) { cb(this.takeQueued()); return; }
    this.collectLimit = limit;
    this.collectCb = cb;
    this.conn.resumeReading();
  }

  private takeQueued(): Buffer {
    const q = this.queued;
    this.queued = null;
    const n = this.queuedBytes;
    this.queuedBytes = 0;
    if (q === null) return EMPTY;
    return q.length === 1 ? q[0] : Buffer.concat(q, n);
  }

  pause(): void { this.conn.pauseReading(); }
  resume(): void { this.conn.resumeReading(); }

  // --- from the connection ---
  push(chunk: Buffer): void {
    this.bodyBytes += chunk.length;
    if (this.discard) return;
    const s = this.sink;
    if (s !== null) { if (!s.onBodyData(chunk)) this.conn.pauseReading(); return; }
    (this.queued ??= []).push(chunk);
    this.queuedBytes += chunk.length;
    if (this.collectCb !== null) {
      if (this.queuedBytes > this.collectLimit) {
        const cb = this.collectCb;
        this.collectCb = null;
        this.conn.pauseReading();
        cb(null);
      }
    } else if (this.queuedBytes > QUEUE_LIMIT) this.conn.pauseReading();
  }

  finish(): void {
    this.bodyDone = true;
    if (this.discard) return;
    if (this.sink !== null) { this.sink.onBodyEnd(); return; }
    if (this.collectCb !== null) { const cb = this.collectCb; this.collectCb = null; cb(this.takeQueued()); }
  }

  fail(err: Error): void {
    if (this.bodyDone || this.bodyError !== null) return;
    this.bodyError = err;
    this.collectCb = null;
    if (this.sink !== null) this.sink.onBodyError(err);
  }
}

export class ServerResponse<S = unknown> {
  readonly req: ServerRequest;
  headersSent = false;
  ended = false;
  destroyed = false;
  /** Cleared to close the connection after this response (draining). */
  shouldKeepAlive = true;
  statusCode = 0;
  /** The owner's state for this request (the listener keeps its HttpStream here). */
  stream: S | null = null;
  /** Close the connection after this response (decided at writeHead). */
  closeAfter = false;
  private conn: ServerConn;
  private head: string | null = null;
  private chunked = false;
  private noBody = false;
  private drainCb: (() => void) | null = null;

  constructor(conn: ServerConn, req: ServerRequest) {
    this.conn = conn;
    this.req = req;
  }

  get writableFinished(): boolean { return this.ended; }

  /**
   * Set the status and headers (flat [name, value, ...]); written with the first body bytes.
   * Framing is the server's: Content-Length when given, else chunked (HTTP/1.1) or close.
   * Transfer-Encoding and Connection are the server's own and are not taken from `headers`.
   */
  writeHead(status: number, reason: string | undefined, headers: string[]): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.statusCode = status;
    const req = this.req;
    let close = !this.shouldKeepAlive || !this.conn.keepAlive(req);
    // A response before its request is complete (an early 413, a local reply): as Envoy, the
    // connection closes after it unless the rest is small enough to read and drop.
    if (!req.bodyDone && !close && this.conn.earlyResponseCloses()) close = true;
    let hasLength = false;
    let hasDate = false;
    let h = `HTTP/1.1 ${status} ${reason ?? STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) {
      const n = headers[i];
      const l = n.length;
      if (l === 14 && n.toLowerCase() === 'content-length') hasLength = true;
      else if (l === 4 && n.toLowerCase() === 'date') hasDate = true;
      else if ((l === 17 && n.toLowerCase() === 'transfer-encoding') || (l === 10 && n.toLowerCase() === 'connection')) continue;
      h += `${n}: ${headers[i + 1]}\r\n`;
    }
    // RFC 9110 section 6.6.1: an origin with a clock sends Date; the proxy adds it when the
    // upstream did not, and on its own replies (as Envoy). One string per second, shared.
    if (!hasDate) h += `date: ${httpDate()}\r\n`;
    this.noBody = req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    if (!this.noBody && !hasLength) {
      if (req.minor === 1) { this.chunked = true; h += 'transfer-encoding: chunked\r\n'; } else close = true;
    }
    if (close) h += 'connection: close\r\n';
    else if (req.minor === 0) h += 'connection: keep-alive\r\n';
    this.closeAfter = close;
    this.head = `${h}\r\n`;
  }

  /** Write body bytes; false = the socket is backed up (wait for `onceDrain`). */
  write(chunk: Buffer): boolean {
    if (this.ended || this.destroyed) return false;
    this.conn.wrote = true;
    const s = this.conn.socket;
    if (this.noBody || chunk.length === 0) { if (this.head !== null) this.flushHead(); return !s.writableNeedDrain; }
    const head = this.head;
    if (head !== null) this.head = null;
    const pre = this.chunked ? (head === null ? chunkHeader(chunk.length) : head + chunkHeader(chunk.length)) : head;
    if (pre === null) return s.write(chunk);
    return this.send(pre, chunk, this.chunked ? '\r\n' : '');
  }

  /**
   * End the response, with optional last body bytes. `trailers` (flat [name, value, ...], already
   * validated) go out after the last chunk when the response is chunked; with any other framing
   * there is nowhere to put them and they are dropped (RFC 9110 section 6.5.1 allows it).
   */
  end(body?: Buffer | string, trailers: string[] | null = null): void {
    if (this.ended || this.destroyed) return;
    if (!this.headersSent) this.writeHead(200, undefined, ['content-length', String(body === undefined ? 0 : Buffer.byteLength(body))]);
    const chunk = body === undefined || this.noBody ? EMPTY : typeof body === 'string' ? Buffer.from(body) : body;
    const head = this.head;
    this.head = null;
    if (this.chunked) {
      const last = trailers === null ? CHUNKED_END : lastChunk(trailers);
      const pre = chunk.length > 0 ? `${head ?? ''}${chunkHeader(chunk.length)}` : null;
      if (pre !== null) this.send(pre, chunk, `\r\n${last}`);
      else this.conn.socket.write(head === null ? last : head + last, 'latin1');
    } else if (head !== null) {
      if (chunk.length > 0) this.send(head, chunk, ''); else this.conn.socket.write(head, 'latin1');
    } else if (chunk.length > 0) this.conn.socket.write(chunk);
    this.ended = true;
    this.conn.responseDone(this);
  }

  /**
   * Answer the request with `status` (101 for an upgrade, 200 for CONNECT) and the given headers
   * written as they are (the upstream's 101 head is copied verbatim: Connection, Upgrade,
   * Sec-WebSocket-*), no framing added, and hand the socket over: the caller relays raw bytes on
   * it from now on. Returns the socket and the bytes the client sent after its head.
   */
  upgrade(status: number, reason: string | undefined, headers: string[]): { socket: Socket; head: Buffer; streamIdleTimeoutMs: number } {
    if (this.headersSent || this.ended || this.destroyed) throw new Error('upgrade after the response started');
    this.headersSent = true;
    this.statusCode = status;
    let h = `HTTP/1.1 ${status} ${reason ?? STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    for (let i = 0; i < headers.length; i += 2) h += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.conn.socket.write(`${h}\r\n`, 'latin1');
    this.ended = true;
    return { socket: this.conn.socket, head: this.conn.takeover(), streamIdleTimeoutMs: this.conn.streamIdleTimeoutMs };
  }

  /** Abort: the client sees the connection reset, never a truncated body as complete. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.conn.socket.destroy();
  }

  onceDrain(cb: () => void): void { this.drainCb = cb; }

  /** From the connection's socket 'drain'. */
  drained(): void {
    const cb = this.drainCb;
    this.drainCb = null;
    if (cb !== null) cb();
  }

  private flushHead(): void {
    const h = this.head!;
    this.head = null;
    this.conn.socket.write(h, 'latin1');
  }

  /** `pre` + `chunk` + `post` as one write when small (one syscall), else corked. */
  private send(pre: string, chunk: Buffer, post: string): boolean {
    const s = this.conn.socket;
    if (chunk.length <= 16384) {
      const b = Buffer.allocUnsafe(pre.length + chunk.length + post.length);
      b.write(pre, 0, 'latin1');
      chunk.copy(b, pre.length);
      if (post.length > 0) b.write(post, pre.length + chunk.length, 'latin1');
      return s.write(b);
    }
    s.cork();
    s.write(pre, 'latin1');
    s.write(chunk);
    if (post.length > 0) s.write(post, 'latin1');
    s.uncork();
    return !s.writableNeedDrain;
  }
}

/** One downstream connection: parse, dispatch, frame, in order. */
export class ServerConn {
  readonly socket: Socket;
  readonly remoteAddress: string;
  readonly peer: ConnPeer | null;
  get localAddress(): string { return this.socket.localAddress ?? ''; }
  get localPort(): number { return this.socket.localPort ?? 0; }
  private server: HttpServer;
  private buf: Buffer | null = null;
  req: ServerRequest | null = null;
  res: ServerResponse | null = null;
  private decoder: ChunkedDecoder | null = null;
  private remaining = 0;
  private discardLeft = 0;
  private paused = false;
  /** Reading is held for fairness until the server's next setImmediate (see YIELD_BYTES). */
  yielded = false;
  private sinceYield = 0;
  private inProcess = false;
  /** No more requests on this connection (refused, or closing). */
  private dead = false;
  /** Lingering close: the monotonic deadline, and the bytes still allowed to be dropped. */
  private lingerUntil = 0;
  private lingerLeft = 0;
  headStart = 0;
  lastActive = performance.now();
  /** Set by every response write; the server's timer turns it into `lastActive` (no clock read per write). */
  wrote = false;
  /** `maxRequestBytes`, and whether the current body passed it (nothing past it is handed on). */
  private readonly maxBody: number;
  private overLimit = false;
  private readonly onBodyChunk = (c: Buffer): void => {
    const r = this.req!;
    if (r.discard) { this.discardLeft -= c.length; r.bodyBytes += c.length; return; }
    if (this.maxBody > 0 && (this.overLimit || r.bodyBytes + c.length > this.maxBody)) { this.overLimit = true; return; }
    r.push(c);
  };

  constructor(socket: Socket, server: HttpServer, peer: ConnPeer | null = null) {
    this.socket = socket;
    this.server = server;
    this.peer = peer;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.maxBody = server.opts.maxRequestBytes ?? 0;
    socket.setNoDelay(true);
    socket.on('data', (c: Buffer) => this.process(c));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => { if (this.res !== null) this.res.drained(); });
    socket.on('error', () => {}); // 'close' follows
    socket.on('close', () => this.onClose());
  }

  get idle(): boolean { return this.req === null && this.res === null && this.buf === null && !this.tunneled; }

  /** The server's stream idle timeout: a tunnel's default idle timeout. */
  get streamIdleTimeoutMs(): number { return this.server.opts.streamIdleTimeoutMs ?? 0; }

  /** The socket was handed over to a tunnel (`ServerResponse.upgrade`): no HTTP on it any more. */
  tunneled = false;

  /**
   * Hand the socket over (after a 101 or a CONNECT's 200): this connection stops reading HTTP and
   * keeps only its 'close' bookkeeping (the server's connection count). Returns the bytes the client
   * sent after its request head, held unparsed while the answer was awaited: the tunnel's first bytes.
   */
  takeover(): Buffer {
    const head = this.buf ?? EMPTY;
    this.buf = null;
    this.dead = true;
    this.tunneled = true;
    this.req = null;
    this.res = null;
    const s = this.socket;
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('drain');
    this.paused = false;
    this.yielded = false;
    return head;
  }

  keepAlive(req: ServerRequest): boolean {
    return !this.server.closing && req.wantsKeepAlive;
  }

  pauseReading(): void { if (!this.paused) { this.paused = true; this.socket.pause(); } }
  resumeReading(): void { if (this.paused) { this.paused = false; if (!this.yielded) this.socket.resume(); } }

  /** From the server's setImmediate after a yield: read on unless backpressure holds the socket. */
  unyield(): void {
    if (this.tunneled) return;
    this.yielded = false;
    if (!this.paused && !this.socket.destroyed) this.socket.resume();
  }

  /** An early response closes the connection unless the unread rest of the body is small. */
  earlyResponseCloses(): boolean { return this.decoder !== null || this.remaining > DISCARD_LIMIT; }

  private process(chunk: Buffer): void {
    if (this.lingerUntil > 0) {
      // Closing: the rest of the request is read and dropped (bounded), never answered.
      if ((this.lingerLeft -= chunk.length) < 0) this.socket.destroy();
      return;
    }
    this.lastActive = performance.now();
    let data = chunk;
    if (this.buf !== null) { data = chunk.length === 0 ? this.buf : Buffer.concat([this.buf, chunk]); this.buf = null; }
    if (this.inProcess) { this.buf = data; return; } // (not reached: responses end re-entrantly only via responseDone)
    this.inProcess = true;
    try {
      let off = 0;
      for (;;) {
        if (this.dead) return;
        const req = this.req;
        if (req !== null && !req.bodyDone) {
          off = this.feedBody(data, off);
          if (off < 0) return;
        }
        if (this.res !== null) {
          // A response is in progress: hold pipelined bytes, unparsed.
          if (off < data.length) {
            this.buf = off === 0 ? data : data.subarray(off);
            if (this.buf.length > HOLD_LIMIT) this.pauseReading();
          }
          return;
        }
        this.req = null;
        // Empty lines before a request-line are skipped (RFC 9112 section 2.2), also when they
        // alone would look like the end of a head.
        while (data[off] === 0x0d && data[off + 1] === 0x0a) off += 2;
        if (off >= data.length) { this.headStart = 0; return; }
        let end: number;
        try {
          end = headEnd(data, off);
        } catch (e) { this.reject(e as HttpParseError); return; }
        const max = this.server.opts.maxHeaderBytes;
        if (end < 0) {
          if (data.length - off > max) { this.reject(new HttpParseError(431, 'HPE_HEADER_OVERFLOW', 'request head too large')); return; }
          // Not HTTP at all (a TLS ClientHello, a binary protocol on a captured port): refused now,
          // not after the headers timeout: the method must be a token (RFC 9110 section 9.1).
          if (!methodPrefixOk(data, off)) { this.reject(new HttpParseError(400, 'HPE_INVALID_METHOD', 'not an HTTP/1 request')); return; }
          this.buf = off === 0 ? data : data.subarray(off);
          if (this.headStart === 0) this.headStart = this.lastActive;
          return;
        }
        if (end - off > max) { this.reject(new HttpParseError(431, 'HPE_HEADER_OVERFLOW', 'request head too large')); return; }
        let h: RequestHead;
        try {
          h = parseRequestHead(data.toString('latin1', off, end - 2));
        } catch (e) { this.reject(e as HttpParseError); return; }
        this.headStart = 0;
        off = end;
        // CONNECT (RFC 9110 section 9.3.6) has no content: framing on it is refused, and bytes after
        // its head are tunnel payload, held unparsed (as after an upgrade request) until answered.
        if (h.method === 'CONNECT' && (h.chunked || h.contentLength >= 0)) { this.reject(new HttpParseError(400, 'CONNECT', 'CONNECT with a body')); return; }
        const r = new ServerRequest(this, h);
        const res = new ServerResponse(this, r);
        this.req = r;
        this.res = res;
        let bodyEnd = off;
        if (r.hasBody) {
          if (h.chunked) { this.decoder = new ChunkedDecoder(); this.remaining = 0; } else { this.decoder = null; this.remaining = h.contentLength; }
          // Envoy answers Expect: 100-continue itself; the header is not forwarded.
          if (h.expectContinue && h.minor === 1) this.socket.write(CONTINUE);
          // Body bytes already here are framed before the request goes anywhere: a framing error
          // in them is a 400 with nothing dispatched (no head reaches an upstream). They queue on
          // the request as any early body bytes do.
          if (off < data.length) {
            bodyEnd = this.feedBody(data, off);
            if (this.dead) return;
          }
        }
        // Bytes after the head of an upgrade or CONNECT request are the tunnel's, never a next
        // request: held (unparsed) before the handler runs, so a tunnel taken over at once still
        // gets them; a refusal closes the connection without reading them.
        if (!r.hasBody && off < data.length && (h.method === 'CONNECT' || (h.upgrade !== null && !(h.upgrade.length === 1 && h.upgrade[0] === 'h2c')))) {
          this.buf = data.subarray(off);
          bodyEnd = data.length;
        }
        // The handler may answer at once (a local reply): then this loop goes on to the next request.
        this.server.hooks.onRequest(r, res);
        if (bodyEnd < 0) return;
        off = bodyEnd;
      }
    } finally {
      this.inProcess = false;
    }
  }

  /** Feed request body bytes from data[off..]; returns where the body ended, or -1 (all used). */
  private feedBody(data: Buffer, off: number): number {
    const req = this.req!;
    const n0 = data.length - off;
    if ((this.sinceYield += n0) > YIELD_BYTES) {
      // Bulk body: hand on this read, then let the other connections' reads run first.
      this.sinceYield = 0;
      this.server.yieldConn(this);
    }

    if (this.decoder !== null) {
      let r: number;
      try {
        r = this.decoder.feed(data, off, this.onBodyChunk);
      } catch (e) { this.bodyFailed(e as HttpParseError); return -1; }
      if (this.overLimit) { this.tooLarge(); return -1; }
      if (req.discard && this.discardLeft < 0) { this.linger(); return -1; }
      if (r < 0) return -1;
      req.trailers = this.decoder.trailers;
      this.decoder = null;
      req.finish();
      return r;
    }
    const n = Math.min(this.remaining, data.length - off);
    if (n > 0) this.onBodyChunk(off === 0 && n === data.length ? data : data.subarray(off, off + n));
    if (this.overLimit) { this.tooLarge(); return -1; }
    this.remaining -= n;
    if (this.remaining > 0) return -1;
    req.finish();
    return off + n;
  }

  private bodyFailed(err: HttpParseError): void {
    const req = this.req!;
    const res = this.res;
    if (res !== null && !res.headersSent) {
      // The request is void: its stream ends as a reset, and the client gets the 400.
      this.res = null;
      res.destroyed = true;
      this.server.hooks.onAbort(res);
      req.fail(err);
      this.reject(err);
      return;
    }
    req.fail(err);
    this.socket.destroy();
  }

  /** Refuse a malformed request: a clear status, then close (nothing was forwarded). */
  private reject(e: HttpParseError): void {
    if (!(e instanceof HttpParseError)) throw e;
    const status = e.status;
    const body = status === 400 ? `malformed request: ${e.code}: ${e.message}` : STATUS_CODES[status] ?? 'error';
    this.server.stats.rejected++;
    this.server.hooks.onReject?.(status, e.code, this.socket.remoteAddress);
    this.socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\ndate: ${httpDate()}\r\nconnection: close\r\n\r\n${body}`);
    this.buf = null;
    this.dead = true;
    this.socket.destroySoon();
  }

  /** The response for the current request ended. */
  responseDone(res: ServerResponse): void {
    this.res = null;
    const req = res.req;
    this.lastActive = performance.now();
    this.wrote = false; // accounted for just now
    if (!req.bodyDone) {
      // Nobody read the rest of the body: drop a little of it to keep the connection, else close
      // lingering (the client may still be sending; it must get to read this response).
      const left = this.decoder !== null ? DISCARD_LIMIT : this.remaining;
      if (req.bodyError !== null) { this.closeSocket(); return; }
      if (res.closeAfter || left > DISCARD_LIMIT) { this.linger(); return; }
      req.discard = true;
      req.unpipe();
      this.discardLeft = DISCARD_LIMIT;
    }
    if (res.closeAfter) { this.closeSocket(); return; }
    this.resumeReading();
    if (!this.inProcess) this.process(EMPTY);
  }

  private closeSocket(): void {
    this.buf = null;
    this.dead = true;
    this.socket.end();
    this.socket.destroySoon();
  }

  /**
   * Close with request bytes still arriving: FIN after the response, then read and drop what the
   * client still sends until it closes too, for at most LINGER_MS / LINGER_BYTES (the timer).
   */
  private linger(): void {
    this.buf = null;
    this.dead = true;
    if (this.req !== null) this.req.unpipe();
    this.lingerUntil = performance.now() + LINGER_MS;
    this.lingerLeft = LINGER_BYTES;
    this.socket.end();
    this.paused = false;
    this.yielded = false;
    this.socket.resume();
  }

  /**
   * Draining: an idle connection is closed with FIN only (no RST): a request that crossed the
   * FIN is read and dropped, and the socket goes when the client closes its side or the drain ends.
   */
  drainIdle(): void {
    if (!this.idle || this.dead) return;
    this.dead = true;
    this.socket.end();
  }

  /** The body passed `maxRequestBytes`: 413 if nothing was answered yet, else a reset. */
  private tooLarge(): void {
    this.overLimit = false;
    if (this.res === null) { this.socket.destroy(); return; }
    this.streamError(413);
  }

  /** The server ends the current stream (stream idle timeout, body too large). */
  private streamError(status: 408 | 413): void {
    const res = this.res;
    if (res === null) { this.socket.destroy(); return; }
    res.shouldKeepAlive = false;
    this.server.hooks.onStreamError?.(res, status);
    if (this.res !== res || res.ended || res.destroyed) return;
    if (res.headersSent) { res.destroy(); return; }
    const body = status === 408 ? 'stream timeout' : 'Payload Too Large';
    res.writeHead(status, undefined, ['content-type', 'text/plain', 'content-length', String(body.length)]);
    res.end(body);
  }

  /**
   * The client closed its side. As Envoy and Node's server (no HTTP half-close): a request in
   * progress is aborted (a downstream reset) and the connection closes.
   */
  private onEnd(): void {
    if (this.lingerUntil > 0 || this.res !== null || (this.req !== null && !this.req.bodyDone)) { this.socket.destroy(); return; }
    this.closeSocket();
  }

  private onClose(): void {
    this.server.forget(this);
    // The owner hears of the reset first, so the request body's failure that follows is not
    // mistaken for the upstream's (a downstream disconnect is DC, never an upstream error).
    const res = this.res;
    if (res !== null && !res.ended) {
      res.destroyed = true;
      this.res = null;
      this.server.hooks.onAbort(res);
    }
    const req = this.req;
    if (req !== null && !req.bodyDone) req.fail(new Error('client connection closed'));
  }

  /** Called by the server's timer: head, idle and stream idle timeouts, lingering, liveness. */
  tick(now: number): void {
    if (this.tunneled) return; // the tunnel keeps its own idle timeout
    const o = this.server.opts;
    if (this.lingerUntil > 0) { if (now > this.lingerUntil) this.socket.destroy(); return; }
    if (this.wrote) { this.wrote = false; this.lastActive = now; }
    if (this.headStart > 0 && this.res === null && o.headersTimeoutMs > 0 && now - this.headStart > o.headersTimeoutMs) {
      this.reject(new HttpParseError(408, 'ERR_HTTP_REQUEST_TIMEOUT', 'request head timeout'));
      return;
    }
    if (this.res !== null) {
      const si = o.streamIdleTimeoutMs ?? 0;
      if (si > 0 && now - this.lastActive > si) { this.streamError(408); return; }
      // Backpressure stopped reading, so neither a FIN nor an RST from the client is read. An
      // RST still fails a write: a zero-length write (nothing is sent) finds it within a tick.
      // (A FIN behind unread bytes stays invisible: Envoy would see it through EPOLLRDHUP, Node
      // offers nothing alike; the stream idle timeout reclaims that stream.)
      if (this.paused && this.socket.writable && this.socket.writableLength === 0) this.socket.write(EMPTY);
      return;
    }
    if (this.idle && o.idleTimeoutMs > 0 && now - this.lastActive > o.idleTimeoutMs) this.socket.destroy();
  }
}

export class HttpServer<S = unknown> {
  readonly opts: ServerOptions;
  readonly hooks: ServerHooks<S>;
  readonly net: Server;
  readonly stats = { rejected: 0 };
  closing = false;
  private conns = new Set<ServerConn>();
  private accepting = new Set<Socket>();
  private timer: NodeJS.Timeout | null = null;

  constructor(opts: ServerOptions, hooks: ServerHooks<S>) {
    this.opts = opts;
    this.hooks = hooks;
    // allowHalfOpen: a client that half-closes after its request still gets the response.
    // A connection accepted while closing is served (its response says close): destroying it
    // would reset a request the client already sent.
    const accept = opts.accept;
    this.net = createServer({ allowHalfOpen: true, noDelay: true }, accept === undefined ? (s) => this.serve(s, null) : (s) => {
      // Sockets still in the accept hook (a TLS handshake) are tracked so a drain can end them.
      this.accepting.add(s);
      s.once('close', () => this.accepting.delete(s));
      accept(s, (t, peer) => {
        this.accepting.delete(s);
        if (t.destroyed) return;
        this.serve(t, peer);
      });
    });
  }

  /** An accepted (and, with an accept hook, handshaken) socket: HTTP/2 preface sniffing or HTTP/1.1. */
  private serve(s: Socket, peer: ConnPeer | null): void {
    if (this.sniff !== null) this.sniffFirst(s, peer); else this.adopt(s, peer);
  }

  /**
   * Set by the HTTP/2 server (h2-server.ts) to take connections whose first bytes are the HTTP/2
   * connection preface (h2c with prior knowledge): `take(socket)` gets the socket paused, with
   * the bytes read so far put back. Unset, connections go straight to HTTP/1.1 (no sniffing cost).
   */
  sniff: { isPreface(first: Buffer): boolean; take(socket: Socket): void } | null = null;

  /** Serve an accepted socket as HTTP/1.1 (also for a TLS socket whose ALPN chose http/1.1). */
  adopt(s: Socket, peer: ConnPeer | null = null): void {
    this.conns.add(new ServerConn(s, this, peer));
    this.hooks.onConnection(true);
    this.arm();
  }

  private sniffFirst(s: Socket, peer: ConnPeer | null): void {
    const sniff = this.sniff!;
    // Until its first bytes the socket is in no one's set: kept here so shutdown and the head
    // timeout still reach it.
    this.sniffing.add(s);
    const onErr = (): void => {};
    const onClose = (): void => { this.sniffing.delete(s); };
    // No byte yet is an idle connection: the idle timeout applies, as on a ServerConn.
    const t = this.opts.idleTimeoutMs > 0 ? setTimeout(() => s.destroy(), this.opts.idleTimeoutMs) : null;
    t?.unref();
    s.on('error', onErr);
    s.once('close', onClose);
    s.once('data', (first: Buffer) => {
      if (t !== null) clearTimeout(t);
      this.sniffing.delete(s);
      s.off('error', onErr);
      s.off('close', onClose);
      // Back into the socket's buffer, read again by whoever takes it (paused until then).
      s.pause();
      s.unshift(first);
      if (sniff.isPreface(first)) { sniff.take(s); return; }
      this.adopt(s, peer);
      s.resume();
    });
  }

  listen(port: number, host: string, reusePort = false): Promise<number> {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      // exclusive: a cluster worker binds its own socket (with reusePort, the kernel balances),
      // never a handle shared through the primary.
      this.net.listen({ port, host, reusePort, exclusive: true }, () => {
        this.net.off('error', reject);
        resolve((this.net.address() as { port: number }).port);
      });
    });
  }

  get connections(): number { return this.conns.size; }

  forget(c: ServerConn): void {
    if (this.conns.delete(c)) this.hooks.onConnection(false);
    if (this.conns.size === 0 && this.timer !== null) { clearInterval(this.timer); this.timer = null; }
  }

  /** One coarse timer per server for head, idle and stream idle timeouts: nothing per request. */
  private arm(): void {
    if (this.timer !== null) return;
    const o = this.opts;
    const every = Math.max(50, Math.min(1000, (o.idleTimeoutMs || 2000) / 4, (o.headersTimeoutMs || 2000) / 4, (o.streamIdleTimeoutMs || 4000) / 4));
    this.timer = setInterval(() => { const now = performance.now(); for (const c of this.conns) c.tick(now); }, every);
    this.timer.unref();
  }

  private yielded: ServerConn[] = [];
  private readonly unyieldAll = (): void => {
    const list = this.yielded;
    this.yielded = [];
    for (const c of list) c.unyield();
  };

  /** Hold `c`'s reading until the check phase: the poll phase serves every other connection first. */
  yieldConn(c: ServerConn): void {
    if (c.yielded) return;
    c.yielded = true;
    c.socket.pause();
    if (this.yielded.push(c) === 1) setImmediate(this.unyieldAll);
  }

  /**
   * Stop accepting (the listening socket closes; new connects are refused, never reset). Open
   * connections stay: each response from now on says `Connection: close` and its connection
   * closes after it. Idle ones are closed by `closeIdle` during the drain, what remains by
   * `destroyConnections` at its end.
   */
  close(): Promise<void> {
    this.closing = true;
    return new Promise((resolve) => this.net.close(() => resolve()));
  }

  /** Draining: FIN the connections that have been idle for `quietMs` (a client about to reuse one has had its chance). */
  closeIdle(quietMs: number): void {
    const now = performance.now();
    for (const c of this.conns) if (c.idle && now - c.lastActive >= quietMs) c.drainIdle();
  }

  destroyConnections(): void {
    for (const c of this.conns) c.socket.destroy();
    for (const s of this.sniffing) s.destroy();
    for (const s of this.accepting) s.destroy();
  }

  private readonly sniffing = new Set<Socket>();
}

/** The bytes before the first space of a request line so far are all tchars (at most 32 looked at). */
function methodPrefixOk(b: Buffer, off: number): boolean {
  for (let i = off, n = Math.min(b.length, off + 32); i < n; i++) {
    const c = b[i];
    if (c === 0x20) return i > off;
    // tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~"
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || (c !== 0x22 && c !== 0x28 && c !== 0x29 && c !== 0x2c && c !== 0x2f
      && c >= 0x21 && c <= 0x7e && !(c >= 0x3a && c <= 0x40) && !(c >= 0x5b && c <= 0x5d) && c !== 0x7b && c !== 0x7d))) return false;
  }
  return true;
}
