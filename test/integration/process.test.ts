// The proxy as users run it: `meshlet proxy` child processes, config errors, reloads, draining,
// and memory while streaming 50 MB each way.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { createServer as netServer, type Server as NetServer } from 'node:net';
import { echo, send, serviceYaml, spawnProxy, startProxyProcess, startUpstream, writeConfig, type ProxyProcess, type SpawnedProxy, type Upstream } from '../helpers.ts';
import { mergePrometheus, restartDelay, sumEnvoyStats, MAX_START_FAILURES } from '../../proxy/workers.ts';

const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;
const children: ChildProcess[] = [];
const upstreams: Upstream[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const u of upstreams) await u.close();
});

async function startChild(args: string[]): Promise<ProxyProcess> {
  const p = await startProxyProcess(args);
  children.push(p.child);
  return p;
}

/** Poll (bounded) until requests for `host` reach upstream `name`; returns the last one seen. */
async function routedTo(port: number, host: string, name: string, ms = 6000): Promise<string> {
  const deadline = Date.now() + ms;
  let who = '';
  while (Date.now() < deadline) {
    who = String((await send(port, { host })).headers['x-upstream']);
    if (who === name) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return who;
}

function rssKb(pid: number, field = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

const SIZE = 50 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 120);

/** An upstream that counts POSTed bytes, and serves 50 MB (4 MB at /small) to a GET. */
async function bigUpstream(): Promise<Upstream> {
  const u = await startUpstream((req, res) => {
    if (req.method === 'POST') {
      let n = 0;
      req.on('data', (c) => { n += c.length; });
      req.on('end', () => res.end(String(n)));
      return;
    }
    const size = req.url === '/small' ? 4 * 1024 * 1024 : SIZE;
    res.writeHead(200, { 'content-length': String(size) });
    let sent = 0;
    const pump = () => {
      while (sent < size) { sent += CHUNK.length; if (!res.write(CHUNK)) { res.once('drain', pump); return; } }
      res.end();
    };
    pump();
  });
  upstreams.push(u);
  return u;
}

/** POST `size` bytes through the proxy to host `big`; resolves with the upstream's count. */
function upload(port: number, size: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: { host: 'big', 'content-length': String(size) } }, (res) => {
      let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(b));
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < size) { sent += CHUNK.length; if (!req.write(CHUNK)) { req.once('drain', pump); return; } }
      req.end();
    };
    pump();
  });
}

function download(port: number, path: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers: { host: 'big' } }, (res) => {
      let n = 0; res.on('data', (c) => { n += c.length; }); res.on('end', () => resolve(n));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Listen on `port` (0 = any) without SO_REUSEPORT; rejects if it is taken. */
function hold(port: number): Promise<NetServer> {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}
const release = (s: NetServer) => new Promise<void>((r) => s.close(() => r()));

/** A base port B with B, B+1 and B+6 free: the default layout (admin 15000, outbound 15001, inbound 15006) shifted. */
async function defaultLikePorts(): Promise<{ admin: number; outbound: number; inbound: number }> {
  for (let i = 0; i < 50; i++) {
    const s = await hold(0);
    const b = (s.address() as { port: number }).port;
    await release(s);
    if (b + 6 > 65535) continue;
    const got: NetServer[] = [];
    try {
      for (const p of [b, b + 1, b + 6]) got.push(await hold(p));
      return { admin: b, outbound: b + 1, inbound: b + 6 };
    } catch { /* taken: try another base */ } finally {
      for (const g of got) await release(g);
    }
  }
  throw new Error('no free default-like port layout found');
}

/** Start `meshlet proxy` with explicit ports (startChild forces 0) and wait for its ready line or its exit. */
async function startWithPorts(args: string[], ms = 20_000): Promise<SpawnedProxy> {
  const p = await spawnProxy(args, ms);
  children.push(p.child);
  return p;
}

/**
 * `meshlet proxy --workers 2` whose outbound port `port` is held by the test: resolves once the
 * primary reported the first failed worker start (bounded wait), with the process still running.
 */
async function workersRetrying(yaml: string, port: number): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [BIN, 'proxy', '--config', writeConfig(yaml), '--workers', '2', '--log-level', 'warn',
    '--admin-port', '0', '--outbound-port', String(port), '--inbound-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (c) => { out += c; });
  child.stderr!.on('data', (c) => { out += c; });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !out.includes('worker failed to start; retrying')) await new Promise((r) => setTimeout(r, 25));
  expect(out).toContain('worker failed to start; retrying');
  return { child, output: () => out };
}

describe('workers: supervision pieces', () => {
  it('restart backoff: at once after a worker that ran, then 100 ms doubling to 10 s', () => {
    expect([0, 1, 2, 3, 4, 8, 20].map(restartDelay)).toEqual([0, 100, 200, 400, 800, 10_000, 10_000]);
    expect(MAX_START_FAILURES).toBe(5);
  });

  it('summed Envoy stats: counters and gauges add up, per-worker cluster state is the max', () => {
    const a = 'cluster.c;.membership_total: 3\ncluster.c;.upstream_rq_total: 5\ncluster.c;.circuit_breakers.default.rq_open: 0\nhttp.outbound.downstream_cx_active: 2\n';
    const b = 'cluster.c;.membership_total: 3\ncluster.c;.upstream_rq_total: 7\ncluster.c;.circuit_breakers.default.rq_open: 1\nhttp.outbound.downstream_cx_active: 1\nx.only_here: 4\n';
    expect(sumEnvoyStats([a, b])).toBe('cluster.c;.circuit_breakers.default.rq_open: 1\ncluster.c;.membership_total: 3\ncluster.c;.upstream_rq_total: 12\n'
      + 'http.outbound.downstream_cx_active: 3\nx.only_here: 4\n');
  });

  it('merged Prometheus text: HELP/TYPE once per family, a worker label on every sample, with or without labels', () => {
    const w = (v: number) => `# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} ${v}\n# TYPE b gauge\nb ${v}\nb{} ${v}\n`;
    expect(mergePrometheus([{ index: 0, t: w(1) }, { index: 1, t: w(2) }])).toBe(
      '# HELP a_total A.\n# TYPE a_total counter\na_total{worker="0",x="1"} 1\na_total{worker="1",x="1"} 2\n'
      + '# TYPE b gauge\nb{worker="0"} 1\nb{worker="0"} 1\nb{worker="1"} 2\nb{worker="1"} 2\n');
  });
});

describe('meshlet proxy process', () => {
  it('invalid config at start exits non-zero with the message naming file, resource and field', () => {
    const file = writeConfig(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: broken }
spec:
  hosts: [x]
  http:
    - route:
        - { destination: { host: x }, weight: 90 }
      timout: 1s
`);
    const r = spawnSync(process.execPath, [BIN, 'proxy', '--config', file, '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0'], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`${file}: VirtualService/broken: spec.http[0].timout: unknown field`);
  });

  it('SIGHUP reloads a valid config; an invalid one is rejected and the old config stays in force', async () => {
    const a = await startUpstream(echo('a'));
    const b = await startUpstream(echo('b'));
    upstreams.push(a, b);
    const file = writeConfig(serviceYaml('svc', [a.port]));
    const p = await startChild(['--config', file]);
    expect((await send(p.ports.outbound, { host: 'svc' })).headers['x-upstream']).toBe('a');
    writeFileSync(file, 'kind: ServiceEntry\nspec: [not, valid\n');
    p.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    expect(p.output()).toContain('config rejected');
    expect((await send(p.ports.outbound, { host: 'svc' })).headers['x-upstream']).toBe('a');
    const dump = JSON.parse((await send(p.ports.admin, { path: '/config_dump' })).body);
    expect(dump.version).toBe('1');
    expect(dump.last_error).toContain(file);
    writeFileSync(file, serviceYaml('svc', [b.port]));
    p.child.kill('SIGHUP');
    const deadline = Date.now() + 3000;
    let who = '';
    while (Date.now() < deadline && who !== 'b') { who = String((await send(p.ports.outbound, { host: 'svc' })).headers['x-upstream']); await new Promise((r) => setTimeout(r, 50)); }
    expect(who).toBe('b');
    expect(JSON.parse((await send(p.ports.admin, { path: '/config_dump' })).body).version).toBe('2');
  });

  it('--watch follows atomic saves (write a temporary, rename it over the file) again and again', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(echo(n))));
    upstreams.push(...ups);
    const file = writeConfig(serviceYaml('svc', [ups[0].port]));
    const p = await startChild(['--config', file, '--watch']);
    expect(await routedTo(p.ports.outbound, 'svc', 'a')).toBe('a');
    // An editor's save: the new text goes to a temporary beside the file, renamed over it (a new
    // inode each time; a watch on the file itself goes deaf after the first one).
    const save = (text: string) => { writeFileSync(`${file}.tmp~`, text); renameSync(`${file}.tmp~`, file); };
    for (const [i, next] of [1, 2, 0, 1].entries()) {
      save(serviceYaml('svc', [ups[next].port]));
      const name = ['a', 'b', 'c'][next];
      expect([i, await routedTo(p.ports.outbound, 'svc', name)]).toEqual([i, name]);
    }
    // A broken save is rejected (the old config stays), the next good one is applied.
    save('kind: ServiceEntry\nspec: [not, valid\n');
    const deadline = Date.now() + 6000;
    while (Date.now() < deadline && !p.output().includes('config rejected')) await new Promise((r) => setTimeout(r, 50));
    expect(p.output()).toContain('config rejected');
    expect(String((await send(p.ports.outbound, { host: 'svc' })).headers['x-upstream'])).toBe('b');
    save(serviceYaml('svc', [ups[2].port]));
    expect(await routedTo(p.ports.outbound, 'svc', 'c')).toBe('c');
    p.child.kill('SIGKILL');
  });

  it('--watch follows a Kubernetes ConfigMap volume: the ..data symlink swapped to a new directory', async () => {
    const ups = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(echo(n))));
    upstreams.push(...ups);
    // The kubelet's layout: <vol>/..<timestamp>/mesh.yaml, <vol>/..data -> ..<timestamp>,
    // <vol>/mesh.yaml -> ..data/mesh.yaml; an update writes a new timestamped directory, points
    // a temporary symlink at it and renames that over ..data, then removes the old directory.
    const vol = mkdtempSync(join(tmpdir(), 'meshlet-configmap-'));
    let gen = 0;
    const publish = (text: string) => {
      const dir = `..2026_12_01_00_00_0${gen++}`;
      mkdirSync(join(vol, dir));
      writeFileSync(join(vol, dir, 'mesh.yaml'), text);
      symlinkSync(dir, join(vol, '..data_tmp'));
      renameSync(join(vol, '..data_tmp'), join(vol, '..data'));
      if (gen > 1) rmSync(join(vol, `..2026_12_01_00_00_0${gen - 2}`), { recursive: true });
    };
    publish(serviceYaml('svc', [ups[0].port]));
    symlinkSync('..data/mesh.yaml', join(vol, 'mesh.yaml'));
    // Both ways of pointing at it: the mounted directory, and the file inside it.
    const p = await startChild(['--config', vol, '--watch']);
    const q = await startChild(['--config', join(vol, 'mesh.yaml'), '--watch']);
    expect(await routedTo(p.ports.outbound, 'svc', 'a')).toBe('a');
    expect(await routedTo(q.ports.outbound, 'svc', 'a')).toBe('a');
    for (const next of [1, 2, 1]) {
      publish(serviceYaml('svc', [ups[next].port]));
      const name = ['a', 'b', 'c'][next];
      expect(await routedTo(p.ports.outbound, 'svc', name)).toBe(name);
      expect(await routedTo(q.ports.outbound, 'svc', name)).toBe(name);
    }
    p.child.kill('SIGKILL');
    q.child.kill('SIGKILL');
    rmSync(vol, { recursive: true, force: true });
  });

  it('SIGTERM stops accepting, lets the in-flight request finish, and exits 0', async () => {
    const slow = await startUpstream((_req, res) => { setTimeout(() => res.end('slow done'), 600); });
    upstreams.push(slow);
    const p = await startChild(['--config', writeConfig(serviceYaml('slow', [slow.port]))]);
    const inflight = send(p.ports.outbound, { host: 'slow' });
    await new Promise((r) => setTimeout(r, 150));
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
    p.child.kill('SIGTERM');
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(r.body).toBe('slow done');
    expect(await exited).toBe(0);
  });

  it('streams a 50 MB upload and a 50 MB download with RSS growth under 30 MB', async () => {
    const u = await bigUpstream();
    const p = await startChild(['--config', writeConfig(serviceYaml('big', [u.port]))]);
    // Warm up both directions (JIT, pools) so the baseline is the working set, not start-up.
    expect(await upload(p.ports.outbound, 4 * 1024 * 1024)).toBe(String(4 * 1024 * 1024));
    expect(await download(p.ports.outbound, '/small')).toBe(4 * 1024 * 1024);
    const base = rssKb(p.child.pid!);
    expect(await upload(p.ports.outbound, SIZE)).toBe(String(SIZE));
    expect(await download(p.ports.outbound, '/')).toBe(SIZE);
    const peak = rssKb(p.child.pid!, 'VmHWM');
    console.log(`rss growth ${((peak - base) / 1024).toFixed(1)} MB`);
    expect((peak - base) / 1024).toBeLessThan(30);
  });

  it('after idling (the memory guard has slowed to one check a second) a 50 MB upload is still bounded', async () => {
    const u = await bigUpstream();
    const p = await startChild(['--config', writeConfig(serviceYaml('big', [u.port]))]);
    expect(await upload(p.ports.outbound, 4 * 1024 * 1024)).toBe(String(4 * 1024 * 1024));
    // Quiet checks double the interval 20 ms -> 1 s: after 2.5 s idle it is at its slowest, and
    // the next request must bring it back to full rate at once.
    await new Promise((r) => setTimeout(r, 2500));
    const base = rssKb(p.child.pid!);
    expect(await upload(p.ports.outbound, SIZE)).toBe(String(SIZE));
    const peak = rssKb(p.child.pid!, 'VmHWM');
    console.log(`rss growth after idle ${((peak - base) / 1024).toFixed(1)} MB`);
    expect((peak - base) / 1024).toBeLessThan(30);
  });

  it('--workers 2 with the default port layout: no admin port collides; the primary admin serves /ready, /workers, merged metrics', async () => {
    const u = await startUpstream(echo('w'));
    upstreams.push(u);
    const ports = await defaultLikePorts();
    const p = await startWithPorts(['--config', writeConfig(serviceYaml('w', [u.port])), '--workers', '2', '--log-level', 'warn',
      '--admin-port', String(ports.admin), '--outbound-port', String(ports.outbound), '--inbound-port', String(ports.inbound)]);
    expect(p.line, p.output()).not.toBeNull();
    expect(p.line!.ports).toEqual(ports);
    const admins = p.line!.admin_ports as number[];
    expect(admins).toHaveLength(2);
    expect(new Set([...admins, ports.admin, ports.outbound, ports.inbound]).size).toBe(5);
    for (let i = 0; i < 60; i++) expect((await send(ports.outbound, { host: 'w' })).status).toBe(200);
    const ready = await send(ports.admin, { path: '/ready' });
    expect([ready.status, ready.body]).toEqual([200, 'LIVE\n']);
    const workers = JSON.parse((await send(ports.admin, { path: '/workers' })).body) as Array<{ index: number; ready: boolean; admin_port: number }>;
    expect(workers.map((w) => [w.index, w.ready, w.admin_port])).toEqual([[0, true, admins[0]], [1, true, admins[1]]]);
    // Each worker's own admin answers; the primary's metrics carry every worker's, labelled.
    for (const a of admins) expect((await send(a, { path: '/ready' })).body).toContain('LIVE');
    const prom = (await send(ports.admin, { path: '/stats/prometheus' })).body;
    const served = [0, 1].map((k) => {
      const m = new RegExp(`^envoy_http_downstream_rq_total\\{worker="${k}",[^}]*http_conn_manager_prefix="outbound"[^}]*\\} (\\d+)`, 'm').exec(prom);
      return m ? Number(m[1]) : -1;
    });
    expect(served[0] + served[1], prom.slice(0, 2000)).toBe(60);
    expect(prom.match(/^# TYPE envoy_http_downstream_rq_total /gm)).toHaveLength(1);
    // Envoy text on the primary: one process's view (the filter goes to the workers).
    const text = (await send(ports.admin, { path: '/stats?filter=outbound' })).body;
    expect(text).toContain('http.outbound.downstream_rq_total: 60\n');
    expect(text).toContain('cluster.outbound|80||w;.membership_total: 1\n');
    expect(text).not.toContain('http.inbound.');
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
    p.child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('--workers 2: a worker that cannot bind is retried with backoff; once the port frees up the proxy starts', async () => {
    const u = await startUpstream(echo('w'));
    upstreams.push(u);
    const blocker = await hold(0);
    const port = (blocker.address() as { port: number }).port;
    const { child, output } = await workersRetrying(serviceYaml('w', [u.port]), port);
    // Release the port once the first failed start was reported; the retry then succeeds (bounded wait).
    await release(blocker);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !output().includes('"meshlet proxy ready"') && child.exitCode === null) await new Promise((r) => setTimeout(r, 25));
    expect(output()).toContain('"meshlet proxy ready"');
    expect((await send(port, { host: 'w' })).status).toBe(200);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('--workers 2: SIGTERM while a worker is still being retried stops the primary (exit 0)', async () => {
    const blocker = await hold(0);
    const port = (blocker.address() as { port: number }).port;
    try {
      const { child, output } = await workersRetrying(serviceYaml('w', [1]), port);
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(output()).not.toContain('"meshlet proxy ready"');
    } finally {
      await release(blocker);
    }
  });

  it('--workers 2: when no worker can run (listener port taken for good) the primary exits non-zero', async () => {
    const blocker = await hold(0);
    const port = (blocker.address() as { port: number }).port;
    try {
      const p = await startWithPorts(['--config', writeConfig(serviceYaml('w', [1])), '--workers', '2', '--log-level', 'warn',
        '--admin-port', '0', '--outbound-port', String(port), '--inbound-port', '0'], 40_000);
      expect(p.line).toBeNull();
      expect(p.code).toBe(1);
      expect(p.output().match(/worker failed to start; retrying/g)).toHaveLength(4); // 5 starts in all
      expect(p.output()).toContain('cannot start; exiting');
      expect(p.output()).toContain('EADDRINUSE');
    } finally {
      await release(blocker);
    }
  });

  it('--workers 2: two processes share the ports (SO_REUSEPORT), each serves, SIGTERM stops all', async () => {
    const u = await startUpstream(echo('w'));
    upstreams.push(u);
    const p = await startChild(['--config', writeConfig(serviceYaml('w', [u.port])), '--workers', '2', '--log-level', 'warn']);
    const admins = p.line.admin_ports as number[];
    expect(admins).toHaveLength(2);
    expect(new Set(admins).size).toBe(2);
    // Fresh connections: the kernel spreads them over the workers by 4-tuple hash.
    for (let i = 0; i < 120; i++) expect((await send(p.ports.outbound, { host: 'w' })).status).toBe(200);
    const served = [];
    for (const a of admins) {
      const text = await (await fetch(`http://127.0.0.1:${a}/stats?filter=downstream_rq_total`)).text();
      served.push(Number(/http\.outbound\.downstream_rq_total: (\d+)/.exec(text)![1]));
    }
    expect(served[0] + served[1]).toBe(120);
    expect(Math.min(...served)).toBeGreaterThan(0);
    const exited = new Promise<number | null>((r) => p.child.once('exit', (code) => r(code)));
    p.child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
