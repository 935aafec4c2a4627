// WebSocket tunnels through meshlet: what a tunnel costs. A `ws` echo app, and a real `meshlet
// proxy` child process whose outbound listener routes to its own inbound listener in front of the
// app (two sidecar hops, as client sidecar -> server sidecar). Measured, direct vs through meshlet:
//   - round trip of one 1 KiB message at a time on one WebSocket (p50 / p99, µs)
//   - throughput of 64 KiB messages, 16 in flight on one WebSocket (MB/s)
//   - the proxy's RSS idle, with 1 000 open WebSockets, and after they closed (MB)
// Numbers from a shared machine are noisy; the lead re-runs on a quiet one.
// Run: node bench/tunnel.ts [--messages 5000] [--sockets 1000] [--short]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as netServer } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

const BIN = new URL('../bin/meshlet.js', import.meta.url).pathname;
const arg = (name: string, d: number): number => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const SHORT = process.argv.includes('--short');
const MESSAGES = arg('messages', SHORT ? 500 : 5000);
const SOCKETS = arg('sockets', SHORT ? 200 : 1000);
const BULK = SHORT ? 200 : 2000;

function freePort(): Promise<number> {
  return new Promise((r) => { const s = netServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => r(p)); }); });
}

function getJson(port: number, path: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => resolve(JSON.parse(b)));
    }).on('error', reject).end();
  });
}

function open(url: string, host?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, host ? { headers: { host } } : {});
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function pct(sorted: number[], p: number): number { return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]; }

async function roundTrips(ws: WebSocket, n: number): Promise<{ p50: number; p99: number }> {
  const msg = Buffer.alloc(1024, 7);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await new Promise<void>((r) => { ws.once('message', () => r()); ws.send(msg); });
    times.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  times.sort((a, b) => a - b);
  return { p50: pct(times, 0.5), p99: pct(times, 0.99) };
}

async function throughput(ws: WebSocket, n: number): Promise<number> {
  const msg = Buffer.alloc(64 * 1024, 1);
  let sent = 0, got = 0;
  const t = process.hrtime.bigint();
  await new Promise<void>((resolve) => {
    ws.on('message', () => { got++; if (got === n) resolve(); else if (sent < n) { sent++; ws.send(msg); } });
    for (; sent < Math.min(16, n); sent++) ws.send(msg);
  });
  ws.removeAllListeners('message');
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  return (n * msg.length * 2) / s / 1e6; // both directions
}

async function main(): Promise<void> {
  const app = createServer((_q, r) => r.end('ok'));
  const wss = new WebSocketServer({ server: app });
  wss.on('connection', (ws) => { ws.on('message', (d, b) => ws.send(d, { binary: b })); ws.on('error', () => {}); });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as { port: number }).port;
  const inbound = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-tunnel-'));
  const cfg = join(dir, 'mesh.yaml');
  writeFileSync(cfg, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: chat }
spec:
  hosts: [chat]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${inbound} } }]
`);
  const child: ChildProcess = spawn(process.execPath, [BIN, 'proxy', '--config', cfg, '--outbound-port', '0', '--inbound-port', String(inbound), '--admin-port', '0', '--app-port', String(appPort), '--service', 'chat'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = await new Promise<{ outbound: number; admin: number }>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c) => {
      out += c;
      const line = out.split('\n').find((l) => l.includes('"meshlet proxy ready"'));
      if (line) resolve(JSON.parse(line).ports);
    });
    child.once('exit', (code) => reject(new Error(`proxy exited ${code}`)));
  });
  try {
    const rows: string[] = [];
    const direct = await open(`ws://127.0.0.1:${appPort}/`);
    const viaMesh = await open(`ws://127.0.0.1:${ports.outbound}/`, 'chat');
    await roundTrips(direct, 200); await roundTrips(viaMesh, 200); // warm-up
    const rd = await roundTrips(direct, MESSAGES);
    const rm = await roundTrips(viaMesh, MESSAGES);
    const td = await throughput(direct, BULK);
    const tm = await throughput(viaMesh, BULK);
    rows.push(`| direct | ${rd.p50.toFixed(0)} | ${rd.p99.toFixed(0)} | ${td.toFixed(0)} |`);
    rows.push(`| meshlet, 2 hops | ${rm.p50.toFixed(0)} | ${rm.p99.toFixed(0)} | ${tm.toFixed(0)} |`);
    direct.close(); viaMesh.close();
    const rss = async (): Promise<number> => Number((await getJson(ports.admin, '/memory')).rss) / 1024 / 1024;
    await new Promise((r) => setTimeout(r, 500));
    const idle = await rss();
    const many: WebSocket[] = [];
    for (let i = 0; i < SOCKETS; i += 100) many.push(...await Promise.all(Array.from({ length: Math.min(100, SOCKETS - i) }, () => open(`ws://127.0.0.1:${ports.outbound}/`, 'chat'))));
    const open1000 = await rss();
    await Promise.all(many.map((ws) => new Promise((r) => { ws.once('close', r); ws.close(); })));
    await new Promise((r) => setTimeout(r, 2000));
    const after = await rss();
    console.log(`node ${process.version} · WebSocket echo · ${MESSAGES} round trips of 1 KiB · ${BULK} × 64 KiB, 16 in flight`);
    console.log('| path | round trip p50 µs | p99 µs | throughput MB/s (both ways) |');
    console.log('|---|---|---|---|');
    for (const r of rows) console.log(r);
    console.log('');
    console.log(`| proxy RSS | idle | ${SOCKETS} WebSockets open (2 hops: ${SOCKETS * 4} proxy sockets) | after they closed |`);
    console.log('|---|---|---|---|');
    console.log(`| MB | ${idle.toFixed(1)} | ${open1000.toFixed(1)} (${(((open1000 - idle) * 1024) / SOCKETS).toFixed(1)} KB per WebSocket) | ${after.toFixed(1)} |`);
  } finally {
    child.kill('SIGKILL');
    for (const c of wss.clients) c.terminate();
    wss.close();
    app.closeAllConnections();
    app.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
