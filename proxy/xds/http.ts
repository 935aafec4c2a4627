// HTTP/1.1 to the control server (the discovery stream, ACKs, registration, reports, workload
// certificates) on the proxy's own engine client (engine/client.ts), not node:http or fetch:
// either library loads ~7 MB of private memory (~14 MB of RSS) into every sidecar that follows a
// control server, for a handful of requests a minute (docs/performance.md).
import { connect as netConnect, type Socket } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { ClientConnection, type ResponseHandler } from '../engine/client.ts';

export interface ControlResponse { status: number; headers: string[]; body: string }

const flat = (h: Record<string, string>): string[] => Object.entries(h).flat();

function dial(base: URL): Socket {
  // URL keeps an IPv6 host in brackets; net.connect wants the bare address.
  return netConnect({ host: base.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(base.port || 80) });
}

export interface StreamEvents {
  /** The response head. */
  onStart(status: number, headers: string[]): void;
  /** Body text as it arrives (UTF-8 decoded across chunk boundaries). */
  onText(text: string): void;
  /** Once: the response ended (null), or the exchange failed or was destroyed. */
  onEnd(err: Error | null): void;
}

/** One request on a connection of its own whose response is read as it streams (the discovery stream). */
export function controlStream(base: URL, method: string, path: string, headers: Record<string, string>, body: string, ev: StreamEvents): { destroy(err: Error): void } {
  const sock = dial(base);
  let conn: ClientConnection | null = null;
  let done = false;
  const finish = (err: Error | null): void => {
    if (done) return;
    done = true;
    if (conn !== null) conn.abort(); else sock.destroy();
    ev.onEnd(err);
  };
  sock.once('error', (e) => { if (conn === null) finish(e); });
  sock.once('connect', () => {
    if (done) return;
    conn = new ClientConnection(sock, base.host);
    const dec = new StringDecoder('utf8');
    conn.dispatch({ method, path, headers: flat(headers), body: Buffer.from(body) }, {
      onResponseStart: (_c, status, raw) => { if (!done) ev.onStart(status, raw); },
      onResponseData: (_c, chunk) => { const t = dec.write(chunk); if (t && !done) ev.onText(t); },
      onResponseEnd: () => { const t = dec.end(); if (t && !done) ev.onText(t); finish(null); },
      onResponseError: (_c, e) => finish(e),
    });
  });
  return { destroy: (err) => finish(err) };
}

/**
 * Requests sent one after another on one kept-alive connection (a new one when the last closed):
 * ACKs reach the server in the order they were sent, as on an agent with one socket.
 */
export class ControlChannel {
  private readonly base: URL;
  private conn: ClientConnection | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Fails the request in flight (set while one is). */
  private inFlight: ((e: Error) => void) | null = null;

  constructor(base: URL) { this.base = base; }

  request(method: string, path: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<ControlResponse> {
    const run = (): Promise<ControlResponse> => this.exchange(method, path, headers, body, timeoutMs);
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Closes the connection; later requests fail. */
  close(): void {
    this.closed = true;
    this.conn?.abort();
    this.conn = null;
    this.inFlight?.(new Error('the control client is stopped'));
  }

  private connection(): Promise<ClientConnection> {
    const c = this.conn;
    if (c !== null && !c.closed) return Promise.resolve(c);
    return new Promise((resolve, reject) => {
      const sock = dial(this.base);
      const onError = (e: Error): void => reject(e);
      sock.once('error', onError);
      sock.once('connect', () => {
        sock.off('error', onError);
        // Closed while connecting: the connection would outlive the channel.
        if (this.closed) { sock.destroy(); reject(new Error('the control client is stopped')); return; }
        const conn = new ClientConnection(sock, this.base.host);
        this.conn = conn;
        resolve(conn);
      });
    });
  }

  private exchange(method: string, path: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<ControlResponse> {
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new Error(`${method} ${path}: the control client is stopped`)); return; }
      let over = false;
      let conn: ClientConnection | null = null;
      const timer = setTimeout(() => {
        over = true;
        conn?.abort();
        reject(new Error(`${method} ${path}: timed out`));
      }, timeoutMs);
      const fail = (e: Error): void => { clearTimeout(timer); if (!over) { over = true; reject(e); } };
      this.inFlight = fail;
      this.connection().then((c) => {
        if (over) { c.socket.unref(); return; } // timed out while connecting: the connection stays for the next request
        conn = c;
        // As an agent's keep-alive socket: holds the process open while in use, not while idle.
        c.socket.ref();
        let status = 0;
        let raw: string[] = [];
        const chunks: Buffer[] = [];
        const handler: ResponseHandler = {
          onResponseStart: (_c, s, r) => { status = s; raw = r; },
          onResponseData: (_c, chunk) => { chunks.push(chunk); },
          onResponseEnd: () => {
            clearTimeout(timer);
            c.socket.unref();
            if (over) return;
            over = true;
            this.inFlight = null;
            resolve({ status, headers: raw, body: Buffer.concat(chunks).toString('utf8') });
          },
          onResponseError: (_c, e) => fail(e),
        };
        c.dispatch({ method, path, headers: flat(headers), body: body === '' && method !== 'POST' ? null : Buffer.from(body) }, handler);
      }, fail);
    });
  }
}
