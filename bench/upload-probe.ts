// Does a bulk upload starve other traffic? A probe sends sequential GETs through the proxy (one
// keep-alive connection) first alone, then while two uploads stream endless chunked bodies as fast
// as they can through the same proxy. Reported: the probe's latency percentiles and its worst
// one-second p99 in each phase, and the throughput of one upload alone (what fairness costs it).
// Every party is its own process (upstream, proxy, uploaders), so only the proxy's event loop is
// shared, as in a pod.
//
//   npx node bench/upload-probe.ts                    # this checkout
//   npx node bench/upload-probe.ts --root <checkout>  # another meshlet checkout (before/after)
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, minimalYaml } from './lib/arms.ts';
import { jsonPort, startProc } from './lib/procs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const ROOT = args.get('root') ?? fileURLToPath(new URL('../', import.meta.url));
const ALONE_S = Number(args.get('alone') ?? 3);
const LOADED_S = Number(args.get('loaded') ?? 8);
const NODE = process.execPath;

// Upstream: drains every body, answers small bodies with a short 200 (uploads never end).
const UPSTREAM = `
const s = require('http').createServer((req, res) => { req.on('data', () => {}); req.on('end', () => res.end('ok')); });
s.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: s.address().port }) + '\\n'));`;

// Uploader: one connection, an endless chunked POST written as fast as the proxy takes it.
const UPLOADER = `
const port = Number(process.argv[1]);
const c = require('net').connect(port, '127.0.0.1', () => {
  c.write('POST /upload HTTP/1.1\\r\\nhost: ${HOST}\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n');
  const chunk = Buffer.concat([Buffer.from('10000\\r\\n'), Buffer.alloc(65536, 'u'), Buffer.from('\\r\\n')]);
  const pump = () => { while (c.write(chunk)) {} };
  c.on('drain', pump);
  pump();
  process.stdout.write(JSON.stringify({ port }) + '\\n');
});
c.on('error', () => process.exit(0));`;

// One upload of a fixed size through the proxy, timed to its response: the price of fairness.
const TIMED_UPLOAD = `
const [port, mb] = process.argv.slice(1).map(Number);
const c = require('net').connect(port, '127.0.0.1', () => {
  const t0 = performance.now();
  c.write('POST /timed HTTP/1.1\\r\\nhost: ${HOST}\\r\\ncontent-length: ' + mb * 1048576 + '\\r\\n\\r\\n');
  const chunk = Buffer.alloc(1048576, 't');
  let left = mb;
  const pump = () => { while (left > 0) { left--; if (!c.write(chunk)) return; } };
  c.on('drain', pump);
  pump();
  c.on('data', () => { process.stdout.write(JSON.stringify({ ms: performance.now() - t0 }) + '\\n'); c.destroy(); });
});`;

async function timedUpload(port: number, mb: number): Promise<number> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, ['-e', TIMED_UPLOAD, String(port), String(mb)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.on('close', () => { try { resolve((mb / (JSON.parse(out) as { ms: number }).ms) * 1000); } catch (e) { reject(e); } });
  });
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function probe(port: number, seconds: number): Promise<{ n: number; p50: number; p99: number; max: number; worstSecondP99: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const lat: number[] = [];
  const perSecond: number[][] = [];
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const r = request({ host: '127.0.0.1', port, path: '/probe', agent, headers: { host: HOST } }, (res) => { res.resume(); res.on('end', resolve); });
      r.on('error', reject);
      r.end();
    });
    const ms = performance.now() - t0;
    lat.push(ms);
    ((perSecond[Math.floor((t0 - start) / 1000)] ??= [])).push(ms);
  }
  agent.destroy();
  const sorted = [...lat].sort((a, b) => a - b);
  const worst = Math.max(...perSecond.filter((s) => s.length > 0).map((s) => pct(s.sort((a, b) => a - b), 99)));
  return { n: lat.length, p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted[sorted.length - 1], worstSecondP99: worst };
}

const dir = mkdtempSync(join(tmpdir(), 'meshlet-upload-probe-'));
const upstream = await startProc('upstream', NODE, ['-e', UPSTREAM], { ready: jsonPort });
const file = join(dir, 'mesh.yaml');
writeFileSync(file, minimalYaml(upstream.port));
const proxy = await startProc('meshlet', NODE, [join(ROOT, 'bin/meshlet.js'), 'proxy', '--config', file, '--outbound-port', '0', '--inbound-port', '0',
  '--admin-port', '0', '--log-level', 'warn'], { ready: (l) => (l.includes('"meshlet proxy ready"') ? jsonPort(l) : null) });
const uploaders = [];
try {
  const mbps = await timedUpload(proxy.port, Number(args.get('upload-mb') ?? 512));
  const alone = await probe(proxy.port, ALONE_S);
  for (let i = 0; i < 2; i++) uploaders.push(await startProc(`uploader${i}`, NODE, ['-e', UPLOADER, String(proxy.port)], { ready: jsonPort }));
  await new Promise((r) => setTimeout(r, 500)); // the uploads reach full speed
  const loaded = await probe(proxy.port, LOADED_S);
  const f = (x: number) => x.toFixed(2);
  console.log(`meshlet at ${ROOT}`);
  console.log('| phase | probes | p50 ms | p99 ms | max ms | worst 1 s p99 ms |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, r] of [['alone', alone], ['2 bulk uploads', loaded]] as const) console.log(`| ${name} | ${r.n} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.max)} | ${f(r.worstSecondP99)} |`);
  console.log(`\none upload alone: ${mbps.toFixed(0)} MB/s through the proxy`);
} finally {
  for (const u of uploaders) await u.stop();
  await proxy.stop();
  await upstream.stop();
}
