// HTTP/2 and gRPC-unary transports for `meshlet load` (fortio's -h2 and -grpc), on node:http2.
// One H2Transport = one fortio "connection": one HTTP/2 session (h2c prior knowledge for http://,
// ALPN h2 for https://), reconnected if the server closes it. `call()` makes one request and
// resolves with what the runner counts: the HTTP status (fortio's ret code), bytes received and,
// for gRPC, the grpc-status; a transport error resolves with status -1 (never rejects).
//
// gRPC unary goes to the standard health service, grpc.health.v1.Health/Check, encoded by hand:
//   HealthCheckRequest  { string service = 1; }            -> 0x0a <len> <utf-8 bytes> (empty: no bytes)
//   HealthCheckResponse { ServingStatus status = 1; }      -> 0x08 <varint>; SERVING = 1
// framed as gRPC messages: 1 byte compressed flag (0), 4 bytes big-endian length, the message.
import type { CallResult, Target } from './http-client.ts';
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';

export interface H2TransportOptions {
  /** http://host:port/path (h2c) or https:// (ALPN h2; `insecure` skips verification). */
  url: string;
  /** Extra request headers (lower-cased names); `host` becomes :authority. */
  headers?: Array<[string, string]>;
  /** POST body for plain HTTP/2 (fortio -payload); ignored for gRPC. */
  payload?: Buffer | null;
  contentType?: string;
  timeoutMs?: number;
  insecure?: boolean;
  /**
   * gRPC unary health checks instead of HTTP requests (fortio -grpc): `service` is the
   * HealthCheckRequest.service (fortio -healthservice), '' = the server as a whole.
   */
  grpc?: { service: string } | null;
}

export interface H2CallResult {
  /** HTTP status; -1 = transport error or timeout (fortio's -1). */
  status: number;
  bytes: number;
  /** gRPC only: grpc-status (0 = OK), -1 if none arrived. */
  grpcStatus: number;
  /** gRPC only: HealthCheckResponse.status (1 = SERVING), -1 if not decoded. */
  serving: number;
}

export interface H2Transport {
  call(): Promise<H2CallResult>;
  /** Sessions opened so far (fortio's "sockets used"). */
  readonly sessions: number;
  close(): Promise<void>;
}

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/** A HealthCheckRequest as one length-prefixed gRPC message. */
export function encodeHealthCheckRequest(service: string): Buffer {
  const s = Buffer.from(service, 'utf8');
  if (s.length > 127) throw new Error('health service name longer than 127 bytes');
  const msg = s.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, s.length]), s]);
  const out = Buffer.alloc(5 + msg.length);
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
}

/** HealthCheckResponse.status from a gRPC-framed body; -1 if it cannot be read. */
export function decodeHealthCheckResponse(body: Buffer): number {
  if (body.length < 5 || body[0] !== 0) return -1;
  const len = body.readUInt32BE(1);
  if (body.length < 5 + len) return -1;
  if (len === 0) return 0; // UNKNOWN: the field at its default is not sent
  let i = 5;
  const end = 5 + len;
  while (i < end) {
    const tag = body[i++];
    if (tag === 0x08) {
      let v = 0, shift = 0;
      while (i < end) { const b = body[i++]; v |= (b & 0x7f) << shift; if ((b & 0x80) === 0) return v; shift += 7; }
      return -1;
    }
    return -1; // an unknown field: not a HealthCheckResponse we know
  }
  return -1;
}

/** The response body of a HealthCheckResponse with `status` (for servers in benches and tests). */
export function encodeHealthCheckResponse(status: number): Buffer {
  return Buffer.from([0, 0, 0, 0, 2, 0x08, status]);
}

export function h2Transport(o: H2TransportOptions): H2Transport {
  const u = new URL(o.url);
  const origin = `${u.protocol}//${u.host}`;
  const grpc = o.grpc ?? null;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const base: Record<string, string> = {
    ':method': grpc !== null || (o.payload !== undefined && o.payload !== null) ? 'POST' : 'GET',
    ':path': grpc !== null ? HEALTH_CHECK_PATH : `${u.pathname}${u.search}`,
    ':scheme': u.protocol === 'https:' ? 'https' : 'http',
    ':authority': u.host,
  };
  for (const [k, v] of o.headers ?? []) {
    const n = k.toLowerCase();
    if (n === 'host') base[':authority'] = v; else base[n] = v;
  }
  let body: Buffer | null = null;
  if (grpc !== null) {
    base['content-type'] = 'application/grpc';
    base.te = 'trailers';
    body = encodeHealthCheckRequest(grpc.service);
  } else if (o.payload) {
    body = o.payload;
    base['content-type'] = o.contentType ?? 'application/octet-stream';
  }
  let session: ClientHttp2Session | null = null;
  let sessions = 0;
  const open = (): ClientHttp2Session => {
    if (session !== null && !session.closed && !session.destroyed) return session;
    sessions++;
    const s = connect(origin, u.protocol === 'https:' ? { rejectUnauthorized: !o.insecure } : {});
    s.on('error', () => {});
    s.on('close', () => { if (session === s) session = null; });
    session = s;
    return s;
  };

  const call = (): Promise<H2CallResult> => new Promise((resolve) => {
    let status = -1;
    let bytes = 0;
    let grpcStatus = -1;
    const chunks: Buffer[] | null = grpc !== null ? [] : null;
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      let serving = -1;
      if (chunks !== null && ok) serving = decodeHealthCheckResponse(Buffer.concat(chunks));
      resolve({ status: ok ? status : -1, bytes, grpcStatus, serving });
    };
    let st: ReturnType<ClientHttp2Session['request']>;
    try {
      st = open().request(base, { endStream: body === null });
    } catch {
      session = null;
      resolve({ status: -1, bytes: 0, grpcStatus: -1, serving: -1 });
      return;
    }
    const timer = setTimeout(() => { st.close(constants.NGHTTP2_CANCEL); finish(false); }, timeoutMs);
    st.on('response', (h: IncomingHttpHeaders) => {
      status = Number(h[':status']);
      const g = h['grpc-status'];
      if (g !== undefined) grpcStatus = Number(g); // trailers-only
    });
    st.on('data', (c: Buffer) => { bytes += c.length; chunks?.push(c); });
    st.on('trailers', (t: IncomingHttpHeaders) => { const g = t['grpc-status']; if (g !== undefined) grpcStatus = Number(g); });
    st.on('end', () => finish(status > 0));
    st.on('error', () => finish(false));
    st.on('close', () => finish(status > 0 && st.rstCode === constants.NGHTTP2_NO_ERROR));
    if (body !== null) st.end(body);
  });

  return {
    call,
    get sessions() { return sessions; },
    close: () => new Promise<void>((r) => { const s = session; session = null; if (s === null || s.destroyed) return r(); s.close(() => r()); }),
  };
}

/**
 * The runner's per-thread caller over HTTP/2 (`meshlet load -h2`) or gRPC health checks
 * (`-grpc`): one session per thread, as fortio's one client per thread. A gRPC call counts as
 * Code 200 when grpc-status is 0 and the service answered SERVING; otherwise as 500 + grpc-status
 * (a NOT_SERVING answer with status 0 is 503), so the Code lines show what failed. -1 as fortio
 * for a transport error or timeout.
 */
export class H2Caller {
  readonly target: Target;
  readonly addr: string;
  private readonly t: H2Transport;
  private readonly grpc: boolean;
  constructor(target: Target, o: H2TransportOptions) {
    this.target = target;
    this.addr = `${target.url.hostname}:${target.url.port || (target.url.protocol === 'https:' ? 443 : 80)}`;
    this.t = h2Transport(o);
    this.grpc = !!o.grpc;
  }
  get sockets(): number { return this.t.sessions; }
  call(cb: (r: CallResult) => void): void {
    void this.t.call().then((r) => {
      let status = r.status;
      if (status > 0 && this.grpc) status = r.grpcStatus === 0 ? (r.serving === 1 || r.serving === -1 ? 200 : 503) : 500 + Math.max(0, r.grpcStatus);
      cb(status < 0 ? { status: -1, headerBytes: 0, totalBytes: r.bytes, error: 'HTTP/2 stream failed or timed out' } : { status, headerBytes: 0, totalBytes: r.bytes });
    });
  }
  close(): void { void this.t.close(); }
}
