// `meshlet iptables`: the rules (--dry-run), and the real thing in a network namespace this test
// makes: the rules applied with the real iptables-restore inside it, the sidecar running as UID
// 1337 inside it, and a client inside it calling http://reviews:9080 (a name /etc/hosts maps to a
// ClusterIP nothing listens on): the call only succeeds through the capture. Inbound: a client in
// the root namespace calling the pod IP's app port lands on the sidecar's inbound listener. Bytes
// that are not HTTP on a captured port are refused at once, with a log line. Skipped, saying why,
// where the test cannot make namespaces (not root, no `ip netns`, no iptables).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { natRules, captureOptions } from '../../cli/iptables.ts';
import { BIN, waitFor } from '../control/lib.ts';

describe('meshlet iptables --dry-run', () => {
  it('prints the NAT rules: capture to 15001/15006, the sidecar UID/GID, loopback and exclusions exempt', () => {
    const r = spawnSync(process.execPath, [BIN, 'iptables', '--dry-run', '--inbound-ports', '9080,9443', '--exclude-inbound-ports', '9443',
      '--exclude-outbound-ports', '3306,5432', '--exclude-outbound-cidrs', '169.254.169.254/32'], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('*nat');
    expect(lines).toContain('-A MESHLET_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
    expect(lines).toContain('-A MESHLET_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006');
    expect(lines).toContain('-A MESHLET_INBOUND -p tcp --dport 9080 -j MESHLET_IN_REDIRECT');
    expect(lines.some((l) => l.includes('--dport 9443'))).toBe(false);
    expect(lines).toContain('-A MESHLET_OUTPUT -p tcp --dport 3306 -j RETURN');
    expect(lines).toContain('-A MESHLET_OUTPUT -d 169.254.169.254/32 -j RETURN');
    expect(lines).toContain('-A MESHLET_OUTPUT -m owner --uid-owner 1337 -j RETURN');
    expect(lines).toContain('-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN');
    expect(lines).toContain('-A MESHLET_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN');
    expect(lines).toContain('-A MESHLET_OUTPUT -d 127.0.0.1/32 -j RETURN');
    // The catch-all comes after every exemption.
    expect(lines.indexOf('-A MESHLET_OUTPUT -j MESHLET_REDIRECT')).toBeGreaterThan(lines.indexOf('-A MESHLET_OUTPUT -d 169.254.169.254/32 -j RETURN'));
    expect(lines.slice(-4)).toEqual(['-A PREROUTING -p tcp -j MESHLET_INBOUND', '-A OUTPUT -p tcp -j MESHLET_OUTPUT', 'COMMIT', '']);
  });

  it("'*' captures every inbound port but the sidecar's own; bad flags are clear errors", () => {
    const rules = natRules(captureOptions({ 'proxy-uid': 1337, 'proxy-gid': 1337, 'outbound-port': 15001, 'inbound-port': 15006, 'inbound-ports': '*', 'exclude-inbound-ports': '22', 'exclude-outbound-ports': '', 'exclude-outbound-cidrs': '', 'include-outbound-cidrs': '*' }));
    for (const p of [15000, 15001, 15006, 15021, 22]) expect(rules).toContain(`-A MESHLET_INBOUND -p tcp --dport ${p} -j RETURN`);
    expect(rules).toContain('-A MESHLET_INBOUND -p tcp -j MESHLET_IN_REDIRECT');
    // Rerun: the jumps exist, only our chains are rewritten.
    expect(natRules(captureOptions({ 'proxy-uid': 1337, 'proxy-gid': 1337, 'outbound-port': 15001, 'inbound-port': 15006, 'inbound-ports': '', 'exclude-inbound-ports': '', 'exclude-outbound-ports': '', 'exclude-outbound-cidrs': '', 'include-outbound-cidrs': '*' }), true)).not.toContain('-A OUTPUT');
    const bad = spawnSync(process.execPath, [BIN, 'iptables', '--dry-run', '--exclude-outbound-ports', '99999'], { encoding: 'utf8', timeout: 15_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("--exclude-outbound-ports: '99999' is not a port");
    const cidr = spawnSync(process.execPath, [BIN, 'iptables', '--dry-run', '--exclude-outbound-cidrs', '10.0.0.0/40'], { encoding: 'utf8', timeout: 15_000 });
    expect(cidr.status).toBe(2);
    expect(cidr.stderr).toContain('is not a CIDR');
  });
});

// ---- the real network-namespace test ----

const NS = `meshlet-t${process.pid}`;
const SUB = `10.251.${process.pid % 250}`;
const HOST_IF = `mlh${process.pid % 100000}`;
const POD_IF = `mlp${process.pid % 100000}`;
const POD_IP = `${SUB}.2`;
const HOST_IP = `${SUB}.1`;
const CLUSTER_IP = '10.96.77.10';

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}

/** Why this machine cannot run the namespace test, or null when it can (the namespace is then made). */
function setUp(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (to make a network namespace and run iptables in it)';
  for (const bin of ['ip', 'iptables-restore', 'setpriv']) if (!run('sh', ['-c', `command -v ${bin}`]).ok) return `no ${bin} on this machine`;
  const steps: Array<[string, string[]]> = [
    ['ip', ['netns', 'add', NS]],
    ['ip', ['link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', POD_IF]],
    ['ip', ['link', 'set', POD_IF, 'netns', NS]],
    ['ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', HOST_IF]],
    ['ip', ['link', 'set', HOST_IF, 'up']],
    ['ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']],
    ['ip', ['netns', 'exec', NS, 'ip', 'addr', 'add', `${POD_IP}/24`, 'dev', POD_IF]],
    ['ip', ['netns', 'exec', NS, 'ip', 'link', 'set', POD_IF, 'up']],
    ['ip', ['netns', 'exec', NS, 'ip', 'route', 'add', 'default', 'via', HOST_IP]],
  ];
  for (const [c, a] of steps) {
    const r = run(c, a);
    if (!r.ok) return `cannot make the network namespace (${c} ${a.join(' ')}: ${r.out.trim()})`;
  }
  // `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: the pod's DNS for the test.
  mkdirSync(`/etc/netns/${NS}`, { recursive: true });
  writeFileSync(`/etc/netns/${NS}/hosts`, `127.0.0.1 localhost\n${CLUSTER_IP} reviews reviews.default.svc.cluster.local\n`);
  return null;
}

let skip: string | null = null;
let upstream: Server;
let upstreamPort = 0;
const procs: ChildProcess[] = [];
let proxyOut = '';

function inNs(args: string[], asProxy = false): ChildProcess {
  const cmd = ['netns', 'exec', NS, ...(asProxy ? ['setpriv', '--reuid=1337', '--regid=1337', '--clear-groups'] : []), ...args];
  const c = spawn('ip', cmd, { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(c);
  return c;
}

function nsNode(script: string, timeoutMs = 15_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = inNs([process.execPath, '-e', script]);
    let out = '';
    c.stdout!.on('data', (d) => { out += d; });
    c.stderr!.on('data', (d) => { out += d; });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => { clearTimeout(t); resolve({ code, out }); });
  });
}

beforeAll(async () => {
  skip = setUp();
  if (skip) { console.warn(`SKIPPED the network-namespace interception test: ${skip}`); return; }
  // The "reviews" pod: another pod, in the root namespace, reached over the veth.
  upstream = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ pod: 'reviews-1', path: req.url, host: req.headers.host, requestId: req.headers['x-request-id'] ?? null }));
  });
  await new Promise<void>((r) => upstream.listen(0, HOST_IP, () => r()));
  upstreamPort = (upstream.address() as { port: number }).port;
  // The rules, applied for real inside the namespace.
  const ipt = run('ip', ['netns', 'exec', NS, process.execPath, BIN, 'iptables', '--inbound-ports', '9080']);
  if (!ipt.ok) throw new Error(`meshlet iptables failed in the namespace: ${ipt.out}`);
  // The sidecar, as UID/GID 1337, with a static config (the control server is not under test here).
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-ipt-'));
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'mesh.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http}]
  endpoints: [{address: ${HOST_IP}, ports: {http: ${upstreamPort}}}]
`);
  chmodSync(join(dir, 'mesh.yaml'), 0o644);
  const proxy = inNs([process.execPath, BIN, 'proxy', '--config', join(dir, 'mesh.yaml'), '--namespace', 'default', '--service', 'reviews',
    '--bind', '127.0.0.1', '--inbound-bind', '0.0.0.0', '--app-port', '9080', '--log-level', 'warn'], true);
  proxy.stdout!.on('data', (d) => { proxyOut += d; });
  proxy.stderr!.on('data', (d) => { proxyOut += d; });
  await waitFor('sidecar ready', () => proxyOut.includes('meshlet proxy ready') || (proxy.exitCode !== null ? Promise.reject(new Error(proxyOut)) : false), 20_000);
  // The app in the pod, on 127.0.0.1:9080 behind the inbound listener.
  const app = inNs([process.execPath, '-e', "require('http').createServer((q,s)=>{s.end('app:'+q.url+':'+(q.headers['x-request-id']?'via-sidecar':'direct'))}).listen(9080,'127.0.0.1',()=>console.log('app ready'))"]);
  let appOut = '';
  app.stdout!.on('data', (d) => { appOut += d; });
  await waitFor('app ready', () => appOut.includes('app ready'), 15_000);
}, 60_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 100));
  if (upstream) await new Promise<void>((r) => { upstream.close(() => r()); upstream.closeAllConnections(); });
  if (skip === null) {
    run('ip', ['netns', 'del', NS]);          // takes the veth pair with it
    rmSync(`/etc/netns/${NS}`, { recursive: true, force: true });
  }
});

describe('transparent interception in a real network namespace', () => {
  it('a client in the pod calling http://reviews:9080 goes through the sidecar (routed by Host)', async (ctx) => {
    if (skip) ctx.skip();
    const r = await nsNode("fetch('http://reviews:9080/reviews/1').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.json() }))).catch((e) => { console.log('ERR ' + e.cause?.code + ' ' + e.message); process.exit(1); })");
    expect(r.out).not.toContain('ERR');
    const res = JSON.parse(r.out.trim().split('\n').pop()!);
    expect(res.status).toBe(200);
    expect(res.body.pod).toBe('reviews-1');
    expect(res.body.path).toBe('/reviews/1');
    // The sidecar added a request id: the request went through it, not to the (empty) ClusterIP.
    expect(res.body.requestId).toMatch(/\S/);
  });

  it('inbound: a client outside calling the pod IP on the app port reaches the app through the inbound listener', async (ctx) => {
    if (skip) ctx.skip();
    const body = await new Promise<string>((resolve, reject) => {
      const q = request({ host: POD_IP, port: 9080, path: '/hello', agent: false }, (res) => { let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(b)); });
      q.on('error', reject);
      q.setTimeout(10_000, () => q.destroy(new Error('timeout')));
      q.end();
    });
    expect(body).toBe('app:/hello:via-sidecar');
  });

  it('bytes that are not HTTP on a captured port are refused at once, with a log line (never hung)', async (ctx) => {
    if (skip) ctx.skip();
    const script = `const s = require('net').connect(9080, '${CLUSTER_IP}', () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03])));
      let got = ''; s.on('data', (d) => { got += d; }); const t0 = Date.now();
      const hung = setTimeout(() => { console.log('HUNG'); process.exit(1); }, 8000);
      s.on('close', () => { clearTimeout(hung); console.log(JSON.stringify({ closedAfterMs: Date.now() - t0, first: got.split('\\r\\n')[0] })); });`;
    const r = await nsNode(script);
    expect(r.out).not.toContain('HUNG');
    const res = JSON.parse(r.out.trim().split('\n').pop()!);
    expect(res.first).toBe('HTTP/1.1 400 Bad Request');
    await waitFor('log line', () => proxyOut.includes('not HTTP/1'), 5_000);
  });
});
