// Bench: one request through two sidecars (client outbound -> server inbound -> app), plaintext
// vs mutual TLS, in the same run. Real `meshlet control` (with its CA) and `meshlet proxy`
// children; the sidecars get identities only in the mTLS arm. At a fixed rate (default 1000 rps,
// 16 connections, our open-loop runner), it reports the latency the two sidecars add over calling
// the app directly (p50, p99) and the CPU both sidecars spent per request (utime+stime from
// /proc, so Linux only). The pools keep connections, so handshakes are paid per connection.
//
//   npx node bench/security/mtls-hop.ts [--seconds 10] [--qps 1000]
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listen, call } from '../../examples/lib/app.ts';
import { startSidecar, stopAll } from '../../examples/lib/mesh.ts';
import { control } from '../../examples/zero-trust/run.ts';
import { runLoad, toFortioJson } from '../load/runner.ts';
import type { ChildProcess } from 'node:child_process';

const arg = (n: string, d: number) => { const i = process.argv.indexOf(`--${n}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const SECONDS = arg('seconds', 10);
const QPS = arg('qps', 1000);
const CONNECTIONS = 16;
const TICK_US = 1e6 / 100; // USER_HZ

function cpuUs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US; // utime, stime (fields 14, 15)
}

async function load(port: number, host: string, seconds: number) {
  const r = await runLoad({ url: `http://127.0.0.1:${port}/get`, connections: CONNECTIONS, qps: QPS, calls: 0, durationMs: seconds * 1000, headers: [['Host', host]], payload: null, timeoutMs: 5000, allowInitialErrors: false,
    // calls spread evenly over the connections (fortio -uniform), not fortio's lock-step bursts
    uniform: true });
  const j = toFortioJson(r, [50, 99]);
  const p = (q: number) => 1000 * j.DurationHistogram.Percentiles!.find((x) => x.Percentile === q)!.Value;
  let errors = 0;
  for (const [code, n] of r.retCodes) if (code !== 200) errors += n;
  return { p50: p(50), p99: p(99), calls: r.calls, errors };
}

const SE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: httpbin, namespace: demo }
spec:
  hosts: [httpbin.demo.svc.cluster.local]
  ports: [{ number: 8000, name: http }]
`;

async function arm(mtls: boolean, appPort: number) {
  const children: ChildProcess[] = [];
  try {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-mtls-'));
    writeFileSync(join(dir, 'services.yaml'), SE);
    const ctl = await control(dir, mkdtempSync(join(tmpdir(), 'meshlet-bench-ca-')), { discovery: 0, api: 0 });
    children.push(ctl.child);
    const url = `http://127.0.0.1:${ctl.ports.discovery}`;
    const id = (sa: string) => (mtls ? ['--service-account', sa] : []);
    const server = await startSidecar('server', ['--control', url, '--node-id', 'server', '--service', 'httpbin', '--app-port', String(appPort), '--namespace', 'demo', '--labels', 'app=httpbin', ...id('httpbin')]);
    children.push(server.child);
    const client = await startSidecar('client', ['--control', url, '--node-id', 'client', '--service', 'sleep', '--namespace', 'demo', ...id('sleep')]);
    children.push(client.child);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && (await call(client.ports.outbound, 'httpbin.demo', '/get', {})).status !== 200) await new Promise((r) => setTimeout(r, 100));
    await load(client.ports.outbound, 'httpbin.demo', Math.min(2, SECONDS)); // warm-up: JIT, pools
    const pids = [server.child.pid!, client.child.pid!];
    const before = pids.map(cpuUs);
    const r = await load(client.ports.outbound, 'httpbin.demo', SECONDS);
    const cpu = pids.map((p, i) => cpuUs(p) - before[i]).reduce((a, b) => a + b, 0);
    const handshakes = mtls ? /listener\.inbound\.ssl\.handshake: (\d+)/.exec(await (await fetch(`http://127.0.0.1:${server.ports.admin}/stats`)).text())?.[1] : '0';
    return { ...r, cpuUsPerReq: cpu / r.calls, handshakes: Number(handshakes ?? 0) };
  } finally {
    stopAll(children);
  }
}

const app = await listen((_q, res) => { res.setHeader('content-type', 'application/json'); res.end('{"ok":true}'); });
const direct = await (async () => { await load(app.port, 'httpbin', 1); return load(app.port, 'httpbin', SECONDS); })();
const plain = await arm(false, app.port);
const mtls = await arm(true, app.port);
app.server.close();

const f = (n: number) => n.toFixed(3);
console.log(`two sidecars, ${QPS} rps open loop, ${CONNECTIONS} connections, ${SECONDS} s per arm; node ${process.version}`);
console.log('| arm | calls | errors | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU µs/req (both sidecars) | inbound TLS handshakes |');
console.log('|---|---|---|---|---|---|---|---|---|');
console.log(`| direct (no sidecar) | ${direct.calls} | ${direct.errors} | ${f(direct.p50)} | ${f(direct.p99)} | - | - | - | - |`);
for (const [name, r] of [['plaintext', plain], ['mutual TLS', mtls]] as const) {
  console.log(`| ${name} | ${r.calls} | ${r.errors} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.p50 - direct.p50)} | ${f(r.p99 - direct.p99)} | ${r.cpuUsPerReq.toFixed(0)} | ${r.handshakes} |`);
}
process.exit(0);
