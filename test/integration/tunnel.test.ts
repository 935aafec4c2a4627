// Upgrade tunnels (WebSocket, any Upgrade a route allows) and CONNECT through meshlet, on real
// sockets: `ws` is the real WebSocket client and server; the path is client -> outbound sidecar ->
// inbound sidecar -> app unless said otherwise.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import pino from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { ProxyAgent, EnvHttpProxyAgent, fetch as undiciFetch } from 'undici';
import { Fixtures, send, serviceYaml, stat } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const fx = new Fixtures();

const FLOOD = 96 * 1024 * 1024;

interface App { server: Server; wss: WebSocketServer; port: number; upgrades: number; raw: Socket[]; failNext: number }

/**
 * The app: an HTTP server that answers plain requests with its name, echoes WebSocket messages,
 * adds a header to its 101, refuses upgrades to /refuse (401 with a body), closes from its side on
 * the message "server-close", and speaks a toy "echo-raw" upgrade (bytes echoed, FIN answered with
 * "bye" then FIN) for the half-close tests.
 */
async function startApp(name: string): Promise<App> {
  const server = createServer((req, res) => { res.setHeader('x-app', name); res.end(`${name} ${req.method} ${req.url}`); });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 8 * 1024 * 1024 });
  const app: App = { server, wss, port: 0, upgrades: 0, raw: [], failNext: 0 };
  wss.on('headers', (headers) => { headers.push(`X-App: ${name}`, 'X-Custom-101: kept'); });
  wss.on('connection', (ws) => {
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary && data.toString() === 'server-close') { ws.close(4001, 'bye from server'); return; }
      ws.send(data, { binary: isBinary });
    });
    ws.on('error', () => {});
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {});
    if (req.url === '/hang') { app.raw.push(socket); return; } // never answers
    if (req.url === '/raw/flood') {
      // Writes FLOOD bytes as fast as the socket drains: how far it gets shows the backpressure.
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\n');
      app.raw.push(socket);
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let left = FLOOD;
      const pump = (): void => {
        while (left > 0) {
          left -= chunk.length;
          if (!socket.write(chunk)) { socket.once('drain', pump); return; }
        }
        socket.end();
      };
      pump();
      return;
    }
    if (req.url === '/flaky-ws' && app.failNext > 0) {
      app.failNext--;
      socket.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy');
      return;
    }
    if (req.url === '/refuse') {
      socket.end('HTTP/1.1 401 Unauthorized\r\nx-why: no token\r\ncontent-length: 8\r\nconnection: close\r\n\r\nno token');
      return;
    }
    if ((req.headers.upgrade ?? '').toLowerCase() === 'echo-raw') {
      app.upgrades++;
      app.raw.push(socket);
      socket.allowHalfOpen = true;
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\n');
      if (head.length > 0) socket.write(head);
      socket.on('data', (c) => socket.write(c));
      socket.on('end', () => socket.end('bye'));
      return;
    }
    app.upgrades++;
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  // allowHalfOpen on the app's sockets: the half-close tests need the app to answer after a FIN.
  (server as unknown as { allowHalfOpen: boolean }).allowHalfOpen = true;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  app.port = (server.address() as { port: number }).port;
  fx.add(async () => {
    for (const c of wss.clients) c.terminate();
    for (const s of app.raw) s.destroy();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return app;
}

function capture(): { lines: Array<Record<string, unknown>>; stream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { lines, stream };
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function open(port: number, path = '/', host = 'chat', opts: ConstructorParameters<typeof WebSocket>[2] = {}): WebSocket {
  return new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { host }, maxPayload: 8 * 1024 * 1024, ...opts });
}

function opened(ws: WebSocket): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    ws.once('upgrade', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode}`)));
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data: RawData, binary: boolean) => resolve({ data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), binary })));
}

/** The answer to an upgrade the proxy or the app did not switch: status, headers, body. */
function refused(ws: WebSocket): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    ws.once('upgrade', () => reject(new Error('switched')));
    ws.once('error', () => {});
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
  });
}

/** A raw socket connection; `text()` is everything read so far. */
class Raw {
  readonly sock: Socket;
  private buf = '';
  ended = false;
  closed = false;
  error: NodeJS.ErrnoException | null = null;
  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (c: Buffer) => { this.buf += c.toString('latin1'); });
    sock.on('end', () => { this.ended = true; });
    sock.on('error', (e) => { this.error = e; });
    sock.on('close', () => { this.closed = true; });
  }
  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }
  text(): string { return this.buf; }
  async until(what: string, ms = 10_000): Promise<string> {
    return waitFor(JSON.stringify(what), () => (this.buf.includes(what) ? this.buf : undefined), ms);
  }
}

let appA: App, appB: App, chat: App;
let inbound: RunningProxy;
let outbound: RunningProxy;
const cap = capture();

const VS = `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: chat }
spec:
  hosts: [chat]
  http:
    - match: [{ uri: { prefix: /no-ws } }]
      upgradeConfigs: [{ upgradeType: websocket, enabled: false }]
      route: [{ destination: { host: chat } }]
    - match: [{ uri: { prefix: /raw } }]
      upgradeConfigs: [{ upgradeType: echo-raw }]
      route: [{ destination: { host: chat } }]
    - match: [{ uri: { prefix: /flaky-ws } }]
      retries: { attempts: 2, retryOn: 5xx }
      route: [{ destination: { host: chat } }]
    - match: [{ uri: { prefix: /short } }]
      timeout: 2s
      route: [{ destination: { host: chat } }]
    - match: [{ uri: { prefix: /idle } }]
      idleTimeout: 300ms
      upgradeConfigs: [{ upgradeType: echo-raw }]
      route: [{ destination: { host: chat } }]
    - route: [{ destination: { host: chat } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: split }
spec:
  hosts: [split]
  ports: [{ number: 80, name: http }]
  endpoints: [PLACEHOLDER]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: split }
spec:
  host: split
  subsets: [{ name: a, labels: { app: a } }, { name: b, labels: { app: b } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: split }
spec:
  hosts: [split]
  http:
    - route:
        - { destination: { host: split, subset: a }, weight: 75 }
        - { destination: { host: split, subset: b }, weight: 25 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: noconnect }
spec:
  hosts: [noconnect]
  ports: [{ number: 80, name: http }]
  endpoints: [PLACEHOLDER2]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: noconnect }
spec:
  hosts: [noconnect]
  http:
    - upgradeConfigs: [{ upgradeType: CONNECT, enabled: false }]
      route: [{ destination: { host: noconnect } }]
`;

beforeAll(async () => {
  chat = await startApp('chat');
  appA = await startApp('a');
  appB = await startApp('b');
  inbound = await fx.proxy(serviceYaml('unused', [1]), { appPort: chat.port, service: 'chat' });
  const yaml = serviceYaml('chat', [inbound.ports.inbound], VS)
    .replace('PLACEHOLDER2', `{ address: 127.0.0.1, ports: { http: ${chat.port} } }`)
    .replace('PLACEHOLDER', `{ address: 127.0.0.1, ports: { http: ${appA.port} }, labels: { app: a } }, { address: 127.0.0.1, ports: { http: ${appB.port} }, labels: { app: b } }`);
  outbound = await fx.proxy(yaml, { accessLog: 'all', logger: pino({ level: 'info' }, cap.stream) });
});
afterAll(() => fx.closeAll());

describe('WebSocket through outbound -> inbound', () => {
  it('echoes text, binary and a 1 MB message; ping/pong; the 101 headers arrive verbatim', async () => {
    const ws = open(outbound.ports.outbound);
    const res = await opened(ws);
    expect(res.statusCode).toBe(101);
    expect(res.headers['x-custom-101']).toBe('kept');
    expect(res.headers['x-app']).toBe('chat');
    expect(res.headers['sec-websocket-accept']).toBeTruthy();
    let m = nextMessage(ws);
    ws.send('hello');
    expect((await m).data.toString()).toBe('hello');
    m = nextMessage(ws);
    const bin = Buffer.from([0, 1, 2, 255, 254]);
    ws.send(bin);
    const got = await m;
    expect(got.binary).toBe(true);
    expect(got.data.equals(bin)).toBe(true);
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    m = nextMessage(ws);
    ws.send(big);
    expect((await m).data.equals(big)).toBe(true);
    const pong = new Promise<Buffer>((r) => ws.once('pong', r));
    ws.ping('are-you-there');
    expect((await pong).toString()).toBe('are-you-there');
    const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
    ws.close(4000, 'bye from client');
    expect(await closed).toEqual([4000, 'bye from client']);
  });

  it('a close from the server side reaches the client with its code and reason', async () => {
    const ws = open(outbound.ports.outbound);
    await opened(ws);
    const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString()])));
    ws.send('server-close');
    expect(await closed).toEqual([4001, 'bye from server']);
  });

  it('counts upgrades (stats, Prometheus), and the access log has the 101 with its duration and bytes', async () => {
    const ws = open(outbound.ports.outbound, '/logged');
    await opened(ws);
    const active = await waitFor('active', async () => ((await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_active')) ?? 0) >= 1 || undefined);
    expect(active).toBe(true);
    const m = nextMessage(ws);
    ws.send('x'.repeat(1000));
    await m;
    await new Promise((r) => setTimeout(r, 150));
    const closed = new Promise((r) => ws.once('close', r));
    ws.close();
    await closed;
    const line = await waitFor('access log line', () => cap.lines.find((l) => l.log === 'access' && l.path === '/logged'));
    expect(line.response_code).toBe(101);
    expect(line.duration_ms as number).toBeGreaterThanOrEqual(100);
    expect(line.bytes_received as number).toBeGreaterThan(1000);
    expect(line.bytes_sent as number).toBeGreaterThan(1000);
    await waitFor('upgrades inactive', async () => (await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_active')) === 0 || undefined);
    expect(await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_total')).toBeGreaterThanOrEqual(1);
    expect(await stat(inbound.ports.admin, 'http.inbound.downstream_cx_upgrades_total')).toBeGreaterThanOrEqual(1);
    expect(await stat(outbound.ports.admin, 'cluster.outbound|80||chat;.upstream_cx_upgrades_total')).toBeGreaterThanOrEqual(1);
    expect(await stat(outbound.ports.admin, 'cluster.outbound|80||chat;.upstream_rq_101')).toBeGreaterThanOrEqual(1);
    const prom = (await send(outbound.ports.admin, { path: '/stats/prometheus' })).body;
    expect(prom).toMatch(/istio_requests_total\{[^}]*response_code="101"[^}]*\} [1-9]/);
    expect(prom).toMatch(/envoy_http_downstream_cx_upgrades_total\{[^}]*\} [1-9]/);
    expect(prom).toMatch(/envoy_http_downstream_cx_upgrades_active\{[^}]*\} 0/);
    expect(prom).toMatch(/# TYPE envoy_http_downstream_cx_upgrades_active gauge/);
    expect(prom).toMatch(/envoy_cluster_upstream_cx_upgrades_total\{[^}]*cluster_name="outbound\|80\|\|chat;?"[^}]*\} [1-9]/);
  });

  it('an upstream that refuses the upgrade gets its answer relayed (status, headers, body), and the connection closes', async () => {
    const r = await refused(open(outbound.ports.outbound, '/refuse'));
    expect(r.status).toBe(401);
    expect(r.headers['x-why']).toBe('no token');
    expect(r.body).toBe('no token');
  });

  it('an upgrade the route does not allow is refused with Envoy\'s 403, nothing forwarded; so is an upgrade type nobody enabled', async () => {
    const before = chat.upgrades;
    const r = await refused(open(outbound.ports.outbound, '/no-ws/x'));
    expect(r.status).toBe(403);
    expect(r.body).toBe('');
    const c = await Raw.open(outbound.ports.outbound);
    c.sock.write('GET /other HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: chat\r\n\r\n');
    await waitFor('closed', () => c.ended || c.closed);
    expect(c.text()).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(c.text()).toMatch(/connection: close\r\n/);
    expect(c.text().match(/HTTP\/1\.1/g)!.length).toBe(1); // the bytes after it were never parsed
    expect(chat.upgrades).toBe(before);
    expect(await stat(outbound.ports.admin, 'http.outbound.downstream_rq_ws_on_non_ws_route')).toBeGreaterThanOrEqual(2);
  });

  it('an l5d-dtab override routes upgrades too: /svc/split => /srv/split/b pins every one to b', async () => {
    const a0 = appA.upgrades, b0 = appB.upgrades;
    for (let i = 0; i < 10; i++) {
      const ws = open(outbound.ports.outbound, '/', 'split', { headers: { host: 'split', 'l5d-dtab': '/svc/split => /srv/split/b' } });
      await opened(ws);
      const closed = new Promise((r) => ws.once('close', r));
      ws.close();
      await closed;
    }
    expect(appA.upgrades - a0).toBe(0);
    expect(appB.upgrades - b0).toBe(10);
  });

  it('retries happen only before the 101: a 503 to the upgrade is retried, then the tunnel is up', async () => {
    chat.failNext = 1;
    const ws = open(outbound.ports.outbound, '/flaky-ws');
    const res = await opened(ws);
    expect(res.statusCode).toBe(101);
    expect(chat.failNext).toBe(0);
    const m = nextMessage(ws);
    ws.send('after retry');
    expect((await m).data.toString()).toBe('after retry');
    ws.close();
    expect(await stat(outbound.ports.admin, 'cluster.outbound|80||chat;.upstream_rq_retry')).toBeGreaterThanOrEqual(1);
  });

  it("the route timeout covers the way to the 101 only: a tunnel outlives it", async () => {
    const ws = open(outbound.ports.outbound, '/short');
    await opened(ws);
    await new Promise((r) => setTimeout(r, 2600)); // > the route's 2 s
    const m = nextMessage(ws);
    ws.send('still here');
    expect((await m).data.toString()).toBe('still here');
    const closed = new Promise((r) => ws.once('close', r));
    ws.close();
    await closed;
  });

  it('a weighted route sends upgrades per its weights (75/25)', async () => {
    const a0 = appA.upgrades, b0 = appB.upgrades;
    const N = 200;
    for (let i = 0; i < N; i += 20) {
      await Promise.all(Array.from({ length: 20 }, async () => {
        const ws = open(outbound.ports.outbound, '/', 'split');
        const res = await opened(ws);
        expect(res.statusCode).toBe(101);
        const closed = new Promise((r) => ws.once('close', r));
        ws.close();
        await closed;
      }));
    }
    const a = appA.upgrades - a0, b = appB.upgrades - b0;
    expect(a + b).toBe(N);
    // 75% of 200 = 150; binomial sd ~6.1: 110..190 is more than 6 sd either way.
    expect(a).toBeGreaterThan(110);
    expect(a).toBeLessThan(190);
  });
});

describe('any Upgrade the route allows: half-close, resets, idle timeout', () => {
  async function rawTunnel(path = '/raw'): Promise<Raw> {
    const c = await Raw.open(outbound.ports.outbound);
    c.sock.write(`GET ${path} HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\nearly`);
    await c.until('\r\n\r\n');
    return c;
  }

  it('bytes sent with the upgrade request and after it are relayed; a FIN from the client is passed on and the app can still answer', async () => {
    const c = await rawTunnel();
    expect(c.text()).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/i);
    await c.until('early');
    c.sock.write('ping1');
    await c.until('ping1');
    c.sock.end(); // half-close: our FIN travels to the app, which answers "bye" then closes
    await c.until('bye');
    await waitFor('closed', () => c.closed);
    expect(c.ended).toBe(true);
    expect(c.error).toBeNull();
  });

  it('a FIN from the app is passed on, and the client can still send to it afterwards', async () => {
    const c = await rawTunnel();
    await c.until('early');
    const appSide = chat.raw[chat.raw.length - 1];
    let got = '';
    appSide.on('data', (b: Buffer) => { got += b.toString(); });
    appSide.end('server-done');
    await c.until('server-done');
    await waitFor('FIN at the client', () => c.ended);
    c.sock.write('after-your-fin');
    await waitFor('app got bytes after its FIN', () => got.includes('after-your-fin'));
    c.sock.end();
    await waitFor('closed', () => c.closed);
    expect(c.error).toBeNull();
  });

  it('an RST from the app resets the client; an RST from the client resets the app side; the proxy keeps serving', async () => {
    const c = await rawTunnel();
    await c.until('early');
    const n = chat.raw.length;
    chat.raw[n - 1].resetAndDestroy();
    await waitFor('client closed', () => c.closed);
    expect(c.error?.code).toBe('ECONNRESET');

    const d = await rawTunnel();
    await d.until('early');
    const appSide = chat.raw[chat.raw.length - 1];
    const appClosed = new Promise<NodeJS.ErrnoException | undefined>((r) => { appSide.once('error', (e) => r(e)); appSide.once('close', () => r(undefined)); });
    d.sock.resetAndDestroy();
    const err = await appClosed;
    expect(err === undefined || err.code === 'ECONNRESET').toBe(true);
    expect(appSide.destroyed).toBe(true);
    expect((await send(outbound.ports.outbound, { host: 'chat', path: '/still-up' })).body).toBe('chat GET /still-up');
  });

  it('backpressure: a client that stops reading stops the app\'s writes (nothing piles up in the proxy); all bytes arrive when it reads again', async () => {
    const c = await Raw.open(outbound.ports.outbound);
    let got = 0;
    let headDone = false;
    c.sock.removeAllListeners('data');
    c.sock.on('data', (b: Buffer) => {
      if (!headDone) {
        const i = b.indexOf('\r\n\r\n');
        if (i < 0) return;
        headDone = true;
        got += b.length - i - 4;
        c.sock.pause(); // stop reading: the kernel buffers fill, then the proxy's, then the app must wait
        return;
      }
      got += b.length;
    });
    c.sock.write('GET /raw/flood HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\n');
    const appSide = await waitFor('flood started', () => chat.raw.find((s) => s.bytesWritten > 0 && !s.destroyed && s.writableLength > 0));
    await new Promise((r) => setTimeout(r, 1500));
    // Loopback socket buffers (a few MB per connection, two connections) plus the proxy's small
    // stream buffers: far below the 96 MB the app wanted to write.
    const stalledAt = appSide.bytesWritten;
    expect(stalledAt).toBeLessThan(48 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 500));
    expect(appSide.bytesWritten - stalledAt).toBeLessThan(1024 * 1024); // still stalled
    c.sock.resume();
    await waitFor('all bytes', () => got >= FLOOD || undefined, 60_000);
    expect(got).toBe(FLOOD);
    await waitFor('FIN', () => c.ended, 10_000);
    c.sock.end();
    await waitFor('app side closed', () => appSide.destroyed || undefined);
  }, 90_000);

  it('the route\'s idle timeout closes a quiet tunnel; traffic keeps it open', async () => {
    const c = await rawTunnel('/idle');
    expect(c.text()).toMatch(/^HTTP\/1\.1 101 /);
    // Traffic every 100 ms keeps a 300 ms idle timeout from firing.
    for (let i = 0; i < 6; i++) {
      c.sock.write(`k${i}`);
      await c.until(`k${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(c.closed).toBe(false);
    await waitFor('idle close', () => c.ended || c.closed, 5000);
    expect(await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrade_idle_timeout')).toBeGreaterThanOrEqual(1);
  });
});

describe('the listener\'s stream idle timeout bounds tunnels unless the route sets its own', () => {
  it('300 ms stream idle timeout: a quiet tunnel closes; a route with idleTimeout: 0s keeps it', async () => {
    const p = await fx.proxy(serviceYaml('chat', [chat.port], `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: chat }
spec:
  hosts: [chat]
  http:
    - match: [{ uri: { prefix: /forever } }]
      idleTimeout: 0s
      upgradeConfigs: [{ upgradeType: echo-raw }]
      route: [{ destination: { host: chat } }]
    - upgradeConfigs: [{ upgradeType: echo-raw }]
      route: [{ destination: { host: chat } }]
`), { streamIdleTimeoutMs: 300 });
    const tunnel = async (path: string): Promise<Raw> => {
      const c = await Raw.open(p.ports.outbound);
      c.sock.write(`GET ${path} HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\n`);
      await c.until('\r\n\r\n');
      expect(c.text()).toMatch(/^HTTP\/1\.1 101 /);
      return c;
    };
    const quiet = await tunnel('/quiet');
    const forever = await tunnel('/forever');
    await waitFor('quiet one closed', () => quiet.ended || quiet.closed, 5000);
    await new Promise((r) => setTimeout(r, 600));
    expect(forever.ended || forever.closed).toBe(false);
    forever.sock.write('still');
    await forever.until('still');
    forever.sock.destroy();
  });
});

describe('socket errors mid-tunnel never hurt the proxy', () => {
  it('60 tunnels with data flowing, each ended by an RST or a FIN from a random side at a random moment: 0 tunnels after, the proxy serves on', async () => {
    const before = await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_total') ?? 0;
    let seed = 12345;
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
    await Promise.all(Array.from({ length: 60 }, async (_, i) => {
      const c = await Raw.open(outbound.ports.outbound);
      c.sock.write(`GET /raw/${i} HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: echo-raw\r\n\r\n`);
      await c.until('\r\n\r\n');
      const appSide = await waitFor('app side', () => chat.raw.find((s) => !s.destroyed && !(s as Socket & { taken?: boolean }).taken && (((s as Socket & { taken?: boolean }).taken = true))));
      const chunk = Buffer.alloc(16 * 1024, i);
      const writes = Math.floor(rnd() * 20);
      for (let k = 0; k < writes && !c.closed; k++) { c.sock.write(chunk); if (k % 5 === 0) await new Promise((r) => setImmediate(r)); }
      const how = Math.floor(rnd() * 4);
      if (how === 0) c.sock.resetAndDestroy();
      else if (how === 1) appSide.resetAndDestroy();
      else if (how === 2) c.sock.end();
      else appSide.end();
      await waitFor(`tunnel ${i} gone`, () => c.closed || c.ended || undefined).catch(() => undefined);
      if (!c.closed) c.sock.destroy();
    }));
    await waitFor('0 tunnels', async () => (await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_active')) === 0 || undefined, 20_000);
    await waitFor('0 inbound tunnels', async () => (await stat(inbound.ports.admin, 'http.inbound.downstream_cx_upgrades_active')) === 0 || undefined, 20_000);
    expect((await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_total'))! - before).toBe(60);
    expect((await send(outbound.ports.outbound, { host: 'chat', path: '/after-fuzz' })).body).toBe('chat GET /after-fuzz');
    // The flags say who ended each one: DC (client reset), UC (upstream reset), none (FIN both ways).
    const lines = cap.lines.filter((l) => l.log === 'access' && String(l.path).startsWith('/raw/'));
    expect(lines.length).toBeGreaterThanOrEqual(60);
    expect(lines.every((l) => l.response_code === 101)).toBe(true);
  });

  it('a client that leaves while its upgrade is still waiting for the upstream: no tunnel, nothing left', async () => {
    const c = await Raw.open(outbound.ports.outbound);
    const n = chat.raw.length;
    c.sock.write('GET /hang HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    const appSide = await waitFor('upgrade at the app', () => chat.raw[n]);
    c.sock.resetAndDestroy();
    // The reset travels: both sidecars give up the request, and the app's connection is closed.
    await waitFor('app side closed', () => appSide.destroyed || appSide.readableEnded || undefined);
    await waitFor('rq done', async () => (await stat(outbound.ports.admin, 'http.outbound.downstream_rq_active')) === 0
      && (await stat(inbound.ports.admin, 'http.inbound.downstream_rq_active')) === 0 || undefined);
    expect(await stat(outbound.ports.admin, 'cluster.outbound|80||chat;.upstream_rq_active')).toBe(0);
    const line = await waitFor('access log', () => cap.lines.find((l) => l.log === 'access' && l.path === '/hang'));
    expect(line.response_flags).toBe('DC');
  });
});

describe('CONNECT to a mesh name', () => {
  it('works with undici ProxyAgent (fetch) and EnvHttpProxyAgent (HTTP_PROXY)', async () => {
    const proxy = `http://127.0.0.1:${outbound.ports.outbound}`;
    const agent = new ProxyAgent(proxy);
    const r = await undiciFetch('http://chat/hello', { dispatcher: agent });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('chat GET /hello');
    await agent.close();
    const saved = process.env.HTTP_PROXY;
    process.env.HTTP_PROXY = proxy;
    let env: EnvHttpProxyAgent;
    try { env = new EnvHttpProxyAgent(); } finally { if (saved === undefined) delete process.env.HTTP_PROXY; else process.env.HTTP_PROXY = saved; }
    const r2 = await undiciFetch('http://chat:80/env', { dispatcher: env });
    expect(await r2.text()).toBe('chat GET /env');
    await env.close();
    expect(await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_total')).toBeGreaterThanOrEqual(2);
  });

  it("works with Node's own fetch and HTTP_PROXY (NODE_USE_ENV_PROXY=1), in a child process", async () => {
    const code = "fetch('http://chat/node-fetch').then(async (r) => { console.log(r.status, await r.text()); }).catch((e) => { console.log('error', e.cause?.code ?? e.message); process.exitCode = 1; })";
    const env = { ...process.env, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: `http://127.0.0.1:${outbound.ports.outbound}`, NO_PROXY: '' };
    const out = await new Promise<string>((resolve, reject) => execFile(process.execPath, ['-e', code], { env, timeout: 20_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stdout} ${stderr}`)) : resolve(stdout.trim()))));
    expect(out).toBe('200 chat GET /node-fetch');
  });

  it.skipIf(!existsSync('/usr/bin/curl'))('works with curl -p', async () => {
    const out = await new Promise<string>((resolve, reject) => execFile('curl', ['-sS', '-p', '-x', `http://127.0.0.1:${outbound.ports.outbound}`, 'http://chat/curl'],
      { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve(stdout))));
    expect(out).toBe('chat GET /curl');
  });

  it('the tunnel is raw bytes both ways: 200, then the payload, then FIN', async () => {
    const c = await Raw.open(outbound.ports.outbound);
    c.sock.write('CONNECT chat:80 HTTP/1.1\r\nHost: chat:80\r\n\r\n');
    await c.until('\r\n\r\n');
    expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
    c.sock.write('GET /inside HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n');
    await c.until('chat GET /inside');
    // The app closed after its response: its FIN reaches us; ours closes the tunnel.
    await waitFor('FIN', () => c.ended);
    c.sock.end();
    await waitFor('closed', () => c.closed);
    await waitFor('tunnel gone', async () => (await stat(outbound.ports.admin, 'http.outbound.downstream_cx_upgrades_active')) === 0 || undefined);
  });

  it('to a name the mesh does not know, or to an address, is refused (404 NR): no open proxy; a route can turn CONNECT off (403)', async () => {
    for (const target of ['nowhere.example:443', `127.0.0.1:${outbound.ports.admin}`, `localhost:${chat.port}`]) {
      const c = await Raw.open(outbound.ports.outbound);
      c.sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitFor('closed', () => c.ended || c.closed);
      expect(c.text(), target).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
      expect(c.text().match(/HTTP\/1\.1/g)!.length, target).toBe(1);
    }
    const c = await Raw.open(outbound.ports.outbound);
    c.sock.write('CONNECT noconnect:80 HTTP/1.1\r\nHost: noconnect:80\r\n\r\n');
    await waitFor('closed', () => c.ended || c.closed);
    expect(c.text()).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    // The inbound listener terminates no CONNECT at all (its default allows websocket only).
    const d = await Raw.open(inbound.ports.inbound);
    d.sock.write('CONNECT chat:80 HTTP/1.1\r\nHost: chat:80\r\n\r\n');
    await waitFor('closed', () => d.ended || d.closed);
    expect(d.text()).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
  });
});
