// 1 000 concurrent WebSockets through a `meshlet proxy` process (its outbound listener -> its own
// inbound listener -> the app: two sidecar hops, four proxy sockets per WebSocket), all opened,
// used and closed: the proxy must end with 0 tunnels, no sockets left (its /memory open handles
// and /stats) and RSS back near where it started. Bounds are loose: the machine is shared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { deadPort, send, serviceYaml, startProxyProcess, stat, writeConfig, type ProxyProcess } from '../helpers.ts';

let app: Server;
let wss: WebSocketServer;
let proxy: ProxyProcess;
/** The app's side of each WebSocket, by the first message it got. */
const byMessage = new Map<string, WebSocket>();

interface Memory { rss: string; active_resources: Record<string, number> }
async function memory(): Promise<Memory> { return JSON.parse((await send(proxy.ports.admin, { path: '/memory' })).body) as Memory; }

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  app = createServer((_req, res) => res.end('ok'));
  wss = new WebSocketServer({ server: app });
  wss.on('connection', (ws) => {
    ws.on('message', (d, bin) => { byMessage.set(d.toString(), ws); ws.send(d, { binary: bin }); });
    ws.on('error', () => {});
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as { port: number }).port;
  const inboundPort = await deadPort();
  const file = writeConfig(serviceYaml('chat', [inboundPort]));
  proxy = await startProxyProcess(['--config', file, '--inbound-port', String(inboundPort), '--app-port', String(appPort), '--service', 'chat']);
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  for (const c of wss?.clients ?? []) c.terminate();
  wss?.close();
  app?.closeAllConnections();
  await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
});

function openOne(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.ports.outbound}/`, { headers: { host: 'chat' } });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

describe('1 000 concurrent WebSockets', () => {
  it('open, echo, close: 0 tunnels, 0 sockets, RSS near baseline afterwards', async () => {
    // Warm-up round so the baseline includes what a first tunnel allocates once (code, pools).
    const warm = await Promise.all(Array.from({ length: 20 }, openOne));
    for (const ws of warm) ws.close();
    await waitFor('warm-up closed', async () => ((await stat(proxy.ports.admin, 'http.outbound.downstream_cx_upgrades_active')) === 0 ? true : undefined), 20_000);
    const base = Number((await memory()).rss);

    const N = 1000;
    const all: WebSocket[] = [];
    for (let i = 0; i < N; i += 100) all.push(...await Promise.all(Array.from({ length: 100 }, openOne)));
    expect(await stat(proxy.ports.admin, 'http.outbound.downstream_cx_upgrades_active')).toBe(N);
    expect(await stat(proxy.ports.admin, 'http.inbound.downstream_cx_upgrades_active')).toBe(N);
    const during = await memory();
    expect(during.active_resources.TCPSocketWrap).toBeGreaterThanOrEqual(4 * N);
    // Every socket carries a message both ways while all are open.
    await Promise.all(all.map((ws, i) => new Promise<void>((resolve, reject) => {
      ws.once('message', (d) => (d.toString() === `m${i}` ? resolve() : reject(new Error(`wrong echo on ${i}`))));
      ws.send(`m${i}`);
    })));
    // Half are closed by the client, half by the app.
    const closed = all.map((ws) => new Promise<void>((r) => ws.once('close', () => r())));
    all.forEach((ws, i) => { if (i % 2 === 0) ws.close(1000, 'client'); else byMessage.get(`m${i}`)!.close(1000, 'server'); });
    await Promise.all(closed);

    await waitFor('0 tunnels', async () => ((await stat(proxy.ports.admin, 'http.outbound.downstream_cx_upgrades_active')) === 0
      && (await stat(proxy.ports.admin, 'http.inbound.downstream_cx_upgrades_active')) === 0 ? true : undefined), 60_000);
    expect(await stat(proxy.ports.admin, 'http.outbound.downstream_cx_upgrades_total')).toBe(N + 20);
    // Sockets: only the admin connection of this very request may remain (plus listeners, which are TCPServerWrap).
    const after = await waitFor('sockets gone', async () => {
      const m = await memory();
      return (m.active_resources.TCPSocketWrap ?? 0) <= 2 ? m : undefined;
    }, 30_000);
    expect(await stat(proxy.ports.admin, 'cluster.outbound|80||chat;.upstream_cx_active')).toBe(0);
    expect(await stat(proxy.ports.admin, 'cluster.outbound|80||chat;.upstream_rq_active')).toBe(0);
    expect(await stat(proxy.ports.admin, 'http.outbound.downstream_cx_active')).toBe(0);
    // RSS: back within 40 MB of the baseline (1 000 tunnels' buffers freed; GC is lazy, so loose).
    const grown = (Number(after.rss) - base) / 1024 / 1024;
    expect(grown).toBeLessThan(40);
  }, 180_000);
});
