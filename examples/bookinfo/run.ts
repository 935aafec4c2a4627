// `npm start`: the Bookinfo demo on loopback. productpage -> details, reviews (v1 no stars,
// v2 black stars, v3 red stars) -> ratings; every app behind its own meshlet sidecar, all fed by
// one control server, plus an edge sidecar you curl.
import { mkdtempSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { call, listen, propagated } from '../lib/app.ts';
import { startControlProc, startSidecar, stopAll, type ControlProc, type Sidecar } from '../lib/mesh.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const EDGE_PORT = Number(process.env.BOOKINFO_PORT ?? 9080);

interface AppDef { service: string; version: string; make: (outbound: () => number) => Parameters<typeof listen>[0] }

const STARS: Record<string, string> = { v1: '', v2: 'black', v3: 'red' };

const apps: AppDef[] = [
  {
    service: 'productpage', version: 'v1', make: (out) => async (req, res) => {
      const h = propagated(req);
      const [details, reviews] = await Promise.all([call(out(), 'details', '/details/0', h), call(out(), 'reviews', '/reviews/0', h)]);
      res.setHeader('content-type', 'text/plain');
      res.end(`Bookinfo productpage\n  details -> ${details.status} ${details.body}\n  reviews -> ${reviews.status} ${reviews.body}\n`);
    },
  },
  { service: 'details', version: 'v1', make: () => (_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"id":0,"author":"William Shakespeare","year":1595}'); } },
  ...['v1', 'v2', 'v3'].map((version): AppDef => ({
    service: 'reviews', version, make: (out) => async (req, res) => {
      let ratings = '';
      if (version !== 'v1') {
        const r = await call(out(), 'ratings', '/ratings/0', propagated(req));
        ratings = r.status === 200 ? `, "stars": "${STARS[version]}", "ratings": ${r.body}` : `, "ratings": "unavailable (${r.status})"`;
      }
      res.setHeader('content-type', 'application/json');
      res.end(`{"reviews": "${version}"${ratings}}`);
    },
  })),
  { service: 'ratings', version: 'v1', make: () => (_req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"Reviewer1": 5, "Reviewer2": 4}'); } },
];

export interface Bookinfo { control: ControlProc; edge: Sidecar; sidecars: Sidecar[]; configDir: string; stop: () => void }

/**
 * Control server + one sidecar per app (each registers its app's endpoint) + an edge sidecar,
 * all real `meshlet` processes on loopback. Port 0 everywhere unless given.
 */
export async function startBookinfo(opts: { edgePort: number; controlPorts?: { discovery: number; api: number }; traffic?: number; reportIntervalS?: number }): Promise<Bookinfo> {
  const report = ['--report-interval', String(opts.reportIntervalS ?? 5)];
  const children: ChildProcess[] = [];
  const configDir = mkdtempSync(join(tmpdir(), 'meshlet-bookinfo-'));
  for (const f of readdirSync(join(HERE, 'mesh'))) copyFileSync(join(HERE, 'mesh', f), join(configDir, f));
  const control = await startControlProc(configDir, opts.controlPorts ?? { discovery: 0, api: 0 });
  children.push(control.child);
  const url = `http://127.0.0.1:${control.ports.discovery}`;
  const sidecars: Sidecar[] = [];
  for (const a of apps) {
    let outbound = 0;
    const { server, port } = await listen(a.make(() => outbound));
    server.unref();
    const name = `${a.service}-${a.version}`;
    const sc = await startSidecar(name, ['--control', url, '--node-id', name, '--app-port', String(port), '--service', a.service, '--labels', `version=${a.version}`, ...report]);
    children.push(sc.child);
    outbound = sc.ports.outbound;
    sidecars.push(sc);
  }
  const edge = await startSidecar('edge', ['--control', url, '--node-id', 'edge', '--service', 'edge', '--outbound-port', String(opts.edgePort), ...report]);
  children.push(edge.child);
  // Wait until registrations reached the edge's snapshot.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await call(edge.ports.outbound, 'productpage', '/', {});
    if (r.status === 200 && r.body.includes('reviews -> 200')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // A small traffic generator so the mesh page has something to show.
  let timer: NodeJS.Timeout | null = null;
  if (opts.traffic && opts.traffic > 0) {
    timer = setInterval(() => { void call(edge.ports.outbound, 'productpage', '/', {}); }, 1000 / opts.traffic);
    timer.unref();
  }
  return { control, edge, sidecars, configDir, stop: () => { if (timer) clearInterval(timer); stopAll(children); } };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const CONTROL = { discovery: Number(process.env.MESHLET_CONTROL_PORT ?? 15010), api: Number(process.env.MESHLET_API_PORT ?? 15014) };
  const mesh = await startBookinfo({ edgePort: EDGE_PORT, controlPorts: CONTROL, traffic: 5 });
  const e = mesh.edge.ports.outbound;
  const api = `http://127.0.0.1:${mesh.control.ports.api}`;
  const admins = mesh.sidecars.map((s) => `    ${s.name.padEnd(14)} http://127.0.0.1:${s.ports.admin}/stats`).join('\n');
  console.log(`
meshlet Bookinfo demo is running on loopback (Ctrl-C to stop).
A control server feeds ${mesh.sidecars.length + 1} sidecars; a generator sends 5 requests/s to productpage.

  The mesh page (topology, live split, proxies):
    ${api}/

  The product page, through the edge sidecar:
    curl -H 'Host: productpage' http://127.0.0.1:${e}/

  The reviews split (50/50 v1/v2), ten calls:
    for i in $(seq 10); do curl -s -H 'Host: reviews' http://127.0.0.1:${e}/reviews/0; echo; done

  Pin a version by header (end-user: jason -> v3, red stars):
    curl -s -H 'Host: reviews' -H 'end-user: jason' http://127.0.0.1:${e}/reviews/0

  The canary story, with the control server:
    npx meshlet ctl --server ${api} weights reviews v1=20 v2=80
    npx meshlet ctl --server ${api} promote reviews v2
    npx meshlet ctl --server ${api} remove-version reviews v1
    npx meshlet ctl --server ${api} rollback reviews
    npx meshlet ctl --server ${api} get proxies

  Admin (stats, clusters, config_dump) of each sidecar:
    edge           http://127.0.0.1:${mesh.edge.ports.admin}/stats
${admins}

  Config directory (watched by the control server): ${mesh.configDir}
`);
  const stop = () => { mesh.stop(); setTimeout(() => process.exit(0), 500); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', stop);
  // Never leave sidecars behind, however this process ends.
  process.on('exit', () => mesh.stop());
}
