// HTTP/1.1 conformance of the proxy's HTTP engine, pinned at the socket level so it holds for any
// engine behind the listener: pipelining, chunked framing both ways, HTTP/1.0, HEAD/204/304 framing
// on a reused connection, Connection: close on either side, 100-continue, upstream 1xx, Upgrade
// (403 without upgrade routes, h2c served plain), the issue 13 wire fixes (OWS, absolute-form,
// target validation, Connection nominations, head limits, chunk lines, Date, trailers), and a
// request-smuggling corpus (each case must be refused and must never reach the upstream; the
// external corpus is replayed in test/corpus/).
// Only real sockets on 127.0.0.1; every wait is bounded.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { Fixtures, send, serviceYaml, stat, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

// ---------------------------------------------------------------------------------------------
// Raw sockets

const openConns = new Set<Conn>();

/** One raw client connection that records every byte it receives and whether it closed. */
class Conn {
  readonly sock: Socket;
  private chunks: Buffer[] = [];
  private waiters = new Set<() => void>();
  closed = false;

  private constructor(sock: Socket) {
    this.sock = sock;
    openConns.add(this);
    sock.on('data', (c: Buffer) => { this.chunks.push(c); this.wake(); });
    sock.on('error', () => {});
    sock.on('close', () => { this.closed = true; openConns.delete(this); this.wake(); });
  }

  static async open(port: number, timeoutMs = 2000): Promise<Conn> {
    const sock = connect(port, '127.0.0.1');
    const c = new Conn(sock);
    const t = setTimeout(() => sock.destroy(new Error('connect timeout')), timeoutMs);
    try { await once(sock, 'connect'); } finally { clearTimeout(t); }
    return c;
  }

  private wake(): void { for (const w of this.waiters) w(); }

  write(data: string | Buffer): void { this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data); }
  end(): void { this.sock.end(); }
  destroy(): void { this.sock.destroy(); }

  /** Everything received so far, one char per byte. */
  text(): string { return Buffer.concat(this.chunks).toString('latin1'); }
  /** Forget what was received so far (for the next step of a multi-step exchange). */
  reset(): void { this.chunks = []; }

  /** Wait until `pred` holds (checked on every byte and on close) or `ms` pass; true when it held. */
  waitFor(pred: (text: string, closed: boolean) => boolean, ms = 2000): Promise<boolean> {
    if (pred(this.text(), this.closed)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (pred(this.text(), this.closed)) { done(true); return; }
        if (this.closed) done(false);
      };
      const t = setTimeout(() => done(false), ms);
      const done = (v: boolean) => { clearTimeout(t); this.waiters.delete(check); resolve(v); };
      this.waiters.add(check);
    });
  }

  /** Wait for `n` complete final responses (1xx excluded); throws with what arrived on timeout. */
  async responses(n: number, opts: { methods?: string[]; ms?: number } = {}): Promise<ParseResult> {
    const ok = await this.waitFor((t, closed) => finals(parseResponses(t, { methods: opts.methods, closed })).length >= n, opts.ms ?? 2000);
    const all = parseResponses(this.text(), { methods: opts.methods, closed: this.closed });
    if (!ok) throw new Error(`expected ${n} responses, got ${finals(all).length} (closed=${this.closed}): ${JSON.stringify(this.text().slice(0, 600))}`);
    return all;
  }

  /** True when the peer closed the connection within `ms`. */
  closedWithin(ms = 2000): Promise<boolean> { return this.waitFor((_t, closed) => closed, ms); }
}

/**
 * Open a connection, write `bytes`, optionally half-close, and collect everything until the
 * connection closes, `until` holds, or `timeoutMs` pass. Returns the bytes as latin1 text.
 */
async function raw(port: number, bytes: string | Buffer, opts: { halfClose?: boolean; timeoutMs?: number; until?: (text: string) => boolean } = {}): Promise<string> {
  const r = await rawResult(port, bytes, opts);
  return r.text;
}

/** `raw`, also telling whether the proxy closed the connection. */
async function rawResult(port: number, bytes: string | Buffer, opts: { halfClose?: boolean; timeoutMs?: number; until?: (text: string) => boolean } = {}): Promise<{ text: string; closed: boolean }> {
  const c = await Conn.open(port);
  try {
    c.write(bytes);
    if (opts.halfClose) c.end();
    await c.waitFor((t, closed) => closed || (opts.until !== undefined && opts.until(t)), opts.timeoutMs ?? 2000);
    return { text: c.text(), closed: c.closed };
  } finally {
    c.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 response-sequence parser

interface Parsed {
  status: number;
  reason: string;
  version: string;
  /** Lower-case names; repeated headers keep every value. */
  headers: Record<string, string[]>;
  body: string;
  framing: 'none' | 'length' | 'chunked' | 'close';
  trailers: Record<string, string[]>;
  interim: boolean;
}

function hdr(p: Parsed, name: string): string | undefined {
  const v = p.headers[name.toLowerCase()];
  return v === undefined ? undefined : v.join(', ');
}

interface ParseResult { responses: Parsed[]; rest: string; error?: string }

function finals(r: ParseResult): Parsed[] { return r.responses.filter((x) => !x.interim); }

/**
 * Parse as many complete responses as `text` holds. `methods[i]` is the method of the request the
 * i-th final response answers (HEAD responses carry no body); `closed` allows a close-delimited
 * body for the last response. Stops at the first incomplete (or unparseable) response.
 */
function parseResponses(text: string, opts: { methods?: string[]; closed?: boolean } = {}): ParseResult {
  const responses: Parsed[] = [];
  let pos = 0;
  let finalIndex = 0;
  for (;;) {
    if (pos >= text.length) break;
    const headEnd = text.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) break;
    const lines = text.slice(pos, headEnd).split('\r\n');
    const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) return { responses, rest: text.slice(pos), error: `bad status line ${JSON.stringify(lines[0])}` };
    const headers = parseFields(lines.slice(1));
    const status = Number(m[2]);
    const p: Parsed = { version: m[1], status, reason: m[3] ?? '', headers, body: '', framing: 'none', trailers: {}, interim: status < 200 };
    let next = headEnd + 4;
    const method = p.interim ? undefined : opts.methods?.[finalIndex];
    const te = (hdr(p, 'transfer-encoding') ?? '').toLowerCase();
    const cl = hdr(p, 'content-length');
    if (p.interim || method === 'HEAD' || status === 204 || status === 304) {
      p.framing = 'none';
    } else if (/(^|,)\s*chunked\s*$/.test(te)) {
      p.framing = 'chunked';
      const d = decodeChunked(text, next);
      if (d === null) break;
      if ('error' in d) return { responses, rest: text.slice(pos), error: d.error };
      p.body = d.body;
      p.trailers = d.trailers;
      next = d.end;
    } else if (cl !== undefined) {
      p.framing = 'length';
      const n = Number(cl);
      if (!/^\d+$/.test(cl.trim())) return { responses, rest: text.slice(pos), error: `bad content-length ${cl}` };
      if (text.length - next < n) break;
      p.body = text.slice(next, next + n);
      next += n;
    } else {
      if (!opts.closed) break;
      p.framing = 'close';
      p.body = text.slice(next);
      next = text.length;
    }
    responses.push(p);
    if (!p.interim) finalIndex++;
    pos = next;
  }
  return { responses, rest: text.slice(pos) };
}

function parseFields(lines: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i <= 0) continue;
    (out[l.slice(0, i).toLowerCase()] ??= []).push(l.slice(i + 1).trim());
  }
  return out;
}

/** Decode a chunked body starting at `start`; null when incomplete. */
function decodeChunked(text: string, start: number): { body: string; trailers: Record<string, string[]>; end: number } | { error: string } | null {
  let pos = start;
  let body = '';
  for (;;) {
    const eol = text.indexOf('\r\n', pos);
    if (eol < 0) return null;
    const sizeText = text.slice(pos, eol).split(';')[0].trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) return { error: `bad chunk size ${JSON.stringify(sizeText)}` };
    const size = parseInt(sizeText, 16);
    pos = eol + 2;
    if (size === 0) {
      // Trailer section, ended by an empty line.
      const lines: string[] = [];
      for (;;) {
        const e = text.indexOf('\r\n', pos);
        if (e < 0) return null;
        const line = text.slice(pos, e);
        pos = e + 2;
        if (line === '') return { body, trailers: parseFields(lines), end: pos };
        lines.push(line);
      }
    }
    if (text.length < pos + size + 2) return null;
    body += text.slice(pos, pos + size);
    if (text.slice(pos + size, pos + size + 2) !== '\r\n') return { error: 'chunk not followed by CRLF' };
    pos += size + 2;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Fixtures: one proxy, a Node upstream with a path per behaviour, a raw upstream for 1xx, and a
// separate upstream for the smuggling corpus (its hit counter must stay at 0).

const fx = new Fixtures();
afterEach(() => { for (const c of [...openConns]) c.destroy(); });
afterAll(async () => {
  for (const c of [...openConns]) c.destroy();
  await fx.closeAll();
});

interface Seen {
  method: string; url: string; body: string; complete: boolean; te?: string; cl?: string; peerPort?: number;
  headers: IncomingMessage['headers']; rawHeaders: string[]; trailers: Record<string, string | undefined>;
}

const GET_BODY = 'g'.repeat(1234);

let p: RunningProxy;
let port: number;
let up: Upstream;
const upSeen: Seen[] = [];
let smug: Upstream;
const smugSeen: Seen[] = [];

function record(list: Seen[], req: IncomingMessage, then: (s: Seen) => void): void {
  const chunks: Buffer[] = [];
  const s: Seen = {
    method: req.method ?? '', url: req.url ?? '', body: '', complete: false, te: req.headers['transfer-encoding'], cl: req.headers['content-length'],
    peerPort: req.socket.remotePort, headers: req.headers, rawHeaders: req.rawHeaders, trailers: {},
  };
  list.push(s);
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => { s.body = Buffer.concat(chunks).toString('latin1'); s.trailers = req.trailers; s.complete = true; then(s); });
}

beforeAll(async () => {
  up = await fx.upstream((req, res) => {
    record(upSeen, req, (s) => {
      const path = s.url.split('?')[0];
      switch (path) {
        case '/echo-body':
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ length: Buffer.byteLength(s.body, 'latin1'), body: s.body }));
          return;
        case '/chunked-res':
          // No content-length: Node frames this chunked towards the proxy.
          res.write('hello ');
          setTimeout(() => { res.write('chunked '); setTimeout(() => res.end('world'), 5); }, 5);
          return;
        case '/get-body':
          res.setHeader('content-length', GET_BODY.length);
          res.end(s.method === 'HEAD' ? undefined : GET_BODY);
          return;
        case '/204': res.writeHead(204); res.end(); return;
        case '/trailers-res':
          // gRPC-style: a chunked body with its status in the trailers.
          res.setHeader('trailer', 'grpc-status, grpc-message');
          res.write('payload');
          res.addTrailers({ 'grpc-status': '0', 'grpc-message': 'all good' });
          res.end();
          return;
        case '/no-date':
          res.sendDate = false;
          res.end('no date here');
          return;
        case '/own-date':
          res.setHeader('date', 'Thu, 01 Jan 2015 00:00:00 GMT');
          res.end('dated');
          return;
        case '/conn-nominates':
          // The upstream's own hop-by-hop nomination goes; what the proxy adds stays.
          res.setHeader('connection', 'x-upstream-hop, date');
          res.setHeader('x-upstream-hop', 'secret');
          res.end('nominated');
          return;
        case '/304': res.writeHead(304, { etag: '"v1"' }); res.end(); return;
        case '/upstream-close':
          res.setHeader('connection', 'close');
          res.end('bye from a closing upstream');
          return;
        case '/processing':
          res.writeProcessing();
          setTimeout(() => { res.writeEarlyHints({ link: '</style.css>; rel=preload' }); res.end('after 102 and 103'); }, 5);
          return;
        default:
          res.setHeader('content-type', 'text/plain');
          res.end(`url=${s.url}`);
      }
    });
  });

  smug = await fx.upstream((req, res) => {
    record(smugSeen, req, (s) => { res.end(`smug ${s.url} ${s.body.length}`); });
  });

  // A raw upstream: 103 Early Hints, then a 200 with a content-length body, keep-alive.
  const rawUp = createNetServer((s) => {
    s.on('error', () => {});
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        buf = buf.slice(i + 4); // GETs only: no request body
        s.write('HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n');
        setTimeout(() => { if (!s.destroyed) s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nfinal after 1'); }, 5);
      }
    });
  });
  await new Promise<void>((r) => rawUp.listen(0, '127.0.0.1', () => r()));
  const rawUpSockets = new Set<Socket>();
  rawUp.on('connection', (s) => { rawUpSockets.add(s); s.on('close', () => rawUpSockets.delete(s)); });
  fx.add(() => new Promise<void>((r) => { rawUp.close(() => r()); for (const s of rawUpSockets) s.destroy(); }));
  const rawUpPort = (rawUp.address() as { port: number }).port;

  // A scripted raw upstream: each path answers with exact bytes, then closes.
  const script: Record<string, Buffer> = {
    '/te-gzip': Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b not really gzip', 'latin1'),
    '/te-nbsp': Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\xa0\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'latin1'),
    '/te-gzip-chunked': Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'latin1'),
    // A complete head of ~100 KiB arriving in one write (the limit is 64 KiB).
    '/big-head': Buffer.from(`HTTP/1.1 200 OK\r\n${Array.from({ length: 100 }, (_, i) => `x-pad-${i}: ${'p'.repeat(1000)}\r\n`).join('')}content-length: 2\r\n\r\nok`, 'latin1'),
    // Just under the limit: relayed.
    '/60k-head': Buffer.from(`HTTP/1.1 200 OK\r\n${Array.from({ length: 60 }, (_, i) => `x-pad-${i}: ${'p'.repeat(1000)}\r\n`).join('')}content-length: 2\r\n\r\nok`, 'latin1'),
    '/trailer-bad': Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nbad trailer\r\n\r\n', 'latin1'),
  };
  const scriptUp = createNetServer((s) => {
    s.on('error', () => {});
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const path = /^\S+ (\S+) /.exec(buf)?.[1] ?? '';
      const bytes = script[path];
      if (bytes === undefined) { s.destroy(); return; }
      s.end(bytes);
    });
  });
  await new Promise<void>((r) => scriptUp.listen(0, '127.0.0.1', () => r()));
  fx.add(() => new Promise<void>((r) => scriptUp.close(() => r())));
  const scriptPort = (scriptUp.address() as { port: number }).port;

  p = await fx.proxy([serviceYaml('conf', [up.port]), serviceYaml('rawup', [rawUpPort]), serviceYaml('smug', [smug.port]), serviceYaml('script', [scriptPort]),
    // A prefix route, as the absolute-form symptom had it (matched as a path, "http://..." never matched /x).
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: conf-prefix }
spec:
  hosts: [conf]
  http:
  - match: [{ uri: { prefix: /prefixed } }]
    route: [{ destination: { host: conf } }]
    headers: { response: { set: { x-route: prefixed } } }
  - match: [{ uri: { prefix: /ws } }]
    upgradeConfigs: [{ upgradeType: websocket, enabled: false }]
    route: [{ destination: { host: conf } }]
  - route: [{ destination: { host: conf } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: conf-retry }
spec:
  hosts: [conf-retry]
  http:
  - route: [{ destination: { host: conf } }]
    retries: { attempts: 2, retryOn: 5xx }
`, serviceYaml('conf-retry', [up.port])].join('---\n'));
  port = p.ports.outbound;
});

const get = (path: string, host = 'conf', extra = '') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;

// ---------------------------------------------------------------------------------------------

describe('HTTP/1.1 framing through the proxy (raw sockets)', () => {
  it('pipelining: three GETs in one write get three responses in order, and the connection stays open', async () => {
    const c = await Conn.open(port);
    c.write(get('/a') + get('/b') + get('/c'));
    const r = finals(await c.responses(3));
    expect(r.map((x) => x.status)).toEqual([200, 200, 200]);
    expect(r.map((x) => x.body)).toEqual(['url=/a', 'url=/b', 'url=/c']);
    for (const x of r) expect(hdr(x, 'connection') ?? '').not.toMatch(/close/i);
    expect(c.closed).toBe(false);
    // Still usable: a fourth request on the same connection.
    c.reset();
    c.write(get('/d'));
    const d = finals(await c.responses(1));
    expect(d[0].body).toBe('url=/d');
    expect(c.closed).toBe(false);
  });

  it('a chunked request body with chunk extensions and trailers reaches the upstream intact, and framing holds after it', async () => {
    const c = await Conn.open(port);
    const body = 'POST /echo-body HTTP/1.1\r\nHost: conf\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n'
      + '5;foo=bar\r\nhello\r\n'
      + '1\r\n \r\n'
      + '6;a=b;c\r\nworld!\r\n'
      + 'a\r\n0123456789\r\n'
      + '0\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n';
    c.write(body + get('/after-trailers'));
    const r = finals(await c.responses(2));
    expect(r[0].status).toBe(200);
    expect(JSON.parse(r[0].body)).toEqual({ length: 22, body: 'hello world!0123456789' });
    // The trailer section did not leak into the next request.
    expect(r[1].status).toBe(200);
    expect(r[1].body).toBe('url=/after-trailers');
    const seen = upSeen.filter((s) => s.url === '/echo-body' || s.url === '/after-trailers').map((s) => s.url);
    expect(seen).toEqual(['/echo-body', '/after-trailers']);
  });

  it('a response written in several pieces without content-length is delivered whole and correctly framed', async () => {
    const c = await Conn.open(port);
    c.write(get('/chunked-res'));
    const [r] = finals(await c.responses(1));
    expect(r.status).toBe(200);
    expect(r.body).toBe('hello chunked world');
    expect(['chunked', 'length']).toContain(r.framing);
    expect(c.closed).toBe(false);
    // The end of the body was framed: the connection carries a next request.
    c.reset();
    c.write(get('/next'));
    expect(finals(await c.responses(1))[0].body).toBe('url=/next');
  });

  it('HTTP/1.0 without keep-alive: a valid non-chunked body, then the proxy closes the connection', async () => {
    const c = await Conn.open(port);
    c.write('GET /chunked-res HTTP/1.0\r\nHost: conf\r\n\r\n');
    expect(await c.closedWithin(2000)).toBe(true);
    const all = parseResponses(c.text(), { closed: true });
    expect(all.error).toBeUndefined();
    const [r] = finals(all);
    expect(r.status).toBe(200);
    expect(r.version).toMatch(/^HTTP\/1\.[01]$/);
    // An HTTP/1.0 client cannot decode chunked: content-length or close-delimited only.
    expect(hdr(r, 'transfer-encoding')).toBeUndefined();
    expect(['length', 'close']).toContain(r.framing);
    expect(r.body).toBe('hello chunked world');
    expect(all.rest).toBe('');
  });

  it('HEAD: content-length of the GET body and no body bytes; a pipelined GET after it still works', async () => {
    const c = await Conn.open(port);
    c.write(`HEAD /get-body HTTP/1.1\r\nHost: conf\r\n\r\n${get('/get-body')}`);
    const all = await c.responses(2, { methods: ['HEAD', 'GET'] });
    const [h, g] = finals(all);
    expect(h.status).toBe(200);
    expect(hdr(h, 'content-length')).toBe(String(GET_BODY.length));
    expect(h.body).toBe('');
    // Had HEAD carried body bytes, the second parse would start mid-body and fail.
    expect(g.status).toBe(200);
    expect(hdr(g, 'content-length')).toBe(String(GET_BODY.length));
    expect(g.body).toBe(GET_BODY);
    expect(all.rest).toBe('');
  });

  it('204 and 304 carry no body and the connection is reused for the next request', async () => {
    const c = await Conn.open(port);
    c.write(get('/204'));
    let all = await c.responses(1);
    expect(finals(all)[0].status).toBe(204);
    expect(hdr(finals(all)[0], 'transfer-encoding')).toBeUndefined();
    await sleep(30); // any stray body bytes would arrive here
    expect(parseResponses(c.text()).rest).toBe('');
    c.reset();
    c.write(get('/304'));
    all = await c.responses(1);
    expect(finals(all)[0].status).toBe(304);
    expect(hdr(finals(all)[0], 'etag')).toBe('"v1"');
    await sleep(30);
    expect(parseResponses(c.text()).rest).toBe('');
    c.reset();
    c.write(get('/after-304'));
    all = await c.responses(1);
    expect(finals(all)[0].body).toBe('url=/after-304');
    expect(c.closed).toBe(false);
  });

  it('Connection: close from the client: the response says close and the proxy closes the socket', async () => {
    const c = await Conn.open(port);
    c.write(get('/bye', 'conf', 'Connection: close\r\n'));
    expect(await c.closedWithin(2000)).toBe(true);
    const all = parseResponses(c.text(), { closed: true });
    const [r] = finals(all);
    expect(r.status).toBe(200);
    expect(r.body).toBe('url=/bye');
    expect(hdr(r, 'connection')).toMatch(/close/i);
    expect(all.rest).toBe('');
  });

  it('an upstream answering Connection: close: full response to the client, and the next request uses a new upstream connection', async () => {
    const c = await Conn.open(port);
    c.write(get('/upstream-close'));
    const [r] = finals(await c.responses(1));
    expect(r.status).toBe(200);
    expect(r.body).toBe('bye from a closing upstream');
    // The upstream's close is hop-by-hop: the downstream connection stays usable.
    c.reset();
    c.write(get('/after-upstream-close'));
    const [n] = finals(await c.responses(1));
    expect(n.status).toBe(200);
    expect(n.body).toBe('url=/after-upstream-close');
    // The upstream connection that said close was not reused for the next request.
    const closing = upSeen.filter((s) => s.url === '/upstream-close').at(-1)!;
    const after = upSeen.filter((s) => s.url === '/after-upstream-close').at(-1)!;
    expect(closing.peerPort).toBeDefined();
    expect(after.peerPort).not.toBe(closing.peerPort);
    // And a request on a fresh client connection works too.
    expect((await send(port, { host: 'conf', path: '/fresh' })).body).toBe('url=/fresh');
  });

  it('Expect: 100-continue: "100 Continue" comes before the final response, and the body reaches the upstream', async () => {
    const c = await Conn.open(port);
    c.write('POST /echo-body HTTP/1.1\r\nHost: conf\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n');
    expect(await c.waitFor((t) => /^HTTP\/1\.1 100 Continue\r\n/i.test(t) && t.includes('\r\n\r\n'), 2000)).toBe(true);
    // No final response yet: the proxy waits for the body.
    expect(finals(parseResponses(c.text()))).toHaveLength(0);
    c.write('hello there');
    const all = await c.responses(1);
    expect(all.responses[0].status).toBe(100);
    const [r] = finals(all);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ length: 11, body: 'hello there' });
    // The upstream got the body exactly once, as one complete request.
    const s = upSeen.filter((x) => x.url === '/echo-body').at(-1)!;
    expect(s).toMatchObject({ method: 'POST', body: 'hello there', complete: true });
  });

  it('1xx informational responses from the upstream (raw 103; Node 102 + 103) do not break the final response', async () => {
    const c = await Conn.open(port);
    c.write(get('/hints', 'rawup'));
    const all = await c.responses(1);
    expect(all.error).toBeUndefined();
    const [r] = finals(all);
    expect(r.status).toBe(200);
    expect(r.body).toBe('final after 1');
    // Whatever 1xx the proxy forwards must be well-formed interim responses ahead of the final one.
    for (const x of all.responses.slice(0, -1)) { expect(x.interim).toBe(true); expect(x.status).toBeGreaterThanOrEqual(100); }
    expect(all.responses.at(-1)).toBe(r);
    // The connection still frames the next exchange correctly.
    c.reset();
    c.write(get('/processing'));
    const all2 = await c.responses(1);
    const [r2] = finals(all2);
    expect(r2.status).toBe(200);
    expect(r2.body).toBe('after 102 and 103');
    expect(all2.rest).toBe('');
  });

  it('Upgrade: websocket on a route that disables it is a 403 (Envoy), nothing forwarded, then the connection closes', async () => {
    const before = upSeen.length;
    const c = await Conn.open(port);
    // Bytes after the upgrade request (upgrade payload, or a request hiding in it) are never parsed.
    c.write(get('/ws', 'conf', 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n') + get('/after-ws'));
    expect(await c.closedWithin(2000)).toBe(true);
    const all = parseResponses(c.text(), { closed: true });
    const r = finals(all);
    expect(r.map((x) => x.status)).toEqual([403]);
    expect(hdr(r[0], 'upgrade')).toBeUndefined();
    expect(hdr(r[0], 'connection')).toBe('close');
    expect(r[0].body).toBe('');
    expect(upSeen.length).toBe(before);
    expect((await send(port, { host: 'conf', path: '/after-upgrade' })).body).toBe('url=/after-upgrade');
    expect(await stat(p.ports.admin, 'http.outbound.downstream_rq_ws_on_non_ws_route')).toBeGreaterThanOrEqual(1);
  });

  it('Upgrade: h2c alone, or Upgrade without Connection: upgrade, is served as a plain request with the upgrade headers removed', async () => {
    for (const extra of ['Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n', 'Upgrade: websocket\r\n']) {
      const c = await Conn.open(port);
      c.write(get('/plain-upgrade', 'conf', extra));
      const [r] = finals(await c.responses(1));
      expect(r.status, extra).toBe(200);
      expect(r.body).toBe('url=/plain-upgrade');
      const s = upSeen.filter((x) => x.url === '/plain-upgrade').at(-1)!;
      expect(s.headers.upgrade).toBeUndefined();
      expect(s.headers['http2-settings']).toBeUndefined();
      expect(s.headers.connection).toBeUndefined();
    }
  });

  it('a malformed request gets 400 and the proxy stays up for other connections', async () => {
    // A keep-alive connection opened before the bad request stays usable after it.
    const keep = await Conn.open(port);
    keep.write(get('/before'));
    expect(finals(await keep.responses(1))[0].body).toBe('url=/before');
    const r = await rawResult(port, 'GET /a\x01b HTTP/1.1\r\nHost: conf\r\n\r\n');
    expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(r.closed).toBe(true);
    expect(upSeen.some((s) => s.url.startsWith('/a\x01'))).toBe(false);
    keep.reset();
    keep.write(get('/still-here'));
    expect(finals(await keep.responses(1))[0].body).toBe('url=/still-here');
    const n = await send(port, { host: 'conf', path: '/after-malformed' });
    expect(n.status).toBe(200);
    expect(n.body).toBe('url=/after-malformed');
  });
});

// ---------------------------------------------------------------------------------------------
// Issue 13: wire correctness found by real clients and the external corpus.

const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

describe('HTTP wire correctness (issue 13)', () => {
  it('Transfer-Encoding "chunked\\xa0" / "\\xa0chunked" is not chunked: the request is refused and nothing reaches the upstream', async () => {
    for (const te of ['chunked\xa0', '\xa0chunked', 'chunked\x85', '\xa0chunked\xa0']) {
      const before = smugSeen.length;
      const r = await rawResult(port, `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: ${te}\r\n\r\n1\r\nZ\r\n0\r\n\r\n${SMUGGLED}`);
      expect(r.text, JSON.stringify(te)).toMatch(/^HTTP\/1\.1 400 /);
      expect(r.closed).toBe(true);
      const s = await send(port, { host: 'smug', path: '/sentinel-te' });
      expect(s.status).toBe(200);
      expect(smugSeen.slice(before).map((x) => x.url)).toEqual(['/sentinel-te']);
    }
  });

  it('an upstream response with Transfer-Encoding "chunked\\xa0", "gzip" or "gzip, chunked" is a 502 UPE, never relayed re-framed', async () => {
    for (const path of ['/te-nbsp', '/te-gzip', '/te-gzip-chunked']) {
      const c = await Conn.open(port);
      c.write(get(path, 'script'));
      const [r] = finals(await c.responses(1));
      expect(r.status, path).toBe(502);
      expect(hdr(r, 'x-meshlet-flags'), path).toBe('UPE');
      expect(r.body).toContain('protocol error');
    }
  });

  it('absolute-form (curl -x, Java ProxySelector): routed by the authority, forwarded in origin-form, Host replaced', async () => {
    const c = await Conn.open(port);
    c.write('GET http://conf/prefixed/x?y=1 HTTP/1.1\r\nHost: wrong.example\r\nUser-Agent: curl/8\r\n\r\n');
    const [r] = finals(await c.responses(1));
    expect(r.status).toBe(200);
    expect(r.body).toBe('url=/prefixed/x?y=1');
    expect(hdr(r, 'x-route')).toBe('prefixed'); // the uri.prefix route matched the path, not "http://..."
    const s = upSeen.filter((x) => x.url === '/prefixed/x?y=1').at(-1)!;
    expect(s.headers.host).toBe('conf');
    // One Host only: the client's disagreeing one was replaced, not forwarded alongside.
    expect(s.rawHeaders.filter((_, i) => i % 2 === 0 && s.rawHeaders[i].toLowerCase() === 'host')).toHaveLength(1);
    // An empty path is "/", the query kept; the authority's port goes with it (routing strips it).
    c.reset();
    c.write('GET http://conf:80?q=2 HTTP/1.1\r\nHost: conf:80\r\n\r\n');
    const [r2] = finals(await c.responses(1));
    expect(r2.body).toBe('url=/?q=2');
    expect(upSeen.filter((x) => x.url === '/?q=2').at(-1)!.headers.host).toBe('conf:80');
  });

  it('absolute-form with userinfo, another scheme, or no authority is a 400; asterisk-form only with OPTIONS', async () => {
    for (const line of ['GET http://user:pw@conf/ HTTP/1.1', 'GET ftp://conf/ HTTP/1.1', 'GET http:/// HTTP/1.1', 'GET * HTTP/1.1', 'PRI * HTTP/1.1']) {
      const r = await rawResult(port, `${line}\r\nHost: conf\r\n\r\n`);
      expect(r.text, line).toMatch(/^HTTP\/1\.1 400 /);
      expect(r.text).toMatch(/HPE_INVALID_URL/);
    }
  });

  it('request-target validation: "!", raw non-ASCII, control characters and a #fragment are 400 and never forwarded', async () => {
    const before = upSeen.length;
    for (const target of ['!', 'x/y', '/caf\xe9', '/a\x7fb', '/p#frag']) {
      const r = await rawResult(port, `GET ${target} HTTP/1.1\r\nHost: conf\r\n\r\n`);
      expect(r.text, JSON.stringify(target)).toMatch(/^HTTP\/1\.1 400 /);
      expect(r.closed).toBe(true);
    }
    expect(upSeen.length).toBe(before);
    // Characters real clients send unencoded in origin-form are still fine.
    expect((await rawResult(port, get('/q?a=|&b="x"&c={}'), { until: (t) => t.includes('url=') })).text).toContain('url=/q?a=|&b="x"&c={}');
  });

  it('a Connection header cannot remove what the proxy is responsible for: XFF, Host, x-request-id, l5d-*/trace headers', async () => {
    const c = await Conn.open(port);
    c.write(get('/nominated', 'conf', 'X-Forwarded-For: 10.1.2.3\r\nX-Request-Id: rid-1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Custom-Hop: bye\r\nConnection: X-Forwarded-For, Host, x-request-id, traceparent, X-Custom-Hop\r\n'));
    const [r] = finals(await c.responses(1));
    expect(r.status).toBe(200);
    const s = upSeen.filter((x) => x.url === '/nominated').at(-1)!;
    expect(s.headers['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
    expect(s.headers.host).toBe('conf');
    expect(s.headers['x-request-id']).toBe('rid-1');
    expect(s.headers.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    // The client's own hop-by-hop field still goes, and so does Connection itself.
    expect(s.headers['x-custom-hop']).toBeUndefined();
    expect(s.headers.connection).toBeUndefined();
  });

  it('a response Connection header removes the upstream\'s nominated fields, but not the Date the proxy guarantees', async () => {
    const c = await Conn.open(port);
    c.write(get('/conn-nominates'));
    const [r] = finals(await c.responses(1));
    expect(r.body).toBe('nominated');
    expect(hdr(r, 'x-upstream-hop')).toBeUndefined();
    expect(hdr(r, 'date')).toMatch(IMF_FIXDATE);
  });

  it('the 64 KiB response-head limit holds for a head that arrives whole: 502 UPE; a 60 KiB head is relayed', async () => {
    const c = await Conn.open(port);
    c.write(get('/big-head', 'script'));
    const [r] = finals(await c.responses(1));
    expect(r.status).toBe(502);
    expect(hdr(r, 'x-meshlet-flags')).toBe('UPE');
    const c2 = await Conn.open(port);
    c2.write(get('/60k-head', 'script'));
    const [r2] = finals(await c2.responses(1, { ms: 3000 }));
    expect(r2.status).toBe(200);
    expect(hdr(r2, 'x-pad-59')).toBe('p'.repeat(1000));
    expect(r2.body).toBe('ok');
  });

  it('chunk sizes with leading zeros are valid; whitespace before CRLF and an empty extension name are refused (llhttp strict)', async () => {
    const c = await Conn.open(port);
    c.write('POST /echo-body HTTP/1.1\r\nHost: conf\r\nTransfer-Encoding: chunked\r\n\r\n00000000000005\r\nhello\r\n0000000000000000000000\r\n\r\n');
    const [r] = finals(await c.responses(1));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ length: 5, body: 'hello' });
    for (const line of ['5 \r\n', '5;\r\n', '5\t\r\n']) {
      const before = upSeen.length;
      const x = await rawResult(port, `POST /echo-body HTTP/1.1\r\nHost: conf\r\nTransfer-Encoding: chunked\r\n\r\n${line}hello\r\n0\r\n\r\n`);
      expect(x.text, JSON.stringify(line)).toMatch(/^HTTP\/1\.1 400 /);
      expect(x.text).toMatch(/HPE_INVALID_CHUNK/);
      // Framed before dispatch: not even the head went upstream.
      expect(upSeen.length).toBe(before);
    }
  });

  it('Date: added (IMF-fixdate) when the upstream omits it, the upstream\'s own kept, and on local replies and refusals', async () => {
    const c = await Conn.open(port);
    c.write(get('/no-date') + get('/own-date') + get('/x', 'no-such-host'));
    const [a, b, nr] = finals(await c.responses(3));
    expect(a.body).toBe('no date here');
    expect(a.headers.date).toHaveLength(1);
    expect(hdr(a, 'date')).toMatch(IMF_FIXDATE);
    expect(Math.abs(Date.parse(hdr(a, 'date')!) - Date.now())).toBeLessThan(5000);
    expect(b.headers.date).toEqual(['Thu, 01 Jan 2015 00:00:00 GMT']);
    expect(nr.status).toBe(404);
    expect(hdr(nr, 'date')).toMatch(IMF_FIXDATE);
    const bad = await raw(port, 'GET ! HTTP/1.1\r\nHost: conf\r\n\r\n');
    expect(bad).toMatch(/\r\ndate: [^\r]+ GMT\r\n/i);
  });

  it('chunked trailers are forwarded both ways (gRPC status in trailers), validated, prohibited fields dropped', async () => {
    const c = await Conn.open(port);
    c.write('POST /echo-body HTTP/1.1\r\nHost: conf\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n'
      + '4\r\nbody\r\n0\r\nX-Checksum: abc123\r\nContent-Length: 99\r\nHost: evil\r\n\r\n');
    const [r] = finals(await c.responses(1));
    expect(JSON.parse(r.body)).toEqual({ length: 4, body: 'body' });
    const s = upSeen.filter((x) => x.url === '/echo-body' && x.body === 'body').at(-1)!;
    expect(s.trailers).toEqual({ 'x-checksum': 'abc123' });
    // Also when a retry policy buffers the body for replay (it then goes out chunked with them).
    c.reset();
    c.write('POST /echo-body HTTP/1.1\r\nHost: conf-retry\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nreplay\r\n0\r\nX-Checksum: r1\r\n\r\n');
    const [rr] = finals(await c.responses(1));
    expect(JSON.parse(rr.body)).toEqual({ length: 6, body: 'replay' });
    const sr = upSeen.filter((x) => x.url === '/echo-body' && x.body === 'replay').at(-1)!;
    expect(sr.trailers).toEqual({ 'x-checksum': 'r1' });
    // Response trailers from the upstream reach the client after the last chunk.
    c.reset();
    c.write(get('/trailers-res'));
    const [t] = finals(await c.responses(1));
    expect(t.framing).toBe('chunked');
    expect(t.body).toBe('payload');
    expect(t.trailers).toEqual({ 'grpc-status': ['0'], 'grpc-message': ['all good'] });
    // A malformed trailer from the upstream: the response is cut (reset), never completed.
    const c2 = await Conn.open(port);
    c2.write(get('/trailer-bad', 'script'));
    expect(await c2.closedWithin(2000)).toBe(true);
    expect(finals(parseResponses(c2.text())).length).toBe(0);
    // And from the client: 400, nothing completes upstream.
    const x = await rawResult(port, 'POST /echo-body HTTP/1.1\r\nHost: conf\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\nbad trailer\r\n\r\n');
    expect(x.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(upSeen.some((u) => u.body === 'zz' && u.complete)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Request smuggling corpus. Every payload also carries a second request for /smuggled after the
// bad framing, so a desync would show up as /smuggled at the upstream.

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: smug\r\n\r\n';

type Accept = 'head';
interface Case { name: string; payload: string; statuses: number[]; accept: Accept }

// `head`: the request is invalid in the bytes sent in one write (its head, or body framing the
// engine checks before dispatching): the answer is one of `statuses` (nothing else), the
// connection is closed, and the upstream sees nothing at all. (Bad framing that arrives after the
// head was dispatched has its own test below.)
const cases: Case[] = [
  { name: 'Content-Length and Transfer-Encoding both present', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'Transfer-Encoding before Content-Length', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'two different Content-Length headers', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: 0\r\nContent-Length: 38\r\n\r\n${SMUGGLED}` },
  { name: 'Content-Length list with different values', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: 0, 38\r\n\r\n${SMUGGLED}` },
  { name: 'Content-Length: 5x', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: 5x\r\n\r\nhello${SMUGGLED}` },
  { name: 'Content-Length: -1', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: -1\r\n\r\n${SMUGGLED}` },
  { name: 'Content-Length: +5', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: +5\r\n\r\nhello${SMUGGLED}` },
  { name: 'Transfer-Encoding: chunked, identity', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'Transfer-Encoding: xchunked', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'obs-fold continuation line', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\r\nHost: smug\r\nX-Folded: a\r\n b\r\n\r\n${SMUGGLED}` },
  { name: 'obs-fold on Transfer-Encoding', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'bare LF line endings in the head', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\nHost: smug\n\n${SMUGGLED}` },
  { name: 'space between header name and colon (Host : x)', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\r\nHost : smug\r\n\r\n${SMUGGLED}` },
  { name: 'space between header name and colon (Content-Length :)', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nContent-Length : 38\r\n\r\n${SMUGGLED}` },
  { name: 'header name with an invalid character', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\r\nHost: smug\r\nBad@Name: x\r\n\r\n${SMUGGLED}` },
  { name: 'NUL in a header value', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\r\nHost: smug\r\nX-Nul: a\x00b\r\n\r\n${SMUGGLED}` },
  { name: 'invalid method token', accept: 'head', statuses: [400],
    payload: `G<T / HTTP/1.1\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'request line with an empty HTTP version (HTTP/)', accept: 'head', statuses: [400],
    payload: `GET / HTTP/\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'request line without a request target', accept: 'head', statuses: [400],
    payload: `GET  HTTP/1.1\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'request line with a lower-case protocol name', accept: 'head', statuses: [400],
    payload: `GET / http/1.1\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'request line with trailing garbage after the version', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1 x\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'HTTP/1.1 request without Host', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n${SMUGGLED}` },
  // RFC 9112 section 3.2: more than one Host is a 400 (nothing routed on either).
  { name: 'two Host headers', accept: 'head', statuses: [400],
    payload: `GET / HTTP/1.1\r\nHost: smug\r\nHost: other\r\n\r\n${SMUGGLED}` },
  // No HTTP/0.9 and no other major version on an HTTP/1.x connection.
  { name: 'request line without an HTTP version', accept: 'head', statuses: [400],
    payload: `GET /\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'HTTP/2.0 in an HTTP/1.1 request line', accept: 'head', statuses: [400],
    payload: `GET / HTTP/2.0\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  // CONNECT tunnels only to mesh names (test/integration/tunnel.test.ts); bytes after a refused one are never parsed.
  { name: 'CONNECT to a name the mesh does not know (no open proxy)', accept: 'head', statuses: [404],
    payload: `CONNECT smug.example:443 HTTP/1.1\r\nHost: smug.example:443\r\n\r\n${SMUGGLED}` },
  { name: 'CONNECT with a body', accept: 'head', statuses: [400],
    payload: `CONNECT smug:443 HTTP/1.1\r\nHost: smug:443\r\nContent-Length: 5\r\n\r\nhello${SMUGGLED}` },
  // RFC 9112 section 6.3: chunked is not the final coding ("chunked\xa0" is another token): MUST 400.
  { name: 'Transfer-Encoding: chunked with a trailing NBSP', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1: faulty framing)', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.0\r\nHost: smug\r\nTransfer-Encoding: chunked\r\nContent-Length: 38\r\n\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'absolute-form with userinfo', accept: 'head', statuses: [400],
    payload: `GET http://user@smug/ HTTP/1.1\r\nHost: smug\r\n\r\n${SMUGGLED}` },
  { name: 'chunk size followed by whitespace', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nZ\r\n0\r\n\r\n${SMUGGLED}` },
  { name: 'oversized head (> 64 KB of headers)', accept: 'head', statuses: [431],
    payload: `GET / HTTP/1.1\r\nHost: smug\r\n${Array.from({ length: 70 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(1000)}\r\n`).join('')}\r\n` },
  { name: 'very long request target', accept: 'head', statuses: [431],
    payload: `GET /${'u'.repeat(70 * 1024)} HTTP/1.1\r\nHost: smug\r\n\r\n` },
  { name: 'invalid chunk size (zz)', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${SMUGGLED}` },
  { name: 'chunk size overflow (ffffffffffffffffffff)', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n${SMUGGLED}` },
  { name: 'chunk data longer than its size', accept: 'head', statuses: [400],
    payload: `POST / HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n${SMUGGLED}` },
];

describe('request smuggling corpus: refused, nothing reaches the upstream', () => {
  it.each(cases)('$name', async (tc) => {
    const hitsBefore = smug.hits;
    const seenBefore = smugSeen.length;
    const r = await rawResult(port, tc.payload, { timeoutMs: 1500 });
    const statuses = [...r.text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
    // Exactly one answer, the refusal, and the connection closed.
    expect(r.text, JSON.stringify(r.text.slice(0, 200))).toMatch(/^HTTP\/1\.1 \d{3} /);
    expect(statuses).toEqual([tc.statuses[0]]);
    expect(r.closed).toBe(true);
    // A sentinel through the same upstream: everything forwarded before it has arrived by then.
    const s = await send(port, { host: 'smug', path: '/sentinel' });
    expect(s.status).toBe(200);
    await sleep(20);
    expect(smugSeen.slice(seenBefore).filter((x) => x.url !== '/sentinel')).toEqual([]);
    expect(smug.hits - hitsBefore).toBe(1); // the sentinel only
  });

  it('bad chunk framing that arrives after the head was dispatched: 400, the upstream request never completes, nothing smuggled', async () => {
    const seenBefore = smugSeen.length;
    const c = await Conn.open(port);
    c.write('POST /streamed HTTP/1.1\r\nHost: smug\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    // Wait (bounded) until the head has reached the upstream, then send the bad framing.
    const until = performance.now() + 2000;
    while (!smugSeen.slice(seenBefore).some((x) => x.url === '/streamed') && performance.now() < until) await sleep(5);
    expect(smugSeen.slice(seenBefore).map((x) => x.url)).toEqual(['/streamed']);
    c.write(`zz\r\n${SMUGGLED}`);
    expect(await c.closedWithin(2000)).toBe(true);
    const statuses = [...c.text().matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([400]);
    const s = await send(port, { host: 'smug', path: '/sentinel' });
    expect(s.status).toBe(200);
    await sleep(20);
    const forwarded = smugSeen.slice(seenBefore).filter((x) => x.url !== '/sentinel');
    expect(forwarded.map((x) => [x.url, x.complete])).toEqual([['/streamed', false]]);
  });

  it('a request smuggled inside a Content-Length body is just body: the upstream sees one request', async () => {
    const seenBefore = smugSeen.length;
    const hitsBefore = smug.hits;
    const c = await Conn.open(port);
    c.write(`POST /outer HTTP/1.1\r\nHost: smug\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`);
    const all = await c.responses(1);
    // Give a (wrongly) parsed inner request time to show up as a second response.
    await sleep(100);
    const final = finals(parseResponses(c.text()));
    expect(final).toHaveLength(1);
    expect(final[0].status).toBe(200);
    expect(finals(all)[0].body).toBe(`smug /outer ${SMUGGLED.length}`);
    expect(smug.hits - hitsBefore).toBe(1);
    const forwarded = smugSeen.slice(seenBefore);
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]).toMatchObject({ method: 'POST', url: '/outer', body: SMUGGLED, complete: true });
  });
});
