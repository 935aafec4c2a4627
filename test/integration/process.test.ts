// The proxy as users run it: `meshlet proxy` child processes, config errors, reloads, draining,
// and memory while streaming 50 MB each way.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { echo, send, serviceYaml, startUpstream, writeConfig, type Upstream } from '../helpers.ts';

const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;
const children: ChildProcess[] = [];
const upstreams: Upstream[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const u of upstreams) await u.close();
});

interface Started { child: ChildProcess; ports: { outbound: number; inbound: number; admin: number }; output: () => string; line: Record<string, unknown> }

async function startChild(args: string[]): Promise<Started> {
  const child = spawn(process.execPath, [BIN, 'proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (c) => { out += c; });
  child.stderr!.on('data', (c) => { out += c; });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const line = out.split('\n').find((l) => l.includes('"meshlet proxy ready"'));
    if (line) return { child, ports: JSON.parse(line).ports, output: () => out, line: JSON.parse(line) };
    if (child.exitCode !== null) throw new Error(`proxy exited ${child.exitCode}: ${out}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`proxy not ready: ${out}`);
}

function rssKb(pid: number, field = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

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
    const SIZE = 50 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 120);
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
        while (sent < size) { sent += chunk.length; if (!res.write(chunk)) { res.once('drain', pump); return; } }
        res.end();
      };
      pump();
    });
    upstreams.push(u);
    const p = await startChild(['--config', writeConfig(serviceYaml('big', [u.port]))]);
    const upload = (size: number) => new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.ports.outbound, method: 'POST', path: '/', agent: false, headers: { host: 'big', 'content-length': String(size) } }, (res) => {
        let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      let sent = 0;
      const pump = () => {
        while (sent < size) { sent += chunk.length; if (!req.write(chunk)) { req.once('drain', pump); return; } }
        req.end();
      };
      pump();
    });
    const download = (path: string) => new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.ports.outbound, path, agent: false, headers: { host: 'big' } }, (res) => {
        let n = 0; res.on('data', (c) => { n += c.length; }); res.on('end', () => resolve(n));
      });
      req.on('error', reject);
      req.end();
    });
    // Warm up both directions (JIT, pools) so the baseline is the working set, not start-up.
    expect(await upload(4 * 1024 * 1024)).toBe(String(4 * 1024 * 1024));
    expect(await download('/small')).toBe(4 * 1024 * 1024);
    const base = rssKb(p.child.pid!);
    expect(await upload(SIZE)).toBe(String(SIZE));
    expect(await download('/')).toBe(SIZE);
    const peak = rssKb(p.child.pid!, 'VmHWM');
    console.log(`rss growth ${((peak - base) / 1024).toFixed(1)} MB`);
    expect((peak - base) / 1024).toBeLessThan(30);
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
