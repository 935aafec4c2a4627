// Progressive delivery demo: `meshlet control` (a child process, ops API on :15014 with the mesh
// page) runs two automated canaries of "reviews" from a Canary resource in its config directory:
//   1. v2 (good) appears -> "New revision detected!" -> 20 % … 100 % -> Succeeded (v2 is the primary)
//   2. v3 (bad: 30 % of answers are 503) appears -> failed checks -> rolled back -> Failed
// A caller's sidecar sends ~40 rps of user traffic; its edge reports (every 0.5 s) are the metrics.
// Run: `npx node examples/canary/run.ts` (about two minutes; examples/canary/README.md says what to watch).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { listen } from '../lib/app.ts';
import { startControlProc, startSidecar, stopAll } from '../lib/mesh.ts';

const API_PORT = Number(process.env.CANARY_API_PORT ?? 15014);
const DISCOVERY_PORT = Number(process.env.CANARY_DISCOVERY_PORT ?? 15010);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function app(version: string, fail5xxPercent: number) {
  let n = 0;
  return listen((req, res) => {
    req.resume();
    n++;
    const fail = fail5xxPercent > 0 && n % Math.round(100 / fail5xxPercent) === 0;
    res.writeHead(fail ? 503 : 200, { 'content-type': 'text/plain', 'x-version': version });
    res.end(`reviews ${version}\n`);
  });
}

function mesh(eps: Array<{ version: string; port: number }>): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
  endpoints:
${eps.map((e) => `    - { address: 127.0.0.1, ports: { http: ${e.port} }, labels: { version: ${e.version} } }`).join('\n')}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }, { name: v3, labels: { version: v3 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]
`;
}

const CANARY = `# Flagger's Canary, run by the control server from the sidecars' reports (no Prometheus).
apiVersion: meshlet.io/v1alpha1
kind: Canary
metadata: { name: reviews }
spec:
  targetRef: { kind: Service, name: reviews }
  analysis:
    interval: 3s
    threshold: 2
    stepWeight: 20
    maxWeight: 100
    metrics:
      - { name: request-success-rate, thresholdRange: { min: 99 }, interval: 6s }
      - { name: request-duration, thresholdRange: { max: 500 }, interval: 6s }
`;

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-canary-demo-'));
  const [v1, v2, v3] = await Promise.all([app('v1', 0), app('v2', 0), app('v3', 30)]);
  writeFileSync(join(dir, 'mesh.yaml'), mesh([{ version: 'v1', port: v1.port }]));
  writeFileSync(join(dir, 'canary.yaml'), CANARY);
  const control = await startControlProc(dir, { discovery: DISCOVERY_PORT, api: API_PORT });
  children.push(control.child);
  const front = await startSidecar('front', ['--control', `http://127.0.0.1:${control.ports.discovery}`, '--node-id', 'productpage', '--report-interval', '0.5']);
  children.push(front.child);
  const stop = () => { stopAll(children); v1.server.close(); v2.server.close(); v3.server.close(); };
  process.on('SIGINT', () => { stop(); process.exit(130); });

  const api = `http://127.0.0.1:${control.ports.api}`;
  console.log(`config dir ${dir}\nmesh page  ${api}/   (the Canaries panel: weight over time, checks, events)`);
  console.log(`watch      npx meshlet ctl --server 127.0.0.1:${control.ports.api} get canaries   |   describe canary reviews\n`);

  await sleep(1000); // the sidecar's first snapshot
  // User traffic: ~40 rps through the caller's sidecar; per-version tally printed with the events.
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const by: Record<string, number> = {};
  let failed = 0;
  const load = setInterval(() => {
    const r = request({ host: '127.0.0.1', port: front.ports.outbound, path: '/', agent, headers: { host: 'reviews' } }, (res) => {
      res.resume();
      res.on('end', () => { const v = String(res.headers['x-version'] ?? '-'); by[v] = (by[v] ?? 0) + 1; if (res.statusCode !== 200) failed++; });
    });
    r.on('error', () => { failed++; });
    r.end();
  }, 25);

  let seen = 0;
  const status = async () => (await (await fetch(`${api}/api/v1/canaries/reviews`)).json()) as any;
  const follow = async (until: (phase: string) => boolean, limitMs: number) => {
    const deadline = Date.now() + limitMs;
    while (Date.now() < deadline) {
      const c = await status().catch(() => null);
      if (c?.events) {
        for (const e of c.events.slice(seen)) console.log(`${e.time.slice(11, 19)} ${e.type.padEnd(7)} ${e.message}`);
        seen = c.events.length;
        if (until(c.status.phase)) return c;
      }
      await sleep(500);
    }
    throw new Error('the demo took too long');
  };
  await follow((p) => p === 'Initialized', 20_000);
  console.log('\n--- deploying reviews v2 (good) ---');
  writeFileSync(join(dir, 'mesh.yaml'), mesh([{ version: 'v1', port: v1.port }, { version: 'v2', port: v2.port }]));
  let c = await follow((p) => p === 'Succeeded' || p === 'Failed', 90_000);
  console.log(`=> ${c.status.phase}: primary ${c.status.primary}; answers so far ${JSON.stringify(by)}, failed ${failed}\n`);
  console.log('--- deploying reviews v3 (bad: 30 % 503) ---');
  const failedBefore = failed;
  writeFileSync(join(dir, 'mesh.yaml'), mesh([{ version: 'v1', port: v1.port }, { version: 'v2', port: v2.port }, { version: 'v3', port: v3.port }]));
  await follow((p) => p === 'Progressing', 20_000);
  c = await follow((p) => p === 'Succeeded' || p === 'Failed', 90_000);
  console.log(`=> ${c.status.phase}: primary ${c.status.primary}; answers ${JSON.stringify(by)}; requests failed during the bad rollout: ${failed - failedBefore}`);
  clearInterval(load);
  agent.destroy();
  if (process.argv.includes('--keep')) { console.log('\n--keep: still running; Ctrl-C to stop'); return; }
  stop();
}

main().catch((e) => { console.error(e); process.exit(1); });
