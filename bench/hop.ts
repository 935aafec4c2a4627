// `npm run bench -- --hop`: the mesh hop a user pays for, end to end —
//   client → outbound proxy → (TLS or plaintext) → inbound proxy → upstream
// built from two meshlet sidecars, two haproxy and two nginx, side by side with direct, in one run.
// Each proxy arm runs twice, interleaved (A B C A B C), and both rows are printed so the noise of
// the machine is visible next to the differences. Columns:
//   - closed loop (wrk -c50 when installed): rps and CPU µs/req of BOTH proxies together;
//   - a fixed 1 000 rps open loop (our runner, latency from the intended start): added
//     p50/p90/p99/p99.9 over direct, CPU µs/req at that rate, and vCPU per 1 000 rps (the figure
//     Istio publishes); RSS of each proxy at the end of it (steady);
//   - idle: % of one core used by both proxies over a quiet window, and each proxy's RSS.
// Two Node pipe pairs (no HTTP; plaintext and mutual TLS) run next to the proxies as the floor of
// any Node sidecar pair, and hopRatios() prints each meshlet pair over haproxy's and over that floor.
// Certificates for the TLS arms are made per run with openssl (ECDSA P-256, TLS 1.3, both sides
// verify: the same mutual-TLS work an Istio/Linkerd hop does).
import { spawnSync } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, peerFile, scratchDir } from './lib/arms.ts';
import { closedLoop, fixedRate, type Latency } from './lib/measure.ts';
import { jsonPort, memKb, peerEnv, startProc, treeCpuMicros, treeMemKb, warmCompileCache, warmPeers, which, type Proc } from './lib/procs.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const NODE = process.execPath;

export interface HopPlan { closedS: number; fixedS: number; idleS: number; warmS: number; qps: number; rounds: number }
export const HOP_PLANS: Record<string, HopPlan> = {
  full: { closedS: 5, fixedS: 5, idleS: 5, warmS: 1, qps: 1000, rounds: 2 },
  quick: { closedS: 1, fixedS: 2, idleS: 2, warmS: 0.3, qps: 1000, rounds: 1 },
  smoke: { closedS: 0.3, fixedS: 0.3, idleS: 0.3, warmS: 0.1, qps: 200, rounds: 1 },
};

/** A running hop: the port the client calls, and the two proxies' pids (0 = none). */
interface Hop { port: number; procs: Proc[]; stop(): Promise<void> }

interface HopArm {
  name: string;
  about: string;
  skip(): string | null;
  start(upstream: number, dir: string, certs: Certs | null): Promise<Hop>;
  /** The Node peer files it starts, whose compile cache the run fills first (procs.ts warmPeers). */
  peers?: string[];
}

interface Certs { ca: string; outCert: string; outKey: string; inCert: string; inKey: string; outPem: string; inPem: string }

/** A CA and one leaf per side (SAN inbound.bench / outbound.bench), made with openssl. */
export function makeCerts(dir: string): Certs | null {
  const openssl = which('openssl');
  if (!openssl) return null;
  const d = join(dir, 'certs');
  mkdirSync(d, { recursive: true });
  const run = (args: string[]) => {
    const r = spawnSync(openssl, args, { cwd: d, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=meshlet-bench-ca', '-days', '2']);
  for (const side of ['in', 'out']) {
    const san = side === 'in' ? 'DNS:inbound.bench' : 'DNS:outbound.bench';
    writeFileSync(join(d, `${side}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    run(['req', ...ec, '-keyout', `${side}.key`, '-out', `${side}.csr`, '-subj', `/CN=${side}`]);
    run(['x509', '-req', '-in', `${side}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${side}.crt`, '-days', '2', '-extfile', `${side}.ext`]);
    writeFileSync(join(d, `${side}.pem`), readFileSync(join(d, `${side}.crt`), 'utf8') + readFileSync(join(d, `${side}.key`), 'utf8'));
  }
  const p = (f: string) => join(d, f);
  return { ca: p('ca.crt'), outCert: p('out.crt'), outKey: p('out.key'), inCert: p('in.crt'), inKey: p('in.key'), outPem: p('out.pem'), inPem: p('in.pem') };
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); }); });
}

function pair(a: Proc, b: Proc, port: number): Hop {
  return { port, procs: [a, b], stop: async () => { await a.stop(); await b.stop(); } };
}

const meshletReadyPorts = (line: string): { outbound: number; inbound: number; admin: number } | null => {
  if (!line.includes('"meshlet proxy ready"')) return null;
  try { return (JSON.parse(line) as { ports: { outbound: number; inbound: number; admin: number } }).ports; } catch { return null; }
};

/** Two meshlet sidecars: the outbound one's ServiceEntry points at the inbound one's listener. */
/** A meshlet checkout's entry point, and the environment its processes get (no OTEL_*: no exporter in a bench). */
function meshletRun(root: string): { bin: string; env: NodeJS.ProcessEnv } {
  return { bin: join(root, 'bin/meshlet.js'), env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_'))) };
}

function meshletPair(name: string, about: string, root: () => string | null, extra: { out?: string[]; in?: string[] } = {}): HopArm {
  return {
    name, about,
    skip: () => (root() === null ? 'set MESHLET_BEFORE=<checkout of an earlier meshlet> to compare against it in the same run' : null),
    async start(upstream, dir) {
      const { bin, env } = meshletRun(root()!);
      const common = ['--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn', '--access-log', 'off'];
      const inYaml = join(dir, `${name}-in.yaml`);
      writeFileSync(inYaml, seYaml(upstream));
      const inbound = await startProc(`${name}-in`, NODE, [bin, 'proxy', '--config', inYaml, '--app-port', String(upstream), ...common, ...(extra.in ?? [])],
        { ready: (l) => meshletReadyPorts(l)?.inbound ?? null, env });
      try {
        const outYaml = join(dir, `${name}-out.yaml`);
        writeFileSync(outYaml, seYaml(inbound.port));
        const outbound = await startProc(`${name}-out`, NODE, [bin, 'proxy', '--config', outYaml, ...common, ...(extra.out ?? [])],
          { ready: (l) => meshletReadyPorts(l)?.outbound ?? null, env });
        return pair(outbound, inbound, outbound.port);
      } catch (e) { await inbound.stop(); throw e; }
    },
  };
}

/**
 * Two meshlet sidecars following a `meshlet control` with its CA, as in a mesh: the inbound one
 * registers itself for the service, the outbound one learns the endpoint from the control server.
 * With `mtls`, both have identities (--service-account: certificates from the CA), so the hop is
 * mutual TLS 1.3 with the server's SPIFFE identity verified; without, the same topology in
 * plaintext.
 */
function meshletControlPair(name: string, about: string, mtls: boolean): HopArm {
  return {
    name, about,
    skip: () => null,
    async start(upstream, dir) {
      const { bin, env } = meshletRun(ROOT);
      const cfg = join(dir, `${name}-control`);
      mkdirSync(cfg, { recursive: true });
      writeFileSync(join(cfg, 'services.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: upstream, namespace: bench }
spec:
  hosts: [${HOST}]
  ports: [{ number: 80, name: http }]
`);
      const ctlReady = (l: string) => { if (!l.includes('"meshlet control ready"')) return null; try { return (JSON.parse(l) as { ports: { discovery: number } }).ports.discovery; } catch { return null; } };
      const ctl = await startProc(`${name}-control`, NODE, [bin, 'control', '--config-dir', cfg, '--ca-dir', join(dir, `${name}-ca`), '--port', '0', '--api-port', '0', '--log-level', 'warn'], { ready: ctlReady, env });
      const url = `http://127.0.0.1:${ctl.port}`;
      const common = ['--control', url, '--namespace', 'bench', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn', '--access-log', 'off'];
      const id = (sa: string) => (mtls ? ['--service-account', sa] : []);
      const started: Proc[] = [ctl];
      try {
        const inbound = await startProc(`${name}-in`, NODE, [bin, 'proxy', ...common, '--node-id', 'in', '--service', HOST, '--app-port', String(upstream), ...id('upstream')],
          { ready: (l) => meshletReadyPorts(l)?.inbound ?? null, env });
        started.push(inbound);
        const outbound = await startProc(`${name}-out`, NODE, [bin, 'proxy', ...common, '--node-id', 'out', ...id('client')],
          { ready: (l) => meshletReadyPorts(l)?.outbound ?? null, env });
        started.push(outbound);
        // Ready once the outbound side routes to the registered endpoint.
        const deadline = Date.now() + 15_000;
        for (;;) {
          // node:http, not fetch: fetch does not let a caller set Host.
          const ok = await new Promise<boolean>((resolve) => {
            const r = httpGet({ host: '127.0.0.1', port: outbound.port, path: '/', headers: { host: HOST }, agent: false, timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode === 200); });
            r.on('error', () => resolve(false));
            r.on('timeout', () => { r.destroy(); resolve(false); });
          });
          if (ok) break;
          if (Date.now() > deadline) throw new Error(`${name}: the outbound sidecar never reached the upstream`);
          await sleep(100);
        }
        return { port: outbound.port, procs: [outbound, inbound], stop: async () => { for (const p of started.reverse()) await p.stop(); } };
      } catch (e) { for (const p of started.reverse()) await p.stop(); throw e; }
    },
  };
}

function seYaml(port: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: upstream }
spec:
  hosts: [${HOST}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} } }]
`;
}

function haproxyPair(tls: boolean): HopArm {
  return {
    name: tls ? 'haproxy-pair-mtls' : 'haproxy-pair',
    about: tls ? 'two haproxy (1 thread each), mutual TLS 1.3 between them, server-side keep-alive' : 'two haproxy (1 thread each), plaintext between them',
    skip: () => (which('haproxy') ? null : 'haproxy is not installed (apt-get install haproxy)'),
    async start(upstream, dir, certs) {
      if (tls && !certs) throw new Error('openssl is needed for the TLS arms');
      const inPort = await freePort();
      const outPort = await freePort();
      const cfg = (name: string, bind: string, server: string) => {
        const f = join(dir, `${name}.cfg`);
        writeFileSync(f, `global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind ${bind}
  default_backend be
backend be
  http-reuse always
  server s1 ${server}
`);
        return f;
      };
      const inBind = tls ? `127.0.0.1:${inPort} ssl crt ${certs!.inPem} ca-file ${certs!.ca} verify required` : `127.0.0.1:${inPort}`;
      const outServer = tls ? `127.0.0.1:${inPort} ssl crt ${certs!.outPem} ca-file ${certs!.ca} verify required verifyhost inbound.bench` : `127.0.0.1:${inPort}`;
      const inbound = await startProc('haproxy-in', which('haproxy')!, ['-f', cfg('haproxy-in', inBind, `127.0.0.1:${upstream}`), '-db'], { probePort: inPort });
      try {
        const outbound = await startProc('haproxy-out', which('haproxy')!, ['-f', cfg('haproxy-out', `127.0.0.1:${outPort}`, outServer), '-db'], { probePort: outPort });
        return pair(outbound, inbound, outPort);
      } catch (e) { await inbound.stop(); throw e; }
    },
  };
}

function nginxPair(): HopArm {
  return {
    name: 'nginx-pair-mtls',
    about: 'two nginx (1 worker each), mutual TLS 1.3 between them, upstream keepalive + session reuse',
    skip: () => (which('nginx') ? null : 'nginx is not installed (apt-get install nginx-light)'),
    async start(upstream, dir, certs) {
      if (!certs) throw new Error('openssl is needed for the TLS arms');
      const inPort = await freePort();
      const outPort = await freePort();
      const conf = (name: string, server: string) => {
        const d = join(dir, name);
        mkdirSync(d, { recursive: true });
        const f = join(d, 'nginx.conf');
        writeFileSync(f, `worker_processes 1; daemon off; pid ${d}/nginx.pid; error_log ${d}/nginx.err warn;
events { worker_connections 4096; }
http { access_log off;
${server} }
`);
        return { f, d };
      };
      const inConf = conf('nginx-in', `upstream app { server 127.0.0.1:${upstream}; keepalive 128; }
  server { listen 127.0.0.1:${inPort} ssl; ssl_protocols TLSv1.3;
    ssl_certificate ${certs.inCert}; ssl_certificate_key ${certs.inKey};
    ssl_client_certificate ${certs.ca}; ssl_verify_client on; keepalive_requests 100000;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; } }`);
      const outConf = conf('nginx-out', `upstream inb { server 127.0.0.1:${inPort}; keepalive 128; }
  server { listen 127.0.0.1:${outPort}; keepalive_requests 100000;
    location / { proxy_pass https://inb; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host;
      proxy_ssl_protocols TLSv1.3; proxy_ssl_certificate ${certs.outCert}; proxy_ssl_certificate_key ${certs.outKey};
      proxy_ssl_trusted_certificate ${certs.ca}; proxy_ssl_verify on; proxy_ssl_name inbound.bench; proxy_ssl_session_reuse on; } }`);
      const nginx = which('nginx')!;
      const inbound = await startProc('nginx-in', nginx, ['-c', inConf.f, '-p', inConf.d], { probePort: inPort });
      try {
        const outbound = await startProc('nginx-out', nginx, ['-c', outConf.f, '-p', outConf.d], { probePort: outPort });
        return pair(outbound, inbound, outPort);
      } catch (e) { await inbound.stop(); throw e; }
    },
  };
}

/**
 * Two of the Node pipe references in series (bench/peers/tcp-pipe.ts, tls-pipe.ts): bytes copied
 * with no HTTP, one upstream connection per client connection. What any Node sidecar pair pays
 * for its sockets (and, with `tls`, for Node's TLS records) before doing any proxy work: the floor
 * the meshlet pairs are read against.
 */
function pipePair(tls: boolean): HopArm {
  const name = tls ? 'tls-pipe-pair' : 'tcp-pipe-pair';
  const file = peerFile(tls ? 'tls-pipe.ts' : 'tcp-pipe.ts');
  return {
    name,
    peers: [file],
    about: tls ? 'reference: two Node pipes with mutual TLS 1.3 between them, no HTTP (the floor of a Node mTLS hop)' : 'reference: two Node TCP pipes, no HTTP (the floor of a Node sidecar pair)',
    skip: () => null,
    async start(upstream, _dir, certs) {
      if (tls && !certs) throw new Error('openssl is needed for the TLS arms');
      const start = (side: string, to: number, more: string[]) =>
        startProc(`${name}-${side}`, NODE, [file, '--port', '0', '--upstream', `127.0.0.1:${to}`, ...more], { ready: jsonPort, env: peerEnv() });
      const inbound = await start('in', upstream,
        tls ? ['--tls', 'listen', '--cert', certs!.inCert, '--key', certs!.inKey, '--ca', certs!.ca] : []);
      try {
        const outbound = await start('out', inbound.port,
          tls ? ['--tls', 'connect', '--cert', certs!.outCert, '--key', certs!.outKey, '--ca', certs!.ca, '--servername', 'inbound.bench'] : []);
        return pair(outbound, inbound, outbound.port);
      } catch (e) { await inbound.stop(); throw e; }
    },
  };
}

export function hopArms(): HopArm[] {
  return [
    { name: 'direct', about: 'no proxy', skip: () => null, start: async (u) => ({ port: u, procs: [], stop: async () => {} }) },
    meshletPair('meshlet-pair', 'two meshlet sidecars, plaintext between them', () => ROOT),
    meshletPair('meshlet-pair-before', 'two meshlet sidecars from $MESHLET_BEFORE, plaintext', () => process.env.MESHLET_BEFORE ?? null),
    meshletControlPair('meshlet-mesh', 'two meshlet sidecars following a control server (registration), plaintext', false),
    meshletControlPair('meshlet-mesh-mtls', 'the same with workload identities: mutual TLS 1.3 between the sidecars (SPIFFE SAN verified)', true),
    pipePair(false),
    pipePair(true),
    haproxyPair(false),
    haproxyPair(true),
    nginxPair(),
  ];
}

/**
 * The goals of the hop read within one run, per round: each meshlet pair against haproxy's pair
 * and against the Node pipe pair of the same kind, and that pipe pair against haproxy — where the
 * last is already above a goal, no Node proxy meets it, whatever it does per request.
 */
export const HOP_RATIOS: Array<{ a: string; b: string; goal: string }> = [
  { a: 'meshlet-mesh-mtls', b: 'haproxy-pair-mtls', goal: '≤ 1.5' },
  { a: 'meshlet-mesh-mtls', b: 'tls-pipe-pair', goal: '' },
  { a: 'tls-pipe-pair', b: 'haproxy-pair-mtls', goal: '' },
  { a: 'meshlet-pair', b: 'haproxy-pair', goal: '' },
  { a: 'meshlet-pair', b: 'tcp-pipe-pair', goal: '' },
  { a: 'tcp-pipe-pair', b: 'haproxy-pair', goal: '' },
];

export interface HopResult {
  arm: string; round: number; about: string; skipped?: string; failed?: string;
  rps?: number; cpuUsPerReq?: number; closedErrors?: number;
  lat?: Latency; fixedCpuUsPerReq?: number; vcpuPer1000?: number;
  rssSteadyMb?: number[]; rssIdleMb?: number[]; idleCorePct?: number;
  /** The private part (RssAnon) of each proxy's RSS, steady and idle. */
  anonSteadyMb?: number[]; anonIdleMb?: number[];
  added?: { p50: number; p90: number; p99: number; p999: number };
}

const cpuOf = (h: Hop) => h.procs.reduce((s, p) => s + treeCpuMicros(p.pid), 0);
const rssOf = (h: Hop) => h.procs.map((p) => treeMemKb(p.pid, 'VmRSS') / 1024);
const anonOf = (h: Hop) => h.procs.map((p) => treeMemKb(p.pid, 'RssAnon') / 1024);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function measure(arm: HopArm, round: number, upstream: number, dir: string, certs: Certs | null, plan: HopPlan): Promise<HopResult> {
  const h = await arm.start(upstream, dir, certs);
  try {
    if (plan.warmS > 0) await closedLoop(h.port, plan.warmS).catch(() => undefined);
    const c0 = cpuOf(h);
    const t = await closedLoop(h.port, plan.closedS);
    const c1 = cpuOf(h);
    const lat = await fixedRate(h.port, plan.qps, plan.fixedS);
    const c2 = cpuOf(h);
    const r: HopResult = { arm: arm.name, round, about: arm.about, rps: t.rps, closedErrors: t.errors, lat };
    if (h.procs.length) {
      r.cpuUsPerReq = (c1 - c0) / t.requests;
      r.fixedCpuUsPerReq = (c2 - c1) / Math.max(1, lat.calls);
      // vCPU per 1 000 rps: core-seconds per second at the fixed rate, scaled to 1 000 rps.
      r.vcpuPer1000 = ((c2 - c1) / 1e6 / plan.fixedS) * (1000 / plan.qps);
      r.rssSteadyMb = rssOf(h);
      r.anonSteadyMb = anonOf(h);
      // Idle: let connections time out of their busy state, then count CPU over a quiet window.
      await sleep(1000);
      const i0 = cpuOf(h);
      await sleep(plan.idleS * 1000);
      r.idleCorePct = ((cpuOf(h) - i0) / (plan.idleS * 1e6)) * 100;
      r.rssIdleMb = rssOf(h);
      r.anonIdleMb = anonOf(h);
    }
    return r;
  } finally {
    await h.stop();
  }
}

export async function benchHop(plan: HopPlan, only: string[] | null, log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<HopResult[]> {
  const dir = scratchDir();
  const certs = (() => { try { return makeCerts(dir); } catch (e) { log(`certificates: ${(e as Error).message}`); return null; } })();
  warmCompileCache([ROOT, process.env.MESHLET_BEFORE], log);
  const arms = hopArms().filter((a) => only === null || a.name === 'direct' || only.includes(a.name));
  warmPeers(arms.flatMap((a) => a.peers ?? []), log);
  const up = await startProc('upstream', NODE, [join(ROOT, 'bench/upstream.ts'), '--port', '0'], { ready: jsonPort });
  const results: HopResult[] = [];
  try {
    await fixedRate(up.port, plan.qps, Math.min(1, plan.fixedS)).catch(() => undefined);
    let direct: HopResult | null = null;
    for (let round = 1; round <= plan.rounds; round++) {
      for (const arm of arms) {
        const skip = arm.skip();
        if (skip) { if (round === 1) { log(`${arm.name}: skipped (${skip})`); results.push({ arm: arm.name, round, about: arm.about, skipped: skip }); } continue; }
        try {
          log(`${arm.name} (round ${round}): starting`);
          const r = await measure(arm, round, up.port, dir, certs, plan);
          if (arm.name === 'direct') direct = r;
          if (direct && r.lat) {
            const d = direct.lat!;
            r.added = { p50: r.lat.p50 - d.p50, p90: r.lat.p90 - d.p90, p99: r.lat.p99 - d.p99, p999: r.lat.p999 - d.p999 };
          }
          results.push(r);
          log(`${arm.name} (round ${round}): ${r.rps!.toFixed(0)} rps${r.cpuUsPerReq ? `, ${r.cpuUsPerReq.toFixed(1)} µs/req` : ''}, p99 ${r.lat!.p99.toFixed(2)} ms`);
        } catch (e) {
          const msg = (e as Error).message.split('\n')[0].slice(0, 160);
          log(`${arm.name} arm failed: ${msg}`);
          results.push({ arm: arm.name, round, about: arm.about, failed: msg });
        }
      }
    }
  } finally {
    await up.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

const f = (x: number | undefined, d = 0) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d));
const s = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '–' : `${x >= 0 ? '+' : ''}${x.toFixed(d)}`);

export function hopTable(results: HopResult[], plan: HopPlan, tool: string): string {
  const lines = [
    `node ${process.version} · ${cpus().length} cores · closed loop: ${tool}, 1 KB bodies · fixed rate: ${plan.qps} rps open loop · CPU and RSS: both proxies of the hop`,
    '',
    '| arm | round | rps | CPU µs/req (closed) | CPU µs/req @fixed | vCPU /1000 rps | +p50 ms | +p90 ms | +p99 ms | +p99.9 ms | RSS out/in MB steady (private) | RSS out/in MB idle (private) | idle % core | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.skipped || r.failed) { lines.push(`| ${r.arm} | ${r.round} | ${r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.failed!.replaceAll('|', '/')}`} |||||||||||`); continue; }
    const mb = (a?: number[]) => (a && a.length ? a.map((x) => x.toFixed(0)).join(' / ') : '–');
    const rss = (a?: number[], anon?: number[]) => (a && a.length ? `${mb(a)}${anon && anon.length ? ` (${mb(anon)})` : ''}` : '–');
    const errs = (r.closedErrors ?? 0) + (r.lat?.errors ?? 0);
    lines.push(`| ${r.arm} | ${r.round} | ${f(r.rps)} | ${f(r.cpuUsPerReq, 1)} | ${f(r.fixedCpuUsPerReq, 1)} | ${f(r.vcpuPer1000, 3)} | ${s(r.added?.p50)} | ${s(r.added?.p90)} | ${s(r.added?.p99)} | ${s(r.added?.p999)} | ${rss(r.rssSteadyMb, r.anonSteadyMb)} | ${rss(r.rssIdleMb, r.anonIdleMb)} | ${f(r.idleCorePct, 2)} | ${errs} |`);
  }
  return lines.join('\n');
}

/** CPU per request of one arm over another's, closed loop and at the fixed rate, for every round both ran in. */
export function hopRatios(results: HopResult[]): string {
  const lines = ['| CPU µs/req, A ÷ B | round | closed loop | @fixed rate | goal |', '|---|---:|---:|---:|---|'];
  const ok = (r: HopResult | undefined) => (r && !r.skipped && !r.failed ? r : undefined);
  const ratio = (x?: number, y?: number) => (x !== undefined && y ? (x / y).toFixed(2) : '–');
  const rounds = [...new Set(results.map((r) => r.round))].sort((x, y) => x - y);
  for (const { a, b, goal } of HOP_RATIOS) {
    for (const round of rounds) {
      const ra = ok(results.find((r) => r.arm === a && r.round === round));
      const rb = ok(results.find((r) => r.arm === b && r.round === round));
      if (!ra || !rb) continue;
      lines.push(`| ${a} ÷ ${b} | ${round} | ${ratio(ra.cpuUsPerReq, rb.cpuUsPerReq)} | ${ratio(ra.fixedCpuUsPerReq, rb.fixedCpuUsPerReq)} | ${goal} |`);
    }
  }
  return lines.length > 2 ? lines.join('\n') : '';
}

export { memKb };
