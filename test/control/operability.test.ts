// Operability of the control server, `meshlet ctl` and the proxy's config reporting, on real
// sockets with real servers and child processes: promote moves every route of the host; errors
// go away once the config is good again (control rejections, proxy NACKs, proxy reloads); a dead
// proxy is DISCONNECTED, not SYNCED; a control server without a valid snapshot says so (and is
// not ready); `ctl --server host:port` works and a bad --server is explained.
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startControl, type RunningControl } from '../../control/main.ts';
import { serverBase } from '../../control/ctl.ts';
import { startProxy, type RunningProxy } from '../../proxy/main.ts';
import { startControlClient } from '../../proxy/xds/client.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { echo, send, serviceYaml, startUpstream, writeConfig, type Upstream } from '../helpers.ts';
import { MESH, children, configDir, ctlRun, exited, httpJson, sleep, startMeshlet, waitFor, type Child } from './lib.ts';

const silent = createLogger('silent');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of closers.reverse()) await c();
});

async function control(dir: string): Promise<RunningControl> {
  const c = await startControl({ configDir: dir, port: 0, apiPort: 0, logger: silent, dir: { debounceMs: 50, settleMs: 30, pollMs: 500 } });
  closers.push(() => c.close());
  return c;
}

async function upstream(name: string): Promise<Upstream> {
  const u = await startUpstream(echo(name));
  closers.push(() => u.close());
  return u;
}

async function follower(c: RunningControl, nodeId: string): Promise<{ p: RunningProxy; client: ReturnType<typeof startControlClient> }> {
  const p = await startProxy({ outboundPort: 0, inboundPort: 0, adminPort: 0, logger: silent });
  const client = startControlClient(p, { url: `http://127.0.0.1:${c.ports.discovery}`, nodeId, labels: {}, log: silent });
  closers.push(() => p.drain(100), () => client.stop());
  return { p, client };
}

const proxyView = async (c: RunningControl, node: string) => (await httpJson(c.ports.api, 'GET', '/v1/proxies')).json.proxies.find((x: any) => x.node === node);
const dump = async (p: RunningProxy) => JSON.parse((await send(p.ports.admin, { path: '/config_dump' })).body);

/** reviews v1/v2/v3 with header-matched, mirrored and mixed routes, and another host routing to reviews v1. */
function promoteMesh(ports: { v1: number; v2: number; v3: number; shadow: number }): Record<string, string> {
  return {
    'mesh.yaml': `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${ports.v1} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${ports.v2} }, labels: { version: v2 } }
    - { address: 127.0.0.1, ports: { http: ${ports.v3} }, labels: { version: v3 } }
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
  http:
    - name: jason
      match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews, subset: v3 } }]
    - name: beta
      match: [{ headers: { x-beta: { exact: "1" } } }]
      route: [{ destination: { host: reviews, subset: v1 } }]
      mirror: { host: reviews, subset: v2 }
    - name: mixed
      match: [{ uri: { prefix: /mixed } }]
      route:
        - { destination: { host: reviews, subset: v1 }, weight: 60 }
        - { destination: { host: reviews, subset: v3 }, weight: 20 }
        - { destination: { host: shadow }, weight: 20 }
    - name: default
      route:
        - { destination: { host: reviews, subset: v1 }, weight: 50 }
        - { destination: { host: reviews, subset: v2 }, weight: 50 }
      mirror: { host: shadow }
`,
    'shadow.yaml': serviceYaml('shadow', [ports.shadow]),
    'edge.yaml': `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: edge }
spec:
  hosts: [edge]
  ports: [{ number: 80, name: http }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: edge }
spec:
  hosts: [edge]
  http: [{ name: legacy, route: [{ destination: { host: reviews, subset: v1 } }] }]
`,
  };
}

describe('ctl promote', () => {
  it('moves every route of the host (header-matched and mixed too) to the subset, drops mirrors onto it, keeps others, warns about other VirtualServices; rollback restores', async () => {
    const [v1, v2, v3, shadow] = await Promise.all(['v1', 'v2', 'v3', 'shadow'].map(upstream));
    const dir = configDir(promoteMesh({ v1: v1.port, v2: v2.port, v3: v3.port, shadow: shadow.port }));
    const c = await control(dir);
    const { p } = await follower(c, 'front');
    await waitFor('front has the config', () => p.runtime() !== null);
    const via = async (headers: Record<string, string>, path = '/') => String((await send(p.ports.outbound, { host: 'reviews', path, headers })).headers['x-upstream']);
    expect(await via({ 'end-user': 'jason' })).toBe('v3');
    expect(await via({ 'x-beta': '1' })).toBe('v1');

    // `--server host:port`, no scheme: what operators type.
    const out = await ctlRun(['--server', `127.0.0.1:${c.ports.api}`, 'promote', 'reviews', 'v2']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const version = c.state.current()!.snapshot.version;
    expect(out.stdout).toContain(`promote reviews v2: version ${version}`);
    for (const route of ['jason', 'beta', 'default']) expect(out.stdout).toContain(`reviews [default/reviews] ${route}: v2=100`);
    expect(out.stdout).toContain('reviews [default/reviews] mixed: v2=80 shadow/(all)=20');
    expect(out.stdout).toContain(`WARNING: ${join(dir, 'edge.yaml')} (document 2): VirtualService/edge spec.http[0] (legacy) still sends to reviews v1: promote changed only the VirtualService of reviews (edit that route if it should move too)`);

    await waitFor('front runs the promotion', () => p.runtime()!.snapshot.version === version);
    const routes = Object.fromEntries(p.runtime()!.snapshot.virtualHosts.find((v) => v.service === 'reviews')!.routes.map((r) => [r.name, r]));
    // A mirror onto the promoted subset would send every request to v2 twice: gone. The shadow stays.
    expect(routes.beta.mirrors).toBeUndefined();
    expect(routes.default.mirrors!.map((m) => m.host)).toEqual(['shadow']);
    expect(routes.mixed.destinations.map((d) => [d.host, d.subset, d.weight])).toEqual([['reviews', 'v2', 80], ['shadow', '', 20]]);
    for (const [h, path] of [[{ 'end-user': 'jason' }, '/'], [{ 'x-beta': '1' }, '/'], [{}, '/']] as const) {
      for (let i = 0; i < 10; i++) expect(await via(h, path)).toBe('v2');
    }
    const mixed = new Set<string>();
    for (let i = 0; i < 40; i++) mixed.add(await via({}, '/mixed'));
    expect([...mixed].every((u) => u === 'v2' || u === 'shadow')).toBe(true);
    expect(mixed.has('v2')).toBe(true);

    // remove-version works now that no route needs v1 (before, the jason/beta routes blocked it).
    expect((await httpJson(c.ports.api, 'POST', '/v1/remove-version', { host: 'reviews', subset: 'v1' })).status).toBe(200);
    const back1 = await httpJson(c.ports.api, 'POST', '/v1/rollback', { host: 'reviews' });
    expect(back1.status).toBe(200);
    const back2 = await httpJson(c.ports.api, 'POST', '/v1/rollback', { host: 'reviews' });
    expect(Object.fromEntries(back2.json.routing[0].routes.map((r: any) => [r.route, r.split]))).toEqual({
      jason: { v3: 100 }, beta: { v1: 100 }, mixed: { v1: 60, v3: 20, 'shadow/(all)': 20 }, default: { v1: 50, v2: 50 },
    });
    await waitFor('front runs the rollback', () => p.runtime()!.snapshot.version === c.state.current()!.snapshot.version);
    expect(await via({ 'end-user': 'jason' })).toBe('v3');
    expect(p.runtime()!.snapshot.virtualHosts.find((v) => v.service === 'reviews')!.routes.find((r) => r.name === 'beta')!.mirrors!.length).toBe(1);

    expect((await httpJson(c.ports.api, 'POST', '/v1/promote', { host: 'reviews', subset: 'v9' })).json.error).toBe('host reviews has no subset "v9" (subsets: v1, v2, v3)');
  });
});

describe('errors clear once the config is good again', () => {
  it('a NACK shows while it is current; the next ACK clears it from get proxies and from the proxy /config_dump', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir);
    const { p } = await follower(c, 'front');
    await waitFor('synced', async () => (await proxyView(c, 'front'))?.status === 'SYNCED');
    // An endpoint that is the proxy's own outbound listener: valid for control, a loop for the proxy.
    writeFileSync(join(dir, 'loop.yaml'), serviceYaml('loop', [p.ports.outbound]));
    const nacked = await waitFor('NACKED', async () => { const v = await proxyView(c, 'front'); return v.status === 'NACKED' ? v : undefined; });
    expect(nacked.nacked.error).toContain("is this proxy's own listener");
    expect((await dump(p)).last_error).toContain(`control snapshot ${nacked.sent.version}: `);
    const listed = await ctlRun(['--server', `http://127.0.0.1:${c.ports.api}`, 'get', 'proxies']);
    expect(listed.stdout).toContain("is this proxy's own listener");

    rmSync(join(dir, 'loop.yaml'));
    const synced = await waitFor('SYNCED again', async () => { const v = await proxyView(c, 'front'); return v.status === 'SYNCED' && Number(v.acked.version) > Number(nacked.sent.version) ? v : undefined; });
    expect(synced.nacked).toBeNull();
    expect(synced.nacks).toBe(1);
    const again = await ctlRun(['--server', `http://127.0.0.1:${c.ports.api}`, 'get', 'proxies']);
    const line = again.stdout.split('\n').find((l) => l.startsWith('front'))!;
    expect(line).toContain('SYNCED');
    expect(line).not.toContain('own listener');
    expect((await dump(p)).last_error).toBeNull();
  });

  it('proxy SIGHUP: a rejected file sets last_error; restoring the running content clears it, and every reload is logged', async () => {
    const a = await upstream('a');
    const file = writeConfig(serviceYaml('svc', [a.port]));
    const proc = await startMeshlet(['proxy', '--config', file, '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0'], 'meshlet proxy ready');
    const good = serviceYaml('svc', [a.port]);
    writeFileSync(file, 'kind: ServiceEntry\nspec: [not, valid\n');
    proc.child.kill('SIGHUP');
    await waitFor('rejected', () => proc.output().includes('config rejected'));
    const bad = JSON.parse((await send(proc.ports.admin, { path: '/config_dump' })).body);
    expect(bad.last_error).toContain(file);
    // Reverted: the same content as running, so nothing is applied, but the error is over.
    writeFileSync(file, good);
    proc.child.kill('SIGHUP');
    await waitFor('unchanged reload logged', () => proc.output().includes('config reloaded: unchanged'));
    const fixed = JSON.parse((await send(proc.ports.admin, { path: '/config_dump' })).body);
    expect(fixed.last_error).toBeNull();
    expect(fixed.version).toBe('1');
    proc.child.kill('SIGKILL');
  });
});

describe('proxy liveness as the control server sees it', () => {
  it('a SIGKILLed proxy is DISCONNECTED (was SYNCED), not SYNCED; so is a frozen one that stops heartbeating; a waiting long-poll counts as connected', async () => {
    const c = await control(configDir({ 'mesh.yaml': MESH }));
    const proc: Child = await startMeshlet(['proxy', '--control', `127.0.0.1:${c.ports.discovery}`, '--node-id', 'doomed',
      '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn'], 'meshlet proxy ready');
    await waitFor('synced', async () => (await proxyView(c, 'doomed'))?.status === 'SYNCED');
    proc.child.kill('SIGKILL');
    await exited(proc.child);
    const v = await waitFor('disconnected', async () => { const x = await proxyView(c, 'doomed'); return x.status === 'DISCONNECTED' ? x : undefined; });
    expect(v).toMatchObject({ connected: false, config_status: 'SYNCED', acked: { version: c.state.current()!.snapshot.version } });
    expect(Date.parse(v.disconnected_at)).toBeGreaterThan(Date.now() - 10_000);
    const out = await ctlRun(['--server', `127.0.0.1:${c.ports.api}`, 'get', 'proxies']);
    expect(out.stdout.split('\n').find((l) => l.startsWith('doomed'))).toMatch(/ no +DISCONNECTED \(was SYNCED\)/);

    // Frozen, not dead: the TCP connection stays open (the kernel still ACKs), only the
    // heartbeats stop. The server closes the stream; once thawed the proxy reconnects.
    const fast = await startControl({ configDir: configDir({ 'mesh.yaml': MESH }), port: 0, apiPort: 0, logger: silent, keepaliveMs: 300 });
    closers.push(() => fast.close());
    const frozen = await startMeshlet(['proxy', '--control', `127.0.0.1:${fast.ports.discovery}`, '--node-id', 'frozen',
      '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn'], 'meshlet proxy ready');
    await waitFor('frozen synced', async () => (await proxyView(fast, 'frozen'))?.status === 'SYNCED');
    await sleep(600); // several heartbeat periods while alive: it stays connected
    expect((await proxyView(fast, 'frozen')).status).toBe('SYNCED');
    frozen.child.kill('SIGSTOP');
    await waitFor('silent proxy disconnected', async () => (await proxyView(fast, 'frozen')).status === 'DISCONNECTED', 5_000);
    frozen.child.kill('SIGCONT');
    await waitFor('thawed proxy back', async () => (await proxyView(fast, 'frozen')).status === 'SYNCED', 10_000);
    frozen.child.kill('SIGKILL');

    const have = c.state.current()!.snapshot.version;
    const poll = httpJson(c.ports.discovery, 'GET', `/v1/discovery?node=poller&version_info=${have}&wait_ms=3000`);
    await waitFor('poller listed', async () => (await proxyView(c, 'poller'))?.connected === true);
    expect((await poll).status).toBe(304);
    expect((await proxyView(c, 'poller')).status).toBe('NOT_SENT');
  });
});

describe('control server without a valid snapshot', () => {
  it('after a restart with an invalid directory: says it serves nothing, /ready is 503, ctl does not claim a last good snapshot; a fix makes it ready', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const args = ['control', '--config-dir', dir, '--port', '0', '--api-port', '0'];
    const first = await startMeshlet(args, 'meshlet control ready');
    expect((await httpJson(first.ports.api, 'GET', '/ready')).status).toBe(200);
    first.child.kill('SIGKILL');
    await exited(first.child);
    writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: bad }\nspec:\n  host: nowhere\n');

    const c = await startMeshlet(args, 'meshlet control ready');
    expect(c.output()).toContain('no valid config yet: nothing is served');
    expect(c.output()).not.toContain('last good snapshot stays served');
    const ready = await httpJson(c.ports.api, 'GET', '/ready');
    expect(ready.status).toBe(503);
    expect(ready.json).toMatchObject({ serving: false, version: null, last_error: { errors: [`${join(dir, 'bad.yaml')}: DestinationRule/bad: spec.host: no ServiceEntry defines host "nowhere"`] } });
    expect(ready.json.status).toMatch(/^NO VALID CONFIG: .*no last good snapshot/);
    const health = await httpJson(c.ports.api, 'GET', '/healthz');
    expect(health.status).toBe(200); // liveness: a restart would not fix the directory
    expect(health.json.serving).toBe(false);
    const cfg = await ctlRun(['--server', `127.0.0.1:${c.ports.api}`, 'get', 'config']);
    expect(cfg.stdout).toContain('NO VALID CONFIG');
    expect(cfg.stdout).toContain('no snapshot is served (proxies keep their own last good config)');
    expect(cfg.stdout).not.toContain('still served');
    const op = await httpJson(c.ports.api, 'POST', '/v1/weights', { host: 'reviews', weights: { v1: 100 } });
    expect(op.status).toBe(409);
    expect(op.json.error).toContain('no valid config yet');

    rmSync(join(dir, 'bad.yaml'));
    await waitFor('ready after the fix', async () => (await httpJson(c.ports.api, 'GET', '/ready')).status === 200);
    expect((await httpJson(c.ports.api, 'GET', '/v1/config')).json).toMatchObject({ serving: true, last_error: null });
    await waitFor('recovery logged', () => c.output().includes('config valid again'));
    c.child.kill('SIGKILL');
  });

  it('a rejected edit over a good snapshot says which version is still served', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir);
    writeFileSync(join(dir, 'bad.yaml'), 'kind: [unclosed\n');
    const j = await waitFor('rejected', async () => { const r = (await httpJson(c.ports.api, 'GET', '/v1/config')).json; return r.last_error ? r : undefined; });
    expect(j.status).toBe(`SERVING LAST GOOD ${j.version}: the latest edit was rejected`);
    expect((await httpJson(c.ports.api, 'GET', '/ready')).status).toBe(200);
    const out = await ctlRun(['--server', `127.0.0.1:${c.ports.api}`, 'get', 'config']);
    expect(out.stdout).toContain(`the last good snapshot ${j.version} is still served`);
  });
});

describe('probes', () => {
  it('/healthz and /ready answer kubelet without the token (no config details); the rest of the API still needs it', async () => {
    const dir = configDir({ 'a.yaml': 'kind: [unclosed\n' });
    const c = await startControl({ configDir: dir, port: 0, apiPort: 0, token: 'tok', logger: silent });
    closers.push(() => c.close());
    for (const port of [c.ports.api, c.ports.discovery]) {
      const anon = await httpJson(port, 'GET', '/ready');
      expect(anon.status).toBe(503);
      expect(anon.json.serving).toBe(false);
      expect(anon.json).not.toHaveProperty('last_error');
      expect((await httpJson(port, 'GET', '/healthz')).status).toBe(200);
      expect((await httpJson(port, 'GET', '/ready', undefined, 'tok')).json.last_error.errors[0]).toContain('a.yaml: invalid YAML');
    }
    expect((await httpJson(c.ports.api, 'GET', '/v1/config')).status).toBe(401);
    expect((await httpJson(c.ports.api, 'POST', '/ready')).status).toBe(401);
    const noToken = await ctlRun(['--server', `127.0.0.1:${c.ports.api}`, 'get', 'config']);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('meshlet ctl: 401: missing or invalid bearer token (Authorization: Bearer <token>) (the server wants a token: pass --token-file)');
    writeFileSync(join(dir, 'a.yaml'), MESH);
    await waitFor('ready', async () => (await httpJson(c.ports.api, 'GET', '/ready')).status === 200);
  });
});

describe('ctl --server', () => {
  it('takes host:port, http:// and a path prefix; explains what is wrong with anything else (exit 2)', async () => {
    expect(serverBase('localhost:15014').href).toBe('http://localhost:15014/');
    expect(serverBase('https://mesh.example/ops').href).toBe('https://mesh.example/ops/');
    expect(new URL('v1/proxies', serverBase('http://mesh.example/ops')).href).toBe('http://mesh.example/ops/v1/proxies');
    const c = await control(configDir({ 'mesh.yaml': MESH }));
    for (const server of [`127.0.0.1:${c.ports.api}`, `http://127.0.0.1:${c.ports.api}`, `http://127.0.0.1:${c.ports.api}/`]) {
      const r = await ctlRun(['--server', server, '--json', 'get', 'config']);
      expect(r.code, `${server}: ${r.stderr}`).toBe(0);
      expect(JSON.parse(r.stdout).version).toBe(c.state.current()!.snapshot.version);
    }
    const cases: Array<[string, string]> = [
      ['http://[::1', "meshlet ctl: --server 'http://[::1': not a valid URL (expected http://host:port or host:port, e.g. 127.0.0.1:15014)"],
      ['127.0.0.1:99999', "meshlet ctl: --server '127.0.0.1:99999': not a valid URL"],
      ['ftp://127.0.0.1:21', "meshlet ctl: --server 'ftp://127.0.0.1:21': unsupported scheme 'ftp' (http or https)"],
      ['http://u:p@127.0.0.1:1', 'credentials in the URL are not sent; put the token in a file and pass --token-file'],
      ['', 'meshlet ctl: --server: empty'],
    ];
    for (const [server, msg] of cases) {
      const r = await ctlRun(['--server', server, 'get', 'proxies']);
      expect(r.code, server).toBe(2);
      expect(r.stderr).toContain(msg);
      expect(r.stderr).not.toContain('Invalid URL');
    }
    // A port nothing listens on: bound, then closed.
    const gone = await startUpstream(echo('gone'));
    await gone.close();
    const down = await ctlRun(['--server', `127.0.0.1:${gone.port}`, 'get', 'proxies']);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot reach http://127.0.0.1:${gone.port}: ECONNREFUSED`);
  });
});
