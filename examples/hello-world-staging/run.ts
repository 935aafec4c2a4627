// Per-request staging (Linkerd's "staging microservices without the tears"): hello -> world, with
// world-v2 deployed next to production and reached, for one request only, with an l5d-dtab header.
// Every app sits behind its own meshlet sidecar on loopback; `npm run staging`.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { call, listen, propagated } from '../lib/app.ts';
import { startSidecar, stopAll, type Sidecar } from '../lib/mesh.ts';

const CLIENT_PORT = Number(process.env.STAGING_PORT ?? 4140);

interface App { service: string; version: string; answer?: string }
const APPS: App[] = [
  { service: 'hello', version: 'v1' },
  { service: 'world', version: 'v1', answer: 'world' },
  { service: 'world', version: 'v2', answer: 'planet' },
  { service: 'world-v2', version: 'v1', answer: 'earth' },
];

function meshYaml(eps: Array<{ service: string; version: string; port: number }>): string {
  const se = (s: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${s} }
spec:
  hosts: [${s}.default.svc.cluster.local]
  ports: [{ number: 80, name: http }]
  endpoints:${eps.filter((e) => e.service === s).map((e) => `\n    - { address: 127.0.0.1, ports: { http: ${e.port} }, labels: { version: ${e.version} } }`).join('') || ' []'}
`;
  return [se('hello'), se('world'), se('world-v2'), `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: world }
spec:
  host: world.default.svc.cluster.local
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`, `# Production: all of world's traffic goes to v1.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: world }
spec:
  hosts: [world]
  http: [{ route: [{ destination: { host: world, subset: v1 } }] }]
`].join('---\n');
}

export async function startStaging(opts: { clientPort: number }): Promise<{ client: Sidecar; stop: () => void }> {
  const children: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-staging-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml([]));
  const eps: Array<{ service: string; version: string; port: number }> = [];
  for (const a of APPS) {
    let outbound = 0;
    const { server, port } = await listen(async (req, res) => {
      if (a.answer) { res.end(a.answer); return; }
      // hello: call world through this pod's sidecar, passing the l5d context on.
      const r = await call(outbound, 'world', '/', propagated(req));
      res.statusCode = r.status === 200 ? 200 : 502;
      res.end(`Hello ${r.body}\n`);
    });
    server.unref();
    const sc = await startSidecar(`${a.service}-${a.version}`, ['--config', file, '--watch', '--app-port', String(port), '--service', a.service, '--labels', `version=${a.version}`]);
    children.push(sc.child);
    outbound = sc.ports.outbound;
    eps.push({ service: a.service, version: a.version, port: sc.ports.inbound });
  }
  writeFileSync(file, meshYaml(eps));
  // The developer's own sidecar (trusted: l5d-dtab is honoured).
  const client = await startSidecar('client', ['--config', file, '--watch', '--outbound-port', String(opts.clientPort)]);
  children.push(client.child);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && (await call(client.ports.outbound, 'hello', '/', {})).status !== 200) await new Promise((r) => setTimeout(r, 100));
  return { client, stop: () => stopAll(children) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = await startStaging({ clientPort: CLIENT_PORT });
  const p = s.client.ports.outbound;
  console.log(`
hello -> world staging demo on loopback (Ctrl-C to stop). Through the client sidecar:

  Production:
    curl -H 'Host: hello' http://127.0.0.1:${p}/                                              # Hello world

  Your request only, to the staging deployment world-v2 (the override follows the call graph):
    curl -H 'Host: hello' -H 'l5d-dtab: /svc/world => /srv/world-v2' http://127.0.0.1:${p}/   # Hello earth

  Pin a subset of world:
    curl -H 'Host: hello' -H 'l5d-dtab: /svc/world => /srv/world/v2' http://127.0.0.1:${p}/   # Hello planet

  A typo is a 400 with the parser's message:
    curl -i -H 'Host: hello' -H 'l5d-dtab: /svc/world => srv/world-v2' http://127.0.0.1:${p}/

  Explain a dtab: http://127.0.0.1:${s.client.ports.admin}/delegator
`);
  const stop = () => { s.stop(); setTimeout(() => process.exit(0), 300); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('exit', () => s.stop());
}
