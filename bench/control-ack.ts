// ACK latency of the control plane: time from an ops weights change (the POST /v1/weights that
// `meshlet ctl weights` sends) until every one of N simulated subscribed proxies has ACKed the
// new version, for N = 1, 50, 200; and the control server's RSS with 200 subscribers.
// The control server is a real `meshlet control` child process; the simulated proxies live in
// this process and do what a proxy does per snapshot: parse the line, check the snapshot's shape
// (proxy/xds/validate-snapshot.ts) and POST the ACK. Run: node bench/control-ack.ts [--rounds 7]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotProblems } from '../proxy/xds/validate-snapshot.ts';

const BIN = new URL('../bin/meshlet.js', import.meta.url).pathname;
const ROUNDS = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 7;
const SIZES = [1, 50, 200];

const MESH = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 10.0.0.1, labels: { version: v1 } }
    - { address: 10.0.0.2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - route:
        - { destination: { host: reviews, subset: v1 }, weight: 50 }
        - { destination: { host: reviews, subset: v2 }, weight: 50 }
`;

const ackAgent = new Agent({ keepAlive: true, maxSockets: 256 });

function post(port: number, path: string, body: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const r = request({ host: '127.0.0.1', port, path, method: 'POST', agent: ackAgent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(b)) : reject(new Error(`${path}: ${res.statusCode} ${b}`))));
    });
    r.on('error', reject);
    r.end(text);
  });
}

interface Sim { id: string; acked: Map<string, number>; close(): void }

function simulate(port: number, id: string, onAck: () => void): Promise<Sim> {
  return new Promise((resolve, reject) => {
    const acked = new Map<string, number>();
    const r = request({ host: '127.0.0.1', port, path: '/v1/discovery', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`stream ${id}: ${res.statusCode}`)); return; }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const m = JSON.parse(line);
          if (m.type !== 'snapshot') continue;
          const problems = snapshotProblems(m.resources[0]);
          if (problems.length) throw new Error(problems.join('; '));
          post(port, '/v1/ack', { node: { id }, version_info: m.version_info, response_nonce: m.nonce })
            .then(() => { acked.set(m.version_info, performance.now()); onAck(); }, (e) => console.error(e.message));
        }
      });
      resolve({ id, acked, close: () => r.destroy() });
    });
    r.on('error', reject);
    r.end(JSON.stringify({ node: { id, service: 'bench', labels: { n: id } } }));
  });
}

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-'));
  writeFileSync(join(dir, 'mesh.yaml'), MESH);
  const child = spawn(process.execPath, [BIN, 'control', '--config-dir', dir, '--port', '0', '--api-port', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (c) => { out += c; });
  const ports = await new Promise<{ discovery: number; api: number }>((resolve, reject) => {
    const t = setInterval(() => {
      const line = out.split('\n').find((l) => l.includes('"meshlet control ready"'));
      if (line) { clearInterval(t); resolve(JSON.parse(line).ports); }
      if (child.exitCode !== null) { clearInterval(t); reject(new Error(out)); }
    }, 20);
  });
  const rssIdle = rssMb(child.pid!);
  const sims: Sim[] = [];
  let waiter: (() => void) | null = null;
  const onAck = () => waiter?.();
  const results: Array<{ n: number; p50: number; max: number; rss: number }> = [];
  let flip = false;
  try {
    for (const n of SIZES) {
      while (sims.length < n) sims.push(await simulate(ports.discovery, `sim-${sims.length}`, onAck));
      const current = async () => ((await (await fetch(`http://127.0.0.1:${ports.api}/v1/config`)).json()) as { version: string }).version;
      const allAcked = (v: string) => sims.every((s) => s.acked.has(v));
      const v0 = await current();
      await new Promise<void>((r) => { waiter = () => { if (allAcked(v0)) r(); }; waiter(); });
      const lat: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        flip = !flip;
        const t0 = performance.now();
        const res = await post(ports.api, '/v1/weights', { host: 'reviews', weights: flip ? { v1: 20, v2: 80 } : { v1: 80, v2: 20 } });
        const v = res.version as string;
        await new Promise<void>((r) => { waiter = () => { if (allAcked(v)) r(); }; waiter(); });
        lat.push(Math.max(...sims.map((s) => s.acked.get(v)!)) - t0);
      }
      lat.sort((a, b) => a - b);
      results.push({ n, p50: lat[Math.floor(lat.length / 2)], max: lat[lat.length - 1], rss: rssMb(child.pid!) });
    }
  } finally {
    for (const s of sims) s.close();
    ackAgent.destroy();
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`control-ack: ${ROUNDS} weight changes per size; latency = POST /v1/weights sent -> last simulated proxy's ACK answered`);
  console.log('proxies  p50 ms   max ms   control RSS MB');
  for (const r of results) console.log(`${String(r.n).padStart(7)}  ${r.p50.toFixed(1).padStart(6)}  ${r.max.toFixed(1).padStart(7)}  ${r.rss.toFixed(1).padStart(8)}`);
  console.log(`control RSS idle (no proxies): ${rssIdle.toFixed(1)} MB; node ${process.version}`);
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
