// The seed's security chapter on loopback: a control server with its CA (root in a temp
// --ca-dir), httpbin behind a sidecar (demo/httpbin), sleep behind a sidecar (demo/sleep) and a
// second sleep in another namespace (other/sleep). Every sidecar gets its certificate from the
// CA, and sidecar-to-sidecar traffic is mutual TLS. The steps (steps/*.yaml) are copied into the
// watched config directory one by one; docs/security.md walks through them with each answer.
//
//   npx node examples/zero-trust/run.ts
import { mkdtempSync, copyFileSync, readdirSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { call, listen } from '../lib/app.ts';
import { startSidecar, stopAll, type Sidecar } from '../lib/mesh.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/meshlet.js', import.meta.url));
export const STEPS = join(HERE, 'steps');

export interface ZeroTrust {
  configDir: string;
  caDir: string;
  api: number;
  discovery: number;
  httpbin: Sidecar;
  sleep: Sidecar;
  otherSleep: Sidecar;
  stop: () => void;
}

/** A small httpbin: /get, /ip, /headers answer JSON about the request. */
function httpbin() {
  return listen((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    res.setHeader('content-type', 'application/json');
    if (path === '/get' || path === '/headers') { res.end(JSON.stringify({ url: req.url, headers: req.headers }, null, 2) + '\n'); return; }
    if (path === '/ip') { res.end(JSON.stringify({ origin: req.socket.remoteAddress }) + '\n'); return; }
    res.statusCode = 404;
    res.end('{"error":"not found"}\n');
  });
}

export async function control(configDir: string, caDir: string, ports: { discovery: number; api: number }): Promise<{ child: ChildProcess; ports: { discovery: number; api: number } }> {
  const child = spawn(process.execPath, [BIN, 'control', '--config-dir', configDir, '--ca-dir', caDir, '--port', String(ports.discovery), '--api-port', String(ports.api), '--log-level', 'warn', '--endpoint-ttl', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const bound = await new Promise<{ discovery: number; api: number }>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c;
      const line = out.split('\n').find((l) => l.includes('"meshlet control ready"'));
      if (line) resolve(JSON.parse(line).ports);
    });
    child.stderr!.on('data', (c) => { out += c; process.stderr.write(c); });
    child.once('exit', (code) => reject(new Error(`control exited ${code}: ${out}`)));
  });
  return { child, ports: bound };
}

export async function startZeroTrust(opts: { controlPorts?: { discovery: number; api: number } } = {}): Promise<ZeroTrust> {
  const children: ChildProcess[] = [];
  const configDir = mkdtempSync(join(tmpdir(), 'meshlet-zero-trust-'));
  const caDir = mkdtempSync(join(tmpdir(), 'meshlet-ca-'));
  for (const f of readdirSync(join(HERE, 'mesh'))) copyFileSync(join(HERE, 'mesh', f), join(configDir, f));
  const ctl = await control(configDir, caDir, opts.controlPorts ?? { discovery: 0, api: 0 });
  children.push(ctl.child);
  const url = `http://127.0.0.1:${ctl.ports.discovery}`;
  const app = await httpbin();
  app.server.unref();
  const httpbinSc = await startSidecar('httpbin', ['--control', url, '--node-id', 'httpbin', '--service', 'httpbin', '--app-port', String(app.port),
    '--labels', 'app=httpbin,version=v1', '--namespace', 'demo', '--service-account', 'httpbin', '--report-interval', '5']);
  children.push(httpbinSc.child);
  const client = async (ns: string) => {
    const sc = await startSidecar(`sleep.${ns}`, ['--control', url, '--node-id', `sleep.${ns}`, '--service', 'sleep', '--labels', 'app=sleep', '--namespace', ns, '--service-account', 'sleep', '--report-interval', '5']);
    children.push(sc.child);
    return sc;
  };
  const sleep = await client('demo');
  const otherSleep = await client('other');
  // Until httpbin's registration reached the clients' snapshots.
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const [a, b] = await Promise.all([call(sleep.ports.outbound, 'httpbin.demo', '/get', {}), call(otherSleep.ports.outbound, 'httpbin.demo', '/get', {})]);
    if (a.status === 200 && b.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { configDir, caDir, api: ctl.ports.api, discovery: ctl.ports.discovery, httpbin: httpbinSc, sleep, otherSleep, stop: () => stopAll(children) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const z = await startZeroTrust({ controlPorts: { discovery: Number(process.env.MESHLET_CONTROL_PORT ?? 15010), api: Number(process.env.MESHLET_API_PORT ?? 15014) } });
  const s = z.sleep.ports.outbound;
  const o = z.otherSleep.ports.outbound;
  console.log(`
meshlet zero-trust demo on loopback (Ctrl-C to stop). docs/security.md explains each step.

  sleep (demo/sleep) calls httpbin through its sidecar; the sidecars speak mutual TLS:
    curl -s -H 'Host: httpbin.demo' http://127.0.0.1:${s}/get            # 200
  sleep in namespace other:
    curl -s -H 'Host: httpbin.demo' http://127.0.0.1:${o}/get            # 200 (no policy yet)

  The steps (copy one at a time into the watched config directory):
    cp ${STEPS}/0-strict.yaml ${z.configDir}/
    cp ${STEPS}/1-deny-all.yaml ${z.configDir}/authz.yaml     # both: 403 RBAC: access denied
    cp ${STEPS}/2-allow-sleep.yaml ${z.configDir}/authz.yaml  # demo/sleep 200, other/sleep 403
    cp ${STEPS}/3-get-only.yaml ${z.configDir}/authz.yaml     # /get 200, /ip 403
    cp ${STEPS}/4-token.yaml ${z.configDir}/authz.yaml        # -H 'x-rfma-token: test1' 200, without 403

  Why:  npx meshlet ctl --server 127.0.0.1:${z.api} authz check --to httpbin.demo --from-principal cluster.local/ns/other/sa/sleep --path /get
  Certificates of a sidecar:  curl -s http://127.0.0.1:${z.httpbin.ports.admin}/certs
  The CA's root: ${z.caDir}/root-cert.pem
`);
  const stop = () => { z.stop(); setTimeout(() => process.exit(0), 500); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('exit', () => z.stop());
}
