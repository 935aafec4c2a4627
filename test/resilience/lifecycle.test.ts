// Connection lifecycle under the chaos run's conditions, each on real loopback sockets: stuck
// streams (stream idle timeout, a client reset noticed while reading is paused), early upstream
// responses (lingering close), bulk uploads (fairness, --max-request-bytes), aborted uploads (DC,
// never an upstream failure) and the drain of a real `meshlet proxy` process on SIGTERM.
import { afterAll, describe, expect, it } from 'vitest';
import { createServer, request, Agent, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { spawn } from 'node:child_process';
import { Fixtures, send, startProxyProcess, writeConfig } from '../helpers.ts';
import { C, HOST, rawGet, ratings, stats, until } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const MB = 1024 * 1024;

interface RawReply { status: number; head: string; body: string; closed: boolean; error: string | null }

/**
 * A raw client: writes `head`, then streams `bodyBytes` of body (0 = none, -1 = chunked forever)
 * as fast as the proxy takes it, while reading the response. `reply` settles when a response with
 * a Content-Length body is complete, or the connection ends.
 */
function rawUpload(port: number, head: string, bodyBytes: number): { socket: Socket; reply: Promise<RawReply>; written(): number } {
  const socket = connect(port, '127.0.0.1');
  let written = 0;
  let buf = Buffer.alloc(0);
  let done = false;
  let error: string | null = null;
  const chunk = Buffer.alloc(64 * 1024, 'x');
  const chunked = Buffer.concat([Buffer.from('10000\r\n'), chunk, Buffer.from('\r\n')]);
  const reply = new Promise<RawReply>((resolve) => {
    const finish = (closed: boolean) => {
      if (done) return;
      const text = buf.toString('latin1');
      const i = text.indexOf('\r\n\r\n');
      const headText = i < 0 ? text : text.slice(0, i);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(headText);
      const len = /\r\ncontent-length: *(\d+)/i.exec(headText);
      if (!closed && (i < 0 || !len || text.length - i - 4 < Number(len[1]))) return;
      done = true;
      resolve({ status: m ? Number(m[1]) : 0, head: headText, body: i < 0 ? '' : text.slice(i + 4, len ? i + 4 + Number(len[1]) : undefined), closed, error });
    };
    socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); finish(false); });
    socket.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
    socket.on('close', () => finish(true));
  });
  socket.on('connect', () => {
    socket.write(head);
    const pump = (): void => {
      for (;;) {
        if (socket.destroyed || (bodyBytes >= 0 && written >= bodyBytes)) return;
        const c = bodyBytes < 0 ? chunked : chunk.subarray(0, Math.min(chunk.length, bodyBytes - written));
        written += c.length;
        if (!socket.write(c)) { socket.once('drain', pump); return; }
      }
    };
    if (bodyBytes !== 0) pump();
  });
  return { socket, reply, written: () => written };
}

/** Wait until the proxy has stopped taking the client's body: its write buffer stays full across two polls. */
async function backedUp(s: Socket): Promise<boolean> {
  let last = -1;
  return until(async () => {
    const n = s.writableLength;
    const stuck = n > 0 && n === last;
    last = n;
    return stuck;
  }, 10_000);
}

/**
 * A client process that uploads `size` bytes the way a blocking client does (python http.client,
 * curl): it writes whenever it gets to it (busy 20 ms before each burst) and reads the response
 * after. A proxy that resets the connection under it makes its next write fail with EPIPE, and the
 * answer waiting in its receive buffer is lost. Resolves with what it read (and any error).
 */
const BUSY_CLIENT = `
const [port, host, size] = process.argv.slice(1);
const c = require('net').connect(Number(port), '127.0.0.1');
let got = '';
c.on('data', (d) => { got += d; });
c.on('error', (e) => { got += ' ERR ' + e.code; });
c.on('close', () => process.stdout.write(JSON.stringify(got.slice(0, 300))));
const b = Buffer.alloc(256 * 1024, 'z');
let sent = 0;
const pump = () => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  while (sent < Number(size)) { sent += b.length; if (!c.write(b)) return; }
};
c.on('drain', pump);
c.on('connect', () => { c.write('POST /up HTTP/1.1\\r\\nhost: ' + host + '\\r\\ncontent-length: ' + size + '\\r\\n\\r\\n'); pump(); });
setTimeout(() => { got += ' ERR client timeout'; c.destroy(); }, 20000).unref();`;

function busyUpload(port: number, size: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', BUSY_CLIENT, String(port), HOST, String(size)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.on('close', () => resolve(out ? JSON.parse(out) as string : 'ERR no output'));
  });
}

const post = (path: string, extra: string) => `POST ${path} HTTP/1.1\r\nhost: ${HOST}\r\n${extra}\r\n`;

/**
 * A proxy whose one upstream connection (maxConnections 1) goes to an upstream that stops reading
 * `/stuck` bodies and answers anything else once its body ended.
 */
async function stuckProxy(streamIdleTimeoutMs: number) {
  const u = await fx.upstream((req, res) => {
    if (req.url === '/stuck') { req.pause(); return; }
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  return fx.proxy(ratings([u.port], { policy: '    connectionPool: { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } }' }),
    { streamIdleTimeoutMs });
}

describe('stuck streams (upstream stops reading the request body, no route timeout)', () => {
  it('a client RST while the proxy is paused is noticed at once: DC, the pool slot freed, no upstream failure', async () => {
    const p = await stuckProxy(0);
    const up = rawUpload(p.ports.outbound, post('/stuck', `content-length: ${512 * MB}\r\n`), 512 * MB);
    expect(await backedUp(up.socket)).toBe(true);
    up.socket.resetAndDestroy();
    expect(await until(async () => (await stats(p.ports.admin)).get(`${C}.upstream_rq_active`) === 0, 5000)).toBe(true);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_cx_active`)).toBe(0); // closed: it was mid-message
    expect(s.get('http.outbound.downstream_rq_active')).toBe(0);
    expect(s.get('http.outbound.downstream_rq_rx_reset')).toBe(1);
    expect(s.get(`${C}.upstream_rq_5xx`)).toBe(0);
    expect(s.get(`${C}.upstream_cx_destroy_remote_with_active_rq`)).toBe(0);
    // The only connection the pool may open is free again.
    const r = await send(p.ports.outbound, { host: HOST });
    expect(r.status).toBe(200);
  });

  it('the stream idle timeout ends a stuck upload with 408 "stream timeout" (SI) and frees the slot', async () => {
    const p = await stuckProxy(300);
    const t0 = performance.now();
    const up = rawUpload(p.ports.outbound, post('/stuck', `content-length: ${512 * MB}\r\n`), 512 * MB);
    const r = await up.reply;
    const ms = performance.now() - t0;
    up.socket.destroy();
    expect(r.status).toBe(408);
    expect(r.body).toBe('stream timeout');
    expect(r.head).toMatch(/\r\nx-meshlet-flags: SI\r\n/i);
    expect(r.head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(ms).toBeGreaterThanOrEqual(300);
    expect(ms).toBeLessThan(5000);
    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.downstream_rq_idle_timeout')).toBe(1);
    expect(s.get(`${C}.upstream_rq_4xx`)).toBe(0); // the connection manager's reply, not the upstream's
    expect(await until(async () => (await stats(p.ports.admin)).get(`${C}.upstream_rq_active`) === 0, 5000)).toBe(true);
    expect((await send(p.ports.outbound, { host: HOST })).status).toBe(200);
  });

  it('also while waiting for response headers, and a response that stalls mid-body is reset (never passed off as complete)', async () => {
    const u = await fx.upstream((req, res) => {
      if (req.url === '/silent') return; // never answers
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part of it'); // then stalls
    });
    const p = await fx.proxy(ratings([u.port]), { streamIdleTimeoutMs: 300 });
    const silent = await send(p.ports.outbound, { host: HOST, path: '/silent' });
    expect(silent.status).toBe(408);
    expect(silent.headers['x-meshlet-flags']).toBe('SI');
    const stalled = await rawGet(p.ports.outbound, HOST, '/stall');
    expect(stalled.status).toBe(200);
    expect(stalled.complete).toBe(false);
    expect((await stats(p.ports.admin)).get('http.outbound.downstream_rq_idle_timeout')).toBe(2);
  });

  it('a request with bytes flowing is not idle, however long it takes', async () => {
    const u = await fx.upstream((req, res) => { let n = 0; req.on('data', (c) => { n += c.length; }); req.on('end', () => res.end(String(n))); });
    const p = await fx.proxy(ratings([u.port]), { streamIdleTimeoutMs: 300 });
    // A slow upload: 8 pieces 100 ms apart (800 ms in all, each gap under the timeout).
    const reply = new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: p.ports.outbound, method: 'POST', path: '/', agent: false, headers: { host: HOST, 'content-length': '8' } }, (res) => {
        let b = '';
        res.on('data', (c) => { b += c; });
        res.on('end', () => resolve(`${res.statusCode} ${b}`));
      });
      req.on('error', reject);
      let i = 0;
      const t = setInterval(() => { req.write('x'); if (++i === 8) { clearInterval(t); req.end(); } }, 100);
    });
    expect(await reply).toBe('200 8');
  });
});

describe('early upstream responses', () => {
  it('an upstream answering 413 before reading the body: 8 busy clients uploading 16 MB each all read the 413, none gets EPIPE', async () => {
    const u = await fx.upstream((_req, res) => { res.writeHead(413, { 'content-type': 'text/plain' }); res.end('too large'); });
    const p = await fx.proxy(ratings([u.port]));
    const results = await Promise.all(Array.from({ length: 8 }, () => busyUpload(p.ports.outbound, 16 * MB)));
    for (const r of results) {
      expect(r.slice(0, 30)).toBe('HTTP/1.1 413 Payload Too Large');
      expect(r).toContain('too large');
      expect(r).not.toContain('ERR');
    }
    // Each upstream connection was mid-request: none went back to the pool.
    expect(await until(async () => (await stats(p.ports.admin)).get(`${C}.upstream_cx_active`) === 0, 5000)).toBe(true);
  });

  it('an early 200 reaches the client too, with Connection: close (the rest of the body is not read)', async () => {
    const u = await fx.upstream((_req, res) => { res.end('early'); });
    const p = await fx.proxy(ratings([u.port]));
    const up = rawUpload(p.ports.outbound, post('/', `content-length: ${64 * MB}\r\n`), 64 * MB);
    const r = await up.reply;
    up.socket.destroy();
    expect(r.status).toBe(200);
    expect(r.body).toBe('early');
    expect(r.head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(r.error).toBe(null);
  });
});

describe('bulk uploads', () => {
  it('a probe on another connection is answered while two endless uploads stream through the proxy', async () => {
    const u = await fx.upstream((req, res) => { req.resume(); req.on('end', () => res.end('ok')); });
    const p = await fx.proxy(ratings([u.port]));
    const uploads = [0, 1].map(() => rawUpload(p.ports.outbound, post('/bulk', 'transfer-encoding: chunked\r\n'), -1));
    try {
      expect(await until(async () => uploads.every((x) => x.written() > 8 * MB), 10_000)).toBe(true);
      for (let i = 0; i < 20; i++) expect((await send(p.ports.outbound, { host: HOST, path: '/probe' })).status).toBe(200);
      expect(uploads.every((x) => !x.socket.destroyed)).toBe(true); // still streaming
    } finally {
      for (const x of uploads) x.socket.destroy();
    }
  });

  it('--max-request-bytes: a declared length above it is refused before forwarding, a chunked body is cut at it (413)', async () => {
    let received = 0;
    const u = await fx.upstream((req, res) => { req.on('data', (c) => { received += c.length; }); req.on('end', () => res.end('ok')); });
    const p = await fx.proxy(ratings([u.port]), { maxRequestBytes: MB });
    const hitsBefore = u.hits;
    const declared = rawUpload(p.ports.outbound, post('/', `content-length: ${2 * MB}\r\n`), 2 * MB);
    const d = await declared.reply;
    declared.socket.destroy();
    expect(d.status).toBe(413);
    expect(d.body).toBe('Payload Too Large');
    expect(u.hits).toBe(hitsBefore);

    const chunked = rawUpload(p.ports.outbound, post('/', 'transfer-encoding: chunked\r\n'), -1);
    const c = await chunked.reply;
    chunked.socket.destroy();
    expect(c.status).toBe(413);
    expect(c.head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(received).toBeLessThanOrEqual(MB);
    // At the limit exactly is fine.
    expect((await send(p.ports.outbound, { host: HOST, method: 'POST', body: Buffer.alloc(MB) })).status).toBe(200);
    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.downstream_rq_too_large')).toBe(2);
    expect(s.get(`${C}.upstream_rq_4xx`)).toBe(0);
  });
});

describe('bulk uploads, the limit after the response started', () => {
  it('a chunked body passing --max-request-bytes after the response started resets the stream (no false end)', async () => {
    const u = await fx.upstream((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('started'); req.resume(); });
    const p = await fx.proxy(ratings([u.port]), { maxRequestBytes: MB });
    const up = rawUpload(p.ports.outbound, post('/', 'transfer-encoding: chunked\r\n'), -1);
    const r = await up.reply;
    expect(r.status).toBe(200);
    expect(r.closed).toBe(true);
    expect(r.body).toContain('started');
    expect(r.body).not.toContain('\r\n0\r\n\r\n'); // never the last chunk: the client knows it was cut
    expect((await stats(p.ports.admin)).get('http.outbound.downstream_rq_too_large')).toBe(1);
  });
});

describe('aborted uploads', () => {
  it('12 uploads cancelled mid-body eject nothing: DC with code 0, no upstream failure, the next 20 GETs all 200', async () => {
    const seen: Array<() => number> = [];
    const handler = (req: IncomingMessage, res: import('node:http').ServerResponse) => {
      let n = 0;
      seen.push(() => n);
      req.on('data', (c: Buffer) => { n += c.length; });
      req.on('end', () => res.end('ok'));
    };
    const a = await fx.upstream(handler);
    const b = await fx.upstream(handler);
    const p = await fx.proxy(ratings([a.port, b.port], {
      policy: '    outlierDetection: { consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 30s, maxEjectionPercent: 100 }',
    }));
    for (let i = 0; i < 12; i++) {
      const k = seen.length;
      const up = rawUpload(p.ports.outbound, post('/upload', `content-length: ${8 * MB}\r\n`), 256 * 1024);
      // The upstream is reading this body: the abort is mid-message.
      expect(await until(async () => seen.length > k && seen[k]() > 0, 5000)).toBe(true);
      if (i % 2 === 0) up.socket.destroy(); else up.socket.resetAndDestroy();
      await up.reply;
    }
    expect(await until(async () => (await stats(p.ports.admin)).get('http.outbound.downstream_rq_active') === 0, 5000)).toBe(true);
    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.downstream_rq_rx_reset')).toBe(12);
    expect(s.get(`${C}.outlier_detection.ejections_enforced_total`)).toBe(0);
    expect(s.get(`${C}.upstream_rq_5xx`)).toBe(0);
    expect(s.get(`${C}.upstream_cx_destroy_remote_with_active_rq`)).toBe(0);
    expect(s.get(`${C}.upstream_cx_active`)).toBe(0); // each was mid-message: closed, not pooled
    const prom = (await send(p.ports.admin, { path: '/stats/prometheus' })).body;
    expect(prom).toMatch(/istio_requests_total\{[^}]*response_code="0"[^}]*response_flags="DC"[^}]*\} 12/);
    for (let i = 0; i < 20; i++) expect((await send(p.ports.outbound, { host: HOST })).status).toBe(200);
  });
});

describe('drain on SIGTERM (a real meshlet proxy process)', () => {
  it('keep-alive clients sending continuously see no reset: every request answered or never sent; exit 0 within the bound', async () => {
    const u = await fx.upstream((_req, res) => { res.end('ok'); });
    const p = await startProxyProcess(['--config', writeConfig(ratings([u.port])), '--drain-timeout', '3']);
    fx.add(() => p.stop());
    const outcomes: string[] = [];
    let stop = false;
    const loop = async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      for (let i = 0; i < 5000 && !stop; i++) {
        const r = await new Promise<string>((resolve) => {
          const req = request({ host: '127.0.0.1', port: p.ports.outbound, path: '/', agent, headers: { host: HOST } }, (res) => {
            res.resume();
            res.on('end', () => resolve(String(res.statusCode)));
            res.on('error', (e: NodeJS.ErrnoException) => resolve(`response ${e.code ?? e.message}`));
          });
          req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
          req.end();
        });
        outcomes.push(r);
        if (r === 'ECONNREFUSED') break; // the listener is closed: never sent
      }
      agent.destroy();
    };
    const loops = Array.from({ length: 8 }, loop);
    expect(await until(async () => outcomes.length >= 400, 10_000)).toBe(true);
    const t0 = performance.now();
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
    p.child.kill('SIGTERM');
    const code = await exited;
    const ms = performance.now() - t0;
    stop = true;
    await Promise.all(loops);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(3000 + 2000);
    const bad = outcomes.filter((o) => o !== '200' && o !== 'ECONNREFUSED');
    expect(bad).toEqual([]);
    expect(outcomes.filter((o) => o === 'ECONNREFUSED').length).toBeGreaterThan(0);
  });

  it('an idle keep-alive connection is closed with a FIN, not a reset, and the proxy exits', async () => {
    const u = await fx.upstream((_req, res) => { res.end('ok'); });
    const p = await startProxyProcess(['--config', writeConfig(ratings([u.port])), '--drain-timeout', '2']);
    fx.add(() => p.stop());
    const s = connect(p.ports.outbound, '127.0.0.1');
    let got = '';
    let err: string | null = null;
    s.on('data', (c) => { got += c; });
    s.on('error', (e: NodeJS.ErrnoException) => { err = e.code ?? e.message; });
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    s.write(`GET / HTTP/1.1\r\nhost: ${HOST}\r\n\r\n`);
    expect(await until(async () => got.includes('\r\n\r\nok'), 5000)).toBe(true);
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
    p.child.kill('SIGTERM');
    await ended; // FIN from the proxy
    s.end();
    expect(await exited).toBe(0);
    expect(err).toBe(null);
  });

  it('during the drain a request on an open keep-alive connection is answered with Connection: close, then FIN', async () => {
    const u = await fx.upstream((_req, res) => { res.end('ok'); });
    const p = await fx.proxy(ratings([u.port]));
    const s = connect(p.ports.outbound, '127.0.0.1');
    let got = '';
    let err: string | null = null;
    s.on('data', (c) => { got += c; });
    s.on('error', (e: NodeJS.ErrnoException) => { err = e.code ?? e.message; });
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    const req = `GET / HTTP/1.1\r\nhost: ${HOST}\r\n\r\n`;
    s.write(req);
    expect(await until(async () => got.endsWith('\r\n\r\nok'), 5000)).toBe(true);
    expect(got).not.toMatch(/connection: close/i);
    const drained = p.drain(5000);
    // The listener is closed: a new connection is refused, never reset.
    const refused = await new Promise<string>((r) => { const c = connect(p.ports.outbound, '127.0.0.1'); c.on('connect', () => { c.destroy(); r('connected'); }); c.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')); });
    expect(refused).toBe('ECONNREFUSED');
    got = '';
    s.write(req);
    await ended;
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(got).toMatch(/\r\nconnection: close\r\n/i);
    expect(got.endsWith('\r\n\r\nok')).toBe(true);
    s.end();
    await drained;
    expect(err).toBe(null);
  });

  it('rejects negative stream limits at start', async () => {
    const { spawnSync } = await import('node:child_process');
    const bin = new URL('../../bin/meshlet.js', import.meta.url).pathname;
    for (const flag of ['--stream-idle-timeout', '--max-request-bytes', '--drain-timeout']) {
      const r = spawnSync(process.execPath, [bin, 'proxy', '--config', writeConfig(ratings([1])), flag, '-1'], { encoding: 'utf8', timeout: 15_000 });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`${flag} must be a number >= 0`);
    }
  });

  it('an OTLP collector that never answers does not hold the exit past the drain bound', async () => {
    const accepted: Socket[] = [];
    const collector = createServer();
    collector.on('connection', (c) => { accepted.push(c); }); // reads, never answers
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', () => r()));
    fx.add(() => new Promise<void>((r) => { for (const c of accepted) c.destroy(); collector.close(() => r()); }));
    const port = (collector.address() as { port: number }).port;
    const u = await fx.upstream((_req, res) => { res.end('ok'); });
    const p = await startProxyProcess(['--config', writeConfig(ratings([u.port])), '--drain-timeout', '1',
      '--trace-sampling', '1', '--trace-endpoint', `http://127.0.0.1:${port}/v1/traces`]);
    fx.add(() => p.stop());
    for (let i = 0; i < 20; i++) expect((await send(p.ports.outbound, { host: HOST })).status).toBe(200);
    const t0 = performance.now();
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
    p.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // 1 s of drain (nothing in flight: less), then at most 5 s for the spans, in practice what is left of the drain.
    expect(performance.now() - t0).toBeLessThan(4000);
  });
});
