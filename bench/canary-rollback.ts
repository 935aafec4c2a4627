// Fast rollback, measured end to end with real processes: the control server (in-process), one
// `meshlet proxy` (the callers' sidecar, posting edge reports every --report-interval), a good v1
// and a v2 that answers 500 to everything. 100 rps of user traffic; the Canary steps to 10 % and
// its analysis interval is long (30 s), so what ends the run is the data-plane signal (fast
// rollback: the candidate's success rate over the latest reports), not an interval check.
//   rollback time: the first request v2 answered -> the last one it answered (users' view)
//   failed requests: user requests that failed meanwhile
// Usage: npx node bench/canary-rollback.ts [--report-intervals 0.5,1] [--runs 1]
// Numbers from a shared machine are noisy; the lead re-runs on a quiet one.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControl } from '../control/main.ts';
import { createLogger } from '../proxy/telemetry/log.ts';

const argv = process.argv;
const opt = (n: string, d: string) => { const i = argv.indexOf(`--${n}`); return i > 0 ? argv[i + 1] : d; };
const INTERVALS = opt('report-intervals', '0.5,1').split(',').map(Number);
const RUNS = Number(opt('runs', '1'));
const BIN = new URL('../bin/meshlet.js', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function app(fail: boolean, hits: number[]) {
  const s = createServer((req, res) => { req.resume(); hits.push(Date.now()); res.writeHead(fail ? 500 : 200).end(fail ? 'v2' : 'v1'); });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { s, port: (s.address() as { port: number }).port };
}

async function once(reportS: number): Promise<{ rollbackMs: number; failed: number; total: number; detectMs: number }> {
  const v2hits: number[] = [];
  const a = await app(false, []);
  const b = await app(true, v2hits);
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-canary-'));
  writeFileSync(join(dir, 'svc.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${a.port} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${b.port} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec: { host: reviews, subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }] }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec: { hosts: [reviews], http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }] }
`);
  const control = await startControl({ configDir: dir, port: 0, apiPort: 0, logger: createLogger('error', 'control'), dir: { debounceMs: 20, settleMs: 20, pollMs: 500 } });
  const proxy = spawn(process.execPath, [BIN, 'proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--control', `http://127.0.0.1:${control.ports.discovery}`,
    '--node-id', 'front', '--report-interval', String(reportS), '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proxy.stdout!.on('data', (c) => { out += c; });
  let port = 0;
  for (let i = 0; i < 300 && !port; i++) { const l = out.split('\n').find((x) => x.includes('"meshlet proxy ready"')); if (l) port = JSON.parse(l).ports.outbound; else await sleep(50); }
  if (!port) throw new Error(`proxy not ready: ${out}`);
  await sleep(1000);
  // 100 rps of users, open loop.
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  let failed = 0, total = 0;
  const timer = setInterval(() => {
    const r = request({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'reviews' } }, (res) => { res.resume(); res.on('end', () => { total++; if (res.statusCode !== 200) failed++; }); });
    r.on('error', () => { total++; failed++; });
    r.end();
  }, 10);
  await sleep(1000);
  writeFileSync(join(dir, 'canary.yaml'), `apiVersion: meshlet.io/v1alpha1
kind: Canary
metadata: { name: reviews }
spec:
  targetRef: { kind: Service, name: reviews }
  canary: { subset: v2 }
  analysis: { interval: 30s, threshold: 5, stepWeights: [10, 50], metrics: [{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 30s }] }
`);
  // The first tick starts the run (weight 0); let it step to 10 at once rather than after 30 s.
  let started = false;
  for (let i = 0; i < 400; i++) {
    const c = control.canaries.list()[0];
    if (c?.status.phase === 'Progressing' && !started) { started = true; (control.canaries as any).runs.values().next().value.nextAt = 0; }
    if (c?.status.phase === 'Failed') break;
    await sleep(25);
  }
  const c = control.canaries.list()[0];
  const rolledBackAt = Date.parse(c.events.find((e) => e.message.startsWith('Rolling back'))?.time ?? 'x');
  await sleep(1500);
  clearInterval(timer);
  agent.destroy();
  proxy.kill('SIGTERM');
  await control.close();
  a.s.close(); b.s.close();
  if (c.status.phase !== 'Failed') throw new Error(`not rolled back: ${JSON.stringify(c.events)}`);
  return { rollbackMs: v2hits[v2hits.length - 1] - v2hits[0], detectMs: rolledBackAt - v2hits[0], failed, total };
}

console.log('| report interval | runs | candidate first hit → rollback decided (ms) | first → last request to the candidate (ms) | user requests failed |');
console.log('|---|---|---|---|---|');
for (const r of INTERVALS) {
  const res: Array<Awaited<ReturnType<typeof once>>> = [];
  for (let i = 0; i < RUNS; i++) res.push(await once(r));
  const med = (k: 'rollbackMs' | 'failed' | 'detectMs') => res.map((x) => x[k]).sort((a, b) => a - b)[Math.floor(res.length / 2)];
  console.log(`| ${r} s | ${RUNS} | ${med('detectMs')} | ${med('rollbackMs')} | ${med('failed')} (of ${res[0].total}) |`);
}
process.exit(0);
