// End to end with real processes on loopback: `meshlet control` + three `meshlet proxy`
// sidecars (a caller "front" and two "reviews" sidecars that register their apps) + two app
// upstreams. Canary split moved by `meshlet ctl`, a rejected edit, a NACK, control loss and
// resync, endpoint registration and removal, and the bearer token.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { echo, startUpstream, type Upstream } from '../helpers.ts';
import { BIN, MESH, children, configDir, exited, httpJson, load, startMeshlet, waitFor, type Child } from './lib.ts';

const TOKEN = 's3cret-token-for-tests';
const upstreams: Upstream[] = [];
let dir: string;
let tokenFile: string;
let control: Child;
let front: Child;
let r1: Child;
let r2: Child;

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const u of upstreams) await u.close();
});

function ctl(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [BIN, 'ctl', '--server', `http://127.0.0.1:${control.ports.api}`, '--token-file', tokenFile, ...args], { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

const api = (method: string, path: string, body?: unknown) => httpJson(control.ports.api, method, path, body, TOKEN);
const proxies = async () => (await api('GET', '/v1/proxies')).json.proxies as any[];
const allSynced = async (n: number) => {
  const ps = await proxies();
  const v = (await api('GET', '/v1/config')).json.version;
  return ps.length === n && ps.every((p) => p.connected && p.status === 'SYNCED' && p.acked?.version === v) ? ps : undefined;
};

async function startControlChild(ports?: { discovery: number; api: number }): Promise<Child> {
  return startMeshlet(['control', '--config-dir', dir, '--port', String(ports?.discovery ?? 0), '--api-port', String(ports?.api ?? 0),
    '--token-file', tokenFile, '--endpoint-ttl', '3', '--log-level', 'warn'], 'meshlet control ready');
}

beforeAll(async () => {
  dir = configDir({ 'mesh.yaml': MESH });
  tokenFile = join(dir, '.token'); // hidden: not read as config
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const v1 = await startUpstream(echo('v1'));
  const v2 = await startUpstream(echo('v2'));
  upstreams.push(v1, v2);
  control = await startControlChild();
  const url = `http://127.0.0.1:${control.ports.discovery}`;
  const common = ['--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--control', url, '--control-token-file', tokenFile, '--log-level', 'warn'];
  [front, r1, r2] = await Promise.all([
    startMeshlet(['proxy', ...common, '--node-id', 'front'], 'meshlet proxy ready'),
    startMeshlet(['proxy', ...common, '--node-id', 'reviews-v1', '--service', 'reviews', '--labels', 'version=v1', '--app-port', String(v1.port)], 'meshlet proxy ready'),
    startMeshlet(['proxy', ...common, '--node-id', 'reviews-v2', '--service', 'reviews', '--labels', 'version=v2', '--app-port', String(v2.port)], 'meshlet proxy ready'),
  ]);
  await waitFor('both endpoints registered', async () => (await api('GET', '/v1/endpoints')).json.endpoints.length === 2);
  await waitFor('3 proxies synced', () => allSynced(3));
});

describe('control + 3 sidecars (real processes)', () => {
  it('requires the bearer token on discovery and ops ports (401 without it)', async () => {
    for (const port of [control.ports.discovery, control.ports.api]) {
      expect((await httpJson(port, 'GET', '/v1/proxies')).status).toBe(401);
      expect((await httpJson(port, 'POST', '/v1/discovery', { node: { id: 'x' } }, 'wrong')).status).toBe(401);
    }
    expect((await api('GET', '/v1/proxies')).status).toBe(200);
    const r = spawnSync(process.execPath, [BIN, 'ctl', '--server', `http://127.0.0.1:${control.ports.api}`, 'get', 'proxies'], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('401');
  });

  it('ctl weights moves the observed split within 3 points over 5000 requests, with no failed request during the change', async () => {
    const before = await load(front.ports.outbound, 'reviews', 1000);
    expect(before.failed, before.errors.join(', ')).toBe(0);
    expect(Math.abs(before.by.v2 / before.total - 0.5)).toBeLessThan(0.06);
    // The change lands in the middle of a running load: not one request may fail.
    let ctlOut = '';
    let doneAtChange = -1;
    const during = await load(front.ports.outbound, 'reviews', 4000, {
      during: async (completed) => {
        await new Promise((r) => setTimeout(r, 100));
        ctlOut = await new Promise<string>((resolve) => {
          const c = spawn(process.execPath, [BIN, 'ctl', '--server', `http://127.0.0.1:${control.ports.api}`, '--token-file', tokenFile, 'weights', 'reviews', 'v1=20', 'v2=80']);
          let o = '';
          c.stdout.on('data', (d) => { o += d; });
          c.on('exit', () => resolve(o));
        });
        await waitFor('front ACKs the change', async () => { const p = (await proxies()).find((x) => x.node === 'front'); return p.status === 'SYNCED' && p.acked.version === (await api('GET', '/v1/config')).json.version; });
        doneAtChange = completed();
      },
    });
    expect(ctlOut).toContain('v1=20 v2=80');
    // The change was applied while requests were still being sent.
    expect(doneAtChange).toBeGreaterThan(0);
    expect(doneAtChange).toBeLessThan(during.total);
    expect(during.failed, during.errors.join(', ')).toBe(0);
    await waitFor('proxies ACK the new weights', () => allSynced(3));
    const after = await load(front.ports.outbound, 'reviews', 5000);
    expect(after.failed).toBe(0);
    expect(after.total).toBe(5000);
    expect(Math.abs((after.by.v2 / after.total) * 100 - 80)).toBeLessThanOrEqual(3);
    // Written back to the config directory as YAML, so a restart or `git diff` shows it.
    const config = ctl('get', 'config');
    expect(config.out).toContain('ops overrides');
    expect(config.out).toContain('v1=20 v2=80');
  });

  it('a bad YAML edit is rejected with file, resource and field; traffic is unaffected', async () => {
    const version = (await api('GET', '/v1/config')).json.version;
    writeFileSync(join(dir, 'broken.yaml'), 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: broken }\nspec:\n  hosts: [x]\n  http:\n    - route: [{ destination: { host: reviews } }]\n      timout: 1s\n');
    const out = await waitFor('rejection shown', () => { const o = ctl('get', 'config').out; return o.includes('REJECTED') ? o : undefined; });
    expect(out).toContain(`${join(dir, 'broken.yaml')}: VirtualService/broken: spec.http[0].timout: unknown field`);
    expect((await api('GET', '/v1/config')).json.version).toBe(version);
    const r = await load(front.ports.outbound, 'reviews', 500);
    expect(r.failed).toBe(0);
    expect(r.by.v2).toBeGreaterThan(r.by.v1);
    rmSync(join(dir, 'broken.yaml'));
    await waitFor('rejection cleared', async () => (await api('GET', '/v1/config')).json.last_error === null);
  });

  it('a proxy NACKs a snapshot it cannot apply; ctl get proxies shows the error; it keeps serving', async () => {
    // An endpoint that is front's own outbound listener: valid for control, a loop for front.
    writeFileSync(join(dir, 'loop.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: loop }
spec:
  hosts: [loop]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${front.ports.outbound} } }]
`);
    const out = await waitFor('NACK shown', () => { const o = ctl('get', 'proxies').out; return o.includes('NACKED') ? o : undefined; });
    const line = out.split('\n').find((l) => l.startsWith('front'))!;
    expect(line).toContain('NACKED');
    expect(line).toContain(`127.0.0.1:${front.ports.outbound} is this proxy's own listener`);
    const ps = await proxies();
    expect(ps.filter((p) => p.node.startsWith('reviews')).every((p) => p.status === 'SYNCED')).toBe(true);
    const r = await load(front.ports.outbound, 'reviews', 300);
    expect(r.failed).toBe(0);
    rmSync(join(dir, 'loop.yaml'));
    await waitFor('all synced after the fix', () => allSynced(3));
  });

  // Seen failing once in ~8 full-suite runs on 2 busy cores (not reproducible alone); the
  // scenario is safe to repeat, so one retry keeps CI honest without hiding a steady failure.
  it('killing the control server leaves traffic flowing; on restart the proxies resync and re-register', { retry: 1 }, async () => {
    const ports = control.ports as { discovery: number; api: number };
    control.child.kill('SIGKILL');
    await exited(control.child);
    const r = await load(front.ports.outbound, 'reviews', 1000);
    expect(r.failed, r.errors.join(', ')).toBe(0);
    expect(r.by.v2 / r.total).toBeGreaterThan(0.7); // still the 20/80 split, from the last good snapshot
    control = await startControlChild(ports);
    // The ops file in the directory carries the 20/80 change over the restart.
    expect(ctl('get', 'config').out).toContain('v1=20 v2=80');
    await waitFor('endpoints re-registered', async () => (await api('GET', '/v1/endpoints')).json.endpoints.length === 2, 15_000);
    await waitFor('3 proxies resynced', () => allSynced(3), 15_000);
    const dump = JSON.parse(await (await fetch(`http://127.0.0.1:${front.ports.admin}/config_dump`)).text());
    expect(dump.source).toContain(`control:http://127.0.0.1:${ports.discovery}`);
    expect(dump.version).toBe((await api('GET', '/v1/config')).json.version);
  });

  it('promote + graceful shutdown: the sidecar deregisters and its endpoint leaves the snapshots', async () => {
    expect(ctl('promote', 'reviews', 'v2').status).toBe(0);
    await waitFor('promotion ACKed', () => allSynced(3));
    r1.child.kill('SIGTERM');
    expect(await exited(r1.child)).toBe(0);
    const eps = await waitFor('v1 endpoint gone', async () => { const e = (await api('GET', '/v1/endpoints')).json.endpoints; return e.length === 1 ? e : undefined; }, 5_000);
    expect(eps[0].node).toBe('reviews-v2');
    const r = await load(front.ports.outbound, 'reviews', 300);
    expect(r.failed).toBe(0);
    expect(r.by).toEqual({ v2: 300 });
  });
});
