// `npx node bench/h2.ts [--seconds 5] [--qps 1000]`: HTTP/2 and gRPC through meshlet, one run.
//   1. downstream HTTP/1.1 vs h2c through one sidecar to an HTTP/1.1 upstream (bench/upstream.ts);
//   2. gRPC unary (grpc.health.v1.Health/Check, bench/peers/grpc-health.ts on grpc-js) direct, through
//      one sidecar (outbound) and through two (outbound -> inbound, h2c on both hops).
// Every server and sidecar is its own process; the load is open-loop at --qps over 8 connections
// (HTTP/1.1: an undici Pool of 8; h2c/gRPC: 8 sessions from bench/load/h2-transport.ts), latency
// from each call's intended start (no coordinated omission). Columns: p50/p99 (ms), the p50/p99
// added over the direct row, and the sidecars' CPU µs per call (/proc, all sidecar processes).
// This machine is shared: numbers are noisy; compare rows of one run. With h2load installed, a
// closed-loop h2load line (h1 vs h2c) is printed too.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { build } from 'hdr-histogram-js';
import { cpuMicros, jsonPort, startProc, which, type Proc } from './lib/procs.ts';
import { scratchDir } from './lib/arms.ts';
import { h2Transport } from './load/h2-transport.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const NODE = process.execPath;
const arg = (k: string, d: number) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const SECONDS = arg('seconds', 5);
const QPS = arg('qps', 1000);
const CONNS = 8;

type Call = () => Promise<boolean>;

/** Open loop: call i starts at i/qps; latency from that intended start. */
async function openLoop(calls: Call[], qps: number, seconds: number): Promise<{ p50: number; p99: number; n: number; errors: number }> {
  const h = build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const total = Math.round(qps * seconds);
  const t0 = performance.now();
  let errors = 0;
  let i = 0;
  const inflight = new Set<Promise<void>>();
  while (i < total) {
    const due = t0 + (i * 1000) / qps;
    const now = performance.now();
    if (due > now) await new Promise((r) => setTimeout(r, Math.max(0, due - now)));
    // Everything due by now starts now (a late timer does not thin the load).
    while (i < total && t0 + (i * 1000) / qps <= performance.now()) {
      const start = t0 + (i * 1000) / qps;
      const c = calls[i % calls.length];
      const p = c().then((ok) => { if (!ok) errors++; h.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000))); }, () => { errors++; });
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      i++;
    }
  }
  await Promise.all(inflight);
  return { p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, n: total, errors };
}

function yaml(host: string, port: number, portName: string): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: b }
spec:
  hosts: [${host}]
  ports: [{ number: 80, name: ${portName} }]
  endpoints: [{ address: 127.0.0.1, ports: { ${portName}: ${port} } }]
`;
}

async function sidecar(dir: string, name: string, conf: string, extra: string[] = []): Promise<{ proc: Proc; outbound: number; inbound: number }> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, conf);
  const p = await startProc(name, NODE, [join(ROOT, 'bin/meshlet.js'), 'proxy', '--config', file, '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0',
    '--log-level', 'warn', '--access-log', 'off', ...extra], {
    ready: (l) => { if (!l.includes('"meshlet proxy ready"')) return null; try { return JSON.parse(l).ports.outbound as number; } catch { return null; } },
  });
  const j = JSON.parse(p.readyLine) as { ports: { outbound: number; inbound: number } };
  return { proc: p, outbound: j.ports.outbound, inbound: j.ports.inbound };
}

interface Row { name: string; p50: number; p99: number; n: number; errors: number; cpuUs: number | null }

async function measure(name: string, calls: Call[], pids: number[]): Promise<Row> {
  // Warm up: connections made, JIT warm, not measured.
  await openLoop(calls, QPS, Math.min(1, SECONDS / 4));
  const c0 = pids.reduce((s, p) => s + cpuMicros(p), 0);
  const r = await openLoop(calls, QPS, SECONDS);
  const c1 = pids.reduce((s, p) => s + cpuMicros(p), 0);
  return { name, ...r, cpuUs: pids.length ? (c1 - c0) / r.n : null };
}

function table(title: string, rows: Row[]): string {
  const base = rows[0];
  const f = (x: number) => x.toFixed(3);
  const lines = [`### ${title} (${QPS} calls/s, ${SECONDS} s, ${CONNS} connections)`, '',
    '| arm | p50 ms | p99 ms | added p50 ms | added p99 ms | sidecar CPU µs/call | calls | errors |', '|---|---:|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    lines.push(`| ${r.name} | ${f(r.p50)} | ${f(r.p99)} | ${r === base ? '—' : f(r.p50 - base.p50)} | ${r === base ? '—' : f(r.p99 - base.p99)} | ${r.cpuUs === null ? '—' : r.cpuUs.toFixed(1)} | ${r.n} | ${r.errors} |`);
  }
  return lines.join('\n');
}

const dir = scratchDir();
const procs: Proc[] = [];
try {
  const up = await startProc('upstream', NODE, [join(ROOT, 'bench/upstream.ts'), '--port', '0'], { ready: jsonPort });
  procs.push(up);
  const health = await startProc('grpc-health', NODE, [join(ROOT, 'bench/peers/grpc-health.ts'), '--port', '0'], { ready: jsonPort });
  procs.push(health);

  // 1. HTTP/1.1 vs h2c downstream, one sidecar, HTTP/1.1 upstream.
  const s1 = await sidecar(dir, 'http', yaml('upstream.bench', up.port, 'http'));
  procs.push(s1.proc);
  const pool = new Pool(`http://127.0.0.1:${s1.outbound}`, { connections: CONNS, pipelining: 1 });
  const h1Call: Call = async () => {
    const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'upstream.bench' } });
    await r.body.dump();
    return r.statusCode === 200;
  };
  const h2s = Array.from({ length: CONNS }, () => h2Transport({ url: `http://127.0.0.1:${s1.outbound}/`, headers: [['host', 'upstream.bench']] }));
  const h2Calls: Call[] = h2s.map((t) => async () => (await t.call()).status === 200);
  const directPool = new Pool(`http://127.0.0.1:${up.port}`, { connections: CONNS, pipelining: 1 });
  const directCall: Call = async () => { const r = await directPool.request({ path: '/', method: 'GET' }); await r.body.dump(); return r.statusCode === 200; };
  const httpRows = [
    await measure('direct HTTP/1.1', [directCall], []),
    await measure('meshlet, HTTP/1.1 downstream', [h1Call], [s1.proc.pid]),
    await measure('meshlet, h2c downstream', h2Calls, [s1.proc.pid]),
  ];
  await pool.close();
  await directPool.close();
  for (const t of h2s) await t.close();

  // 2. gRPC unary: direct, one sidecar, two sidecars.
  const b = await sidecar(dir, 'grpc-b', yaml('none', 9, 'http'), ['--app-port', String(health.port), '--service', 'health']);
  procs.push(b.proc);
  const a1 = await sidecar(dir, 'grpc-a1', yaml('health', health.port, 'grpc'));
  procs.push(a1.proc);
  const a2 = await sidecar(dir, 'grpc-a2', yaml('health', b.inbound, 'grpc'));
  procs.push(a2.proc);
  const grpcArm = (port: number, host?: string) => Array.from({ length: CONNS }, () => h2Transport({ url: `http://127.0.0.1:${port}`, grpc: { service: '' }, headers: host ? [['host', host]] : [] }));
  const direct = grpcArm(health.port);
  const one = grpcArm(a1.outbound, 'health');
  const two = grpcArm(a2.outbound, 'health');
  const ok = (ts: ReturnType<typeof grpcArm>): Call[] => ts.map((t) => async () => { const r = await t.call(); return r.grpcStatus === 0 && r.serving === 1; });
  const grpcRows = [
    await measure('gRPC direct', ok(direct), []),
    await measure('gRPC, one sidecar', ok(one), [a1.proc.pid]),
    await measure('gRPC, two sidecars', ok(two), [a2.proc.pid, b.proc.pid]),
  ];
  for (const t of [...direct, ...one, ...two]) await t.close();

  console.log(`\nnode ${process.version}; shared machine: compare rows within this run only.\n`);
  console.log(table('HTTP/1.1 vs h2c downstream through one sidecar (HTTP/1.1 upstream, 1 KB bodies)', httpRows));
  console.log('');
  console.log(table('gRPC unary (grpc.health.v1.Health/Check, grpc-js server)', grpcRows));

  const h2load = which('h2load');
  if (h2load) {
    // Closed loop, for throughput: the same sidecar, HTTP/1.1 vs h2c (h2load's own clients).
    const n = String(Math.max(2000, QPS * SECONDS));
    const run = (extra: string[]) => {
      const out = execFileSync(h2load, ['-n', n, '-c', String(CONNS), '-H', 'host: upstream.bench', ...extra, `http://127.0.0.1:${s1.outbound}/`], { encoding: 'utf8', timeout: 120_000 });
      return /finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1] ?? '?';
    };
    console.log(`\nh2load closed loop, ${n} requests, ${CONNS} connections: HTTP/1.1 ${run(['--h1'])} req/s; h2c (1 stream/conn) ${run(['-m', '1'])} req/s; h2c (10 streams/conn) ${run(['-m', '10'])} req/s`);
  }
} finally {
  for (const p of procs.reverse()) await p.stop();
}
