// `npm start`: the Bookinfo demo on loopback. productpage -> details, reviews (v1 no stars,
// v2 black stars, v3 red stars) -> ratings; every app behind its own meshlet sidecar, plus an
// edge sidecar you curl. Static endpoints are generated from the ports the sidecars bound.
import { mkdtempSync, copyFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { call, listen, propagated } from '../lib/app.ts';
import { startSidecar, stopAll, type Sidecar } from '../lib/mesh.ts';

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

export async function startBookinfo(opts: { edgePort: number; quiet?: boolean }): Promise<{ edge: Sidecar; sidecars: Sidecar[]; configDir: string; stop: () => void }> {
  const children: ChildProcess[] = [];
  const configDir = mkdtempSync(join(tmpdir(), 'meshlet-bookinfo-'));
  for (const f of readdirSync(join(HERE, 'mesh'))) copyFileSync(join(HERE, 'mesh', f), join(configDir, f));
  // Endpoints need the sidecars' inbound ports, known only once they bound: start with an
  // endpoint-less ServiceEntry file, then write the real one (the sidecars --watch the dir).
  const endpointsFile = join(configDir, '00-services.yaml');
  const write = (eps: Array<{ service: string; version: string; port: number }>) => writeFileSync(endpointsFile, ['productpage', 'details', 'reviews', 'ratings'].map((s) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${s} }
spec:
  hosts: [${s}.default.svc.cluster.local]
  ports: [{ number: 9080, name: http }]
  endpoints:${eps.filter((e) => e.service === s).map((e) => `\n    - { address: 127.0.0.1, ports: { http: ${e.port} }, labels: { app: ${s}, version: ${e.version} } }`).join('') || ' []'}
`).join('---\n'));
  write([]);
  const sidecars: Sidecar[] = [];
  const eps: Array<{ service: string; version: string; port: number }> = [];
  for (const a of apps) {
    let outbound = 0;
    const { server, port } = await listen(a.make(() => outbound));
    server.unref();
    const sc = await startSidecar(`${a.service}-${a.version}`, ['--config', configDir, '--watch', '--app-port', String(port), '--service', a.service, '--labels', `version=${a.version}`]);
    children.push(sc.child);
    outbound = sc.ports.outbound;
    sidecars.push(sc);
    eps.push({ service: a.service, version: a.version, port: sc.ports.inbound });
  }
  write(eps);
  const edge = await startSidecar('edge', ['--config', configDir, '--watch', '--outbound-port', String(opts.edgePort)]);
  children.push(edge.child);
  // Wait until the edge sees the endpoints (it reloads on the file change).
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const r = await call(edge.ports.outbound, 'productpage', '/', {});
    if (r.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { edge, sidecars, configDir, stop: () => stopAll(children) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const mesh = await startBookinfo({ edgePort: EDGE_PORT });
  const e = mesh.edge.ports.outbound;
  const admins = mesh.sidecars.map((s) => `    ${s.name.padEnd(14)} http://127.0.0.1:${s.ports.admin}/stats`).join('\n');
  console.log(`
meshlet Bookinfo demo is running on loopback (Ctrl-C to stop).

  The product page, through the edge sidecar:
    curl -H 'Host: productpage' http://127.0.0.1:${e}/

  The reviews split (50/50 v1/v2), ten calls:
    for i in $(seq 10); do curl -s -H 'Host: reviews' http://127.0.0.1:${e}/reviews/0; echo; done

  Pin a version by header (end-user: jason -> v3, red stars):
    curl -s -H 'Host: reviews' -H 'end-user: jason' http://127.0.0.1:${e}/reviews/0

  Change the split: edit ${join(mesh.configDir, 'reviews.yaml')} (weights sum to 100); the sidecars reload it.

  Admin (stats, clusters, config_dump) of each sidecar:
    edge           http://127.0.0.1:${mesh.edge.ports.admin}/stats
${admins}
`);
  const stop = () => { mesh.stop(); setTimeout(() => process.exit(0), 500); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', stop);
  // Never leave sidecars behind, however this process ends.
  process.on('exit', () => mesh.stop());
}
