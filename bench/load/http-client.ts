// The load tool's HTTP/1.x client, fortio's "fast client" in spirit: one socket per thread, the
// request bytes built once, the response framed with the engine's strict parser (proxy/engine/
// http1.ts). Own code rather than undici because fortio's flags reach below what undici exposes:
// HTTP/1.0 request lines, half-close, a reuse budget per socket, the IP each socket went to, the
// connect time of each socket, and header vs body bytes per response.
import { connect as netConnect, isIP, type NetConnectOpts, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { lookup } from 'node:dns';
import { ChunkedDecoder, headEnd, parseResponseHead } from '../../proxy/engine/http1.ts';

export interface Target {
  url: URL;
  /** Host header value / TLS server name source. */
  hostname: string;
  port: number;
  tls: boolean;
  /** -resolve: connect to this IP instead of resolving the URL's host. */
  resolve?: string;
  /** -unix-socket: connect to this path (the URL still gives Host and path). */
  unixSocket?: string;
}

export interface TlsOptions { insecure: boolean; ca?: Buffer; cert?: Buffer; key?: Buffer }

export interface ClientOptions {
  keepAlive: boolean;
  halfClose: boolean;
  timeoutMs: number;
  /** -connection-reuse min:max: close a socket after a random number of requests in the range. */
  reuse: [number, number] | null;
  maxHeadBytes: number;
  tls: TlsOptions;
  resolver: Resolver;
  /** A socket attempt ended (connected or failed): its connect time (s) and "ip:port". */
  onSocket?: (seconds: number, addr: string) => void;
}

/** For `meshlet curl`: the raw response head and the (de-chunked) body bytes. */
export interface ResponseSink {
  head(raw: Buffer, status: number): void;
  data(chunk: Buffer): void;
}

export interface CallResult {
  status: number;            // -1: socket error or timeout
  headerBytes: number;
  totalBytes: number;
  location?: string;
  error?: string;
  /** The failure happened while connecting (fortio: "Unable to connect" / "Unable to TLS connect"). */
  connectFailed?: boolean;
}

/**
 * DNS for the run (fortio's -dns-method and -resolve-ip-type): names are looked up once and the
 * answers cached; each new socket picks one (cached-rr: next in turn, rnd, first; rr looks the
 * name up again each time). -no-reresolve: a thread keeps the address of its first socket.
 */
export class Resolver {
  private readonly cache = new Map<string, string[]>();
  private turn = 0;
  readonly method: string;
  readonly family: 0 | 4 | 6;
  constructor(method = 'cached-rr', ipType = 'ip4') {
    this.method = method;
    this.family = ipType === 'ip6' ? 6 : ipType === 'ip' ? 0 : 4;
  }
  pick(host: string, cb: (err: Error | null, ip?: string) => void): void {
    if (isIP(host)) { cb(null, host); return; }
    const cached = this.method === 'rr' ? undefined : this.cache.get(host);
    const choose = (ips: string[]) => {
      if (this.method === 'first') return ips[0];
      if (this.method === 'rnd') return ips[Math.floor(Math.random() * ips.length)];
      return ips[this.turn++ % ips.length];
    };
    if (cached) { cb(null, choose(cached)); return; }
    lookup(host, { all: true, family: this.family }, (err, addrs) => {
      if (err || addrs.length === 0) { cb(err ?? new Error(`no address for ${host}`)); return; }
      const ips = addrs.map((a) => a.address);
      this.cache.set(host, ips);
      cb(null, choose(ips));
    });
  }
}

const IDLE = 0, HEAD = 1, LENGTH = 2, CHUNKED = 3, UNTIL_CLOSE = 4;

/** One thread's connection: at most one request in flight, reconnects as needed. */
/** What the runner drives per thread: an HTTP/1.x Conn, or an HTTP/2 / gRPC caller (h2-transport.ts). */
export interface Caller {
  readonly target: Target;
  /** "ip:port" of the current socket (for the log lines). */
  readonly addr: string;
  /** Sockets (sessions) opened so far: fortio's "Sockets used". */
  readonly sockets: number;
  call(cb: (r: CallResult) => void): void;
  close(): void;
}

export class Conn implements Caller {
  readonly target: Target;
  readonly opts: ClientOptions;
  request: Buffer;
  private readonly noBody: boolean;
  socket: Socket | null = null;
  /** Socket attempts (fortio's socketCount: connect failures count too). */
  sockets = 0;
  /** "ip:port" of the current socket. */
  addr = '';
  private pinnedIp: string | null = null;
  private connecting = false;
  private connectT0 = 0;
  private pinIp = false;
  private usesLeft = Infinity;
  private state = IDLE;
  private buf: Buffer | null = null;
  private remaining = 0;
  private chunked: ChunkedDecoder | null = null;
  private res: CallResult = { status: 0, headerBytes: 0, totalBytes: 0 };
  private reusable = false;
  private cb: ((r: CallResult) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  sink: ResponseSink | null = null;

  constructor(target: Target, request: Buffer, method: string, opts: ClientOptions, pinIp = false) {
    this.target = target;
    this.request = request;
    this.noBody = method === 'HEAD';
    this.opts = opts;
    this.pinIp = pinIp;
  }

  /** Make one request; `cb` gets the outcome exactly once. */
  call(cb: (r: CallResult) => void): void {
    this.cb = cb;
    this.res = { status: 0, headerBytes: 0, totalBytes: 0 };
    this.timer = setTimeout(() => this.fail('timeout'), this.opts.timeoutMs);
    if (this.socket) this.send();
    else this.open();
  }

  close(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.socket?.destroy();
    this.socket = null;
  }

  private open(): void {
    const t = this.target;
    const t0 = performance.now();
    const start = (host: string | undefined) => {
      if (!this.cb) return;
      const o = this.opts;
      let s: Socket;
      const base = t.unixSocket ? { path: t.unixSocket } : { host: host!, port: t.port };
      if (t.tls) {
        const tlsOpts: ConnectionOptions = { ...base, rejectUnauthorized: !o.tls.insecure, ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key };
        if (!isIP(t.hostname)) tlsOpts.servername = t.hostname;
        s = tlsConnect(tlsOpts);
      } else {
        s = netConnect({ ...base, allowHalfOpen: true } as NetConnectOpts);
      }
      s.setNoDelay(true);
      this.socket = s;
      this.sockets++;
      this.connecting = true;
      this.connectT0 = t0;
      this.addr = t.unixSocket ? t.unixSocket : `${host!.includes(':') ? `[${host}]` : host}:${t.port}`;
      this.usesLeft = o.reuse ? o.reuse[0] + Math.floor(Math.random() * (o.reuse[1] - o.reuse[0] + 1)) : Infinity;
      s.once(t.tls ? 'secureConnect' : 'connect', () => {
        this.connecting = false;
        o.onSocket?.((performance.now() - t0) / 1000, this.addr);
        if (this.socket === s) this.send();
      });
      s.on('data', (d: Buffer) => { if (this.socket === s) this.onData(d); });
      s.on('end', () => { if (this.socket === s) this.onEnd(); });
      s.on('error', (e) => { if (this.socket === s) this.fail(e.message); });
      s.on('close', () => { if (this.socket === s) this.fail('connection closed'); });
    };
    if (t.unixSocket) { start(undefined); return; }
    if (this.pinIp && this.pinnedIp) { start(this.pinnedIp); return; }
    const ip = t.resolve;
    if (ip) { start(ip); return; }
    this.opts.resolver.pick(t.hostname, (err, picked) => {
      if (err) { this.fail(err.message); return; }
      if (this.pinIp) this.pinnedIp = picked!;
      start(picked);
    });
  }

  private send(): void {
    const s = this.socket!;
    this.state = HEAD;
    this.buf = null;
    this.usesLeft--;
    s.write(this.request);
    if (!this.opts.keepAlive && this.opts.halfClose) s.end();
  }

  private onData(d: Buffer): void {
    if (this.state === IDLE) { this.close(); return; } // unsolicited bytes: the socket is not reusable
    this.res.totalBytes += d.length;
    try {
      if (this.state === HEAD) {
        const b = this.buf ? Buffer.concat([this.buf, d]) : d;
        const end = headEnd(b, 0);
        if (end < 0) {
          if (b.length > this.opts.maxHeadBytes) throw new Error('response head too large');
          this.buf = b;
          return;
        }
        this.buf = null;
        const h = parseResponseHead(b.toString('latin1', 0, end - 2));
        if (h.status < 200 && h.status !== 101) {
          // 1xx interim: skip it, the real head follows.
          this.res.totalBytes -= b.length - end;
          this.res.headerBytes += end;
          if (b.length > end) this.onData(b.subarray(end));
          return;
        }
        this.res.status = h.status;
        this.res.headerBytes += end;
        this.sink?.head(b.subarray(0, end), h.status);
        if (h.status >= 300 && h.status < 400) {
          for (let i = 0; i + 1 < h.raw.length; i += 2) if (h.raw[i].toLowerCase() === 'location') this.res.location = h.raw[i + 1];
        }
        this.reusable = this.opts.keepAlive && !h.connClose && (h.minor === 1 || h.connKeepAlive) && this.usesLeft > 0;
        const rest = b.subarray(end);
        if (this.noBody || h.status === 204 || h.status === 304) { this.state = LENGTH; this.remaining = 0; }
        else if (h.chunked) { this.state = CHUNKED; this.chunked = new ChunkedDecoder(); }
        else if (h.contentLength >= 0) { this.state = LENGTH; this.remaining = h.contentLength; }
        else { this.state = UNTIL_CLOSE; this.reusable = false; }
        this.body(rest);
        return;
      }
      this.body(d);
    } catch (e) {
      this.fail((e as Error).message);
    }
  }

  private body(d: Buffer): void {
    const sink = this.sink;
    if (this.state === LENGTH) {
      if (sink && d.length) sink.data(this.remaining < d.length ? d.subarray(0, Math.max(0, this.remaining)) : d);
      this.remaining -= d.length;
      if (this.remaining <= 0) this.done();
    } else if (this.state === CHUNKED) {
      if (d.length === 0) return;
      const end = this.chunked!.feed(d, 0, sink ? (b) => sink.data(b) : () => {});
      if (end >= 0) this.done();
    } else if (this.state === UNTIL_CLOSE && sink && d.length) {
      sink.data(d);
    }
  }

  private onEnd(): void {
    if (this.state === UNTIL_CLOSE) { this.reusable = false; this.done(); return; }
    this.fail('connection closed by the server');
  }

  private done(): void {
    this.state = IDLE;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (!this.reusable) { this.socket?.destroy(); this.socket = null; }
    const cb = this.cb;
    this.cb = null;
    cb?.(this.res);
  }

  private fail(why: string): void {
    const duringConnect = this.connecting;
    if (this.connecting) {
      this.connecting = false;
      if (this.socket) this.opts.onSocket?.((performance.now() - this.connectT0) / 1000, this.addr);
    }
    this.state = IDLE;
    this.socket?.destroy();
    this.socket = null;
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const cb = this.cb;
    this.cb = null;
    if (cb) { this.res.status = -1; this.res.error = why; this.res.connectFailed = duringConnect; cb(this.res); }
  }
}

export interface RequestSpec {
  method: string;
  headers: Array<[string, string]>;
  body: Buffer | null;
  contentType?: string;
  http10: boolean;
  keepAlive: boolean;
  compression: boolean;
  user?: string;
}

export const USER_AGENT = 'fortio.org/fortio-meshlet';

/** The request bytes, built once per target (fortio's fast client does the same). */
export function buildRequest(url: URL, spec: RequestSpec): Buffer {
  const path = (url.pathname || '/') + url.search;
  const lines = [`${spec.method} ${path} HTTP/1.${spec.http10 ? 0 : 1}`];
  const has = (n: string) => spec.headers.some(([k]) => k.toLowerCase() === n);
  // HTTP/1.0 as fortio's fast client: Host only when given with -H, never keep-alive.
  if (!has('host') && !spec.http10) lines.push(`Host: ${url.host}`);
  if (!has('user-agent')) lines.push(`User-Agent: ${USER_AGENT}`);
  for (const [k, v] of spec.headers) lines.push(`${k}: ${v}`);
  if (spec.user !== undefined && !has('authorization')) lines.push(`Authorization: Basic ${Buffer.from(spec.user).toString('base64')}`);
  if (spec.compression && !has('accept-encoding')) lines.push('Accept-Encoding: gzip');
  if (spec.body && spec.body.length > 0) {
    if (!has('content-type')) lines.push(`Content-Type: ${spec.contentType || 'application/octet-stream'}`);
    lines.push(`Content-Length: ${spec.body.length}`);
  } else if (spec.contentType && !has('content-type')) {
    lines.push(`Content-Type: ${spec.contentType}`, 'Content-Length: 0');
  } else if (spec.method === 'POST' || spec.method === 'PUT') {
    lines.push('Content-Length: 0');
  }
  if (!spec.keepAlive && !spec.http10) lines.push('Connection: close');
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return spec.body && spec.body.length ? Buffer.concat([head, spec.body]) : head;
}

/** A URL as a Target (http or https; -resolve and -unix-socket applied). */
export function targetOf(url: URL, resolve?: string, unixSocket?: string): Target {
  const tls = url.protocol === 'https:';
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { url, hostname, port: url.port ? Number(url.port) : tls ? 443 : 80, tls, resolve: resolve || undefined, unixSocket: unixSocket || undefined };
}
