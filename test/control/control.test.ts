// The control server in-process (startControl) with real proxies (startProxy) following it over
// loopback: directory watching, ops write-back and "the file wins", registration TTL, the client's
// NACK path, readiness before the first snapshot, long-poll, bad input, and bind safety.
import { afterAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import { appendFileSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startControl, type RunningControl } from '../../control/main.ts';
import { OPS_FILE, build } from '../../control/build.ts';
import { readDir } from '../../control/sources/dir.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import { startProxy, type RunningProxy } from '../../proxy/main.ts';
import { startControlClient } from '../../proxy/xds/client.ts';
import { emptySnapshot, snapshotProblems } from '../../proxy/xds/validate-snapshot.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { echo, send, startUpstream } from '../helpers.ts';
import { MESH, configDir, httpJson, sleep, waitFor } from './lib.ts';

const silent = createLogger('silent');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => { for (const c of closers.reverse()) await c(); });

async function control(dir: string, extra: Partial<Parameters<typeof startControl>[0]> = {}): Promise<RunningControl> {
  const c = await startControl({ configDir: dir, port: 0, apiPort: 0, logger: silent, dir: { debounceMs: 50, settleMs: 30, pollMs: 500 }, ...extra });
  closers.push(() => c.close());
  return c;
}

async function proxy(): Promise<RunningProxy> {
  const p = await startProxy({ outboundPort: 0, inboundPort: 0, adminPort: 0, logger: silent });
  closers.push(() => p.drain(100));
  return p;
}

function follow(p: RunningProxy, c: RunningControl, nodeId: string, extra: Partial<Parameters<typeof startControlClient>[1]> = {}) {
  const client = startControlClient(p, { url: `http://127.0.0.1:${c.ports.discovery}`, nodeId, labels: {}, log: silent, ...extra });
  closers.push(() => client.stop());
  return client;
}

const version = (c: RunningControl) => c.state.current()?.snapshot.version;

function meshWithEndpoints(v1: number, v2: number, w1 = 50): string {
  return MESH.replace('ports: [{ number: 80, name: http }]\n', `ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${v1} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${v2} }, labels: { version: v2 } }
`).replace('weight: 50 }\n        - { destination: { host: reviews, subset: v2 }, weight: 50 }', `weight: ${w1} }\n        - { destination: { host: reviews, subset: v2 }, weight: ${100 - w1} }`);
}

describe('directory source', () => {
  it('applies atomic-rename updates, bumps the version monotonically, never applies a half-written file', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir);
    const v0 = Number(version(c));
    const published: string[] = [];
    const origPublish = c.discovery.publish.bind(c.discovery);
    c.discovery.publish = (s) => { published.push(JSON.stringify(s.virtualHosts.map((v) => v.name))); origPublish(s); };

    // Atomic rename, as editors and `kubectl cp` do: a hidden temp file, then rename over.
    writeFileSync(join(dir, '.mesh.yaml.tmp'), meshWithEndpoints(1001, 1002));
    renameSync(join(dir, '.mesh.yaml.tmp'), join(dir, 'mesh.yaml'));
    await waitFor('rename applied', () => c.state.current()!.snapshot.clusters.some((x) => x.endpoints.length === 2));
    const v1 = Number(version(c));
    expect(v1).toBeGreaterThan(v0);

    // A file written slowly in pieces; its first piece alone is a valid config (a ServiceEntry
    // without its VirtualService), which must never be served.
    const extra = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [ratings]
  ports: [{ number: 80, name: http }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [ratings]
  http: [{ name: all, route: [{ destination: { host: ratings } }] }]
`;
    const cut = extra.indexOf('---');
    published.length = 0;
    writeFileSync(join(dir, 'ratings.yaml'), extra.slice(0, cut));
    for (let i = cut; i < extra.length; i += 40) { await sleep(20); appendFileSync(join(dir, 'ratings.yaml'), extra.slice(i, i + 40)); }
    await waitFor('ratings applied', () => c.state.current()!.snapshot.virtualHosts.some((v) => v.name === 'default/ratings'));
    await sleep(300);
    expect(published.every((p) => p.includes('default/ratings'))).toBe(true);
    expect(Number(version(c))).toBeGreaterThan(v1);

    // git-checkout style: files removed and recreated in a burst give one consistent result.
    rmSync(join(dir, 'ratings.yaml'));
    writeFileSync(join(dir, 'mesh.yaml'), MESH);
    writeFileSync(join(dir, 'ratings.yaml'), extra);
    await waitFor('checkout applied', () => c.state.current()!.snapshot.clusters.every((x) => x.endpoints.length === 0));
    expect(c.state.current()!.snapshot.virtualHosts.some((v) => v.name === 'default/ratings')).toBe(true);
  });

  it('rejects an invalid edit with file, resource and field, keeps serving the last good snapshot, and starts even from an invalid directory', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir);
    const before = c.state.current()!.snapshot;
    writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: bad }\nspec:\n  host: nowhere\n');
    const cfg = await waitFor('rejected', async () => { const r = (await httpJson(c.ports.api, 'GET', '/v1/config')).json; return r.last_error ? r : undefined; });
    expect(cfg.last_error.errors).toEqual([`${join(dir, 'bad.yaml')}: DestinationRule/bad: spec.host: no ServiceEntry defines host "nowhere"`]);
    expect(c.state.current()!.snapshot).toBe(before);

    const broken = configDir({ 'a.yaml': 'kind: [unclosed\n' });
    const c2 = await control(broken);
    const r = (await httpJson(c2.ports.api, 'GET', '/v1/config')).json;
    expect(r.version).toBeNull();
    expect(r.last_error.errors[0]).toContain('a.yaml: invalid YAML');
    writeFileSync(join(broken, 'a.yaml'), MESH);
    await waitFor('recovered', () => version(c2) !== undefined);
  });
});

describe('ops API write-back', () => {
  it('writes weights to the ops file, which round-trips through the same validation and survives a restart', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir);
    const r = await httpJson(c.ports.api, 'POST', '/v1/weights', { host: 'reviews', weights: { v1: 10, v2: 90 } });
    expect(r.status).toBe(200);
    expect(r.json.routing[0].routes[0].split).toEqual({ v1: 10, v2: 90 });
    const text = readFileSync(join(dir, OPS_FILE), 'utf8');
    expect(text).toContain('kind: VirtualService');
    // The file passes the proxy's resource validation as written, and the directory compiles
    // to the same routing (what `meshlet ctl validate <dir>` checks).
    const errors: string[] = [];
    expect(parseResourceText(OPS_FILE, text, errors).map((x) => x.kind)).toEqual(['VirtualService']);
    expect(errors).toEqual([]);
    const fromDisk = build(readDir(dir), [], 'test').snapshot;
    expect(fromDisk.virtualHosts.find((v) => v.service === 'reviews')!.routes[0].destinations.map((d) => d.weight)).toEqual([10, 90]);
    await c.close();
    const again = await control(dir);
    expect(again.state.current()!.snapshot.virtualHosts[0].routes[0].destinations.map((d) => [d.subset, d.weight])).toEqual([['v1', 10], ['v2', 90]]);

    // Invalid changes are refused by the same validation and nothing is written.
    const bad = await httpJson(again.ports.api, 'POST', '/v1/weights', { host: 'reviews', weights: { v1: 10, v2: 80 } });
    expect(bad.status).toBe(400);
    expect(bad.json.errors[0]).toContain(`${OPS_FILE}: VirtualService/reviews: spec.http[0].route: weights sum to 90, must be 100`);
    expect(readFileSync(join(dir, OPS_FILE), 'utf8')).toBe(text);
    expect((await httpJson(again.ports.api, 'POST', '/v1/weights', { host: 'nope', weights: { v1: 100 } })).status).toBe(404);
    expect((await httpJson(again.ports.api, 'POST', '/v1/promote', { host: 'reviews' })).json.error).toContain('"subset"');
  });

  it('canary story: promote, remove-version drains the old endpoints, rollback restores; the file wins when edited underneath', async () => {
    const a = await startUpstream(echo('v1'));
    const b = await startUpstream(echo('v2'));
    closers.push(() => a.close(), () => b.close());
    const dir = configDir({ 'mesh.yaml': meshWithEndpoints(a.port, b.port) });
    const c = await control(dir);
    const post = (path: string, body: unknown) => httpJson(c.ports.api, 'POST', path, body);
    expect((await post('/v1/promote', { host: 'reviews', subset: 'v2' })).status).toBe(200);
    expect((await post('/v1/remove-version', { host: 'reviews', subset: 'v1' })).status).toBe(200);
    const snap = c.state.current()!.snapshot;
    expect(snap.clusters.find((x) => x.subset === 'v1')!.endpoints).toEqual([]);
    expect(snap.clusters.find((x) => x.subset === '')!.endpoints.map((e) => e.port)).toEqual([b.port]);
    expect((await post('/v1/rollback', { host: 'reviews' })).json.routing[0].routes[0].split).toEqual({ v2: 100 });
    expect(c.state.current()!.snapshot.clusters.find((x) => x.subset === 'v1')!.endpoints.length).toBe(1);
    expect((await post('/v1/rollback', { host: 'reviews' })).json.routing[0].routes[0].split).toEqual({ v1: 50, v2: 50 });
    expect((await post('/v1/rollback', { host: 'reviews' })).status).toBe(409);

    // An override, then someone edits the VirtualService in git: the file wins, the API says so.
    await post('/v1/weights', { host: 'reviews', weights: { v1: 5, v2: 95 } });
    writeFileSync(join(dir, 'mesh.yaml'), meshWithEndpoints(a.port, b.port, 30));
    const cfg = await waitFor('notice', async () => { const j = (await httpJson(c.ports.api, 'GET', '/v1/config')).json; return j.notices.length > 0 ? j : undefined; });
    expect(cfg.notices[0].message).toContain('changed VirtualService default/reviews after the ops API overrode it; the file wins');
    expect(cfg.routing[0].routes[0].split).toEqual({ v1: 30, v2: 70 });
    expect(cfg.overrides).toEqual([]);
    await waitFor('ops file rewritten', () => !readFileSync(join(dir, OPS_FILE), 'utf8').includes('kind: VirtualService'));
  });
});

describe('proxies following control (in-process)', () => {
  it('is not ready before the first snapshot; applies; keeps pools of unchanged clusters on an unrelated change', async () => {
    const up = await startUpstream(echo('v1'));
    closers.push(() => up.close());
    const dir = configDir({ 'mesh.yaml': meshWithEndpoints(up.port, up.port) });
    const p = await proxy();
    expect((await send(p.ports.admin, { path: '/ready' })).status).toBe(503);
    const c = await control(dir);
    const client = follow(p, c, 'p1');
    await waitFor('ready', async () => (await send(p.ports.admin, { path: '/ready' })).status === 200);
    expect((await send(p.ports.outbound, { host: 'reviews' })).status).toBe(200);
    const clusterBefore = p.runtime()!.clusters.get('outbound|80|v1|reviews');
    writeFileSync(join(dir, 'other.yaml'), 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: other }\nspec:\n  hosts: [other]\n  ports: [{ number: 80, name: http }]\n');
    await waitFor('new snapshot applied', () => p.runtime()!.snapshot.services.length === 2);
    expect(p.runtime()!.clusters.get('outbound|80|v1|reviews')).toBe(clusterBefore);
    expect((client.status() as { acks: number }).acks).toBe(2);
    expect(p.runtime()!.snapshot.source).toBe(`control:http://127.0.0.1:${c.ports.discovery} (dir:${dir})`);
  });

  it('NACKs a malformed snapshot naming the field and keeps the old config', async () => {
    const p = await proxy();
    p.apply({ ...emptySnapshot('file:test'), version: '7' });
    const acks: any[] = [];
    const good = { ...emptySnapshot('x'), version: '8', hash: 'h8' };
    const bad = { ...emptySnapshot('x'), version: '9', hash: 'h9', clusters: [{ name: 'c', service: 's', subset: '', port: 80, lb: 'FASTEST', endpoints: [], connectionPool: {} }] };
    // A hand-written server speaking the documented protocol: a client of the spec, not of our server.
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        if (req.url === '/v1/ack') { acks.push(JSON.parse(body)); res.end('{"status":"ok"}'); return; }
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write(`${JSON.stringify({ type: 'snapshot', version_info: '9', nonce: 'n1', resources: [bad] })}\n`);
        res.write(`${JSON.stringify({ type: 'snapshot', version_info: '8', nonce: 'n2', resources: [good, good] })}\n`);
        res.write('not json\n');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise((r) => { server.close(() => r()); server.closeAllConnections(); }));
    follow(p, { ports: { discovery: (server.address() as { port: number }).port } } as RunningControl, 'n');
    await waitFor('2 NACKs', () => acks.length === 2);
    expect(acks[0].response_nonce).toBe('n1');
    expect(acks[0].version_info).toBe('7');
    expect(acks[0].error_detail.message).toContain('snapshot.clusters[0].lb: must be one of ROUND_ROBIN, LEAST_REQUEST, RANDOM');
    expect(acks[0].error_detail.message).toContain('snapshot.clusters[0].connectionPool.maxConnections: is required');
    expect(acks[1].error_detail.message).toContain('expected exactly one snapshot, got 2');
    expect(p.runtime()!.snapshot.version).toBe('7');
    expect(snapshotProblems({ ...good, extra: 1 })).toEqual(['snapshot.extra: unknown field (this proxy does not understand it)']);
  });

  it('registers endpoints with a TTL: heartbeats keep them, a missed TTL or stop() removes them', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir, { endpointTtlMs: 300 });
    const p = await proxy();
    const client = follow(p, c, 'r-1', { service: 'reviews', labels: { version: 'v1' }, register: { address: '127.0.0.1', port: 40001 } });
    const eps = (subset: string) => c.state.current()!.snapshot.clusters.find((x) => x.subset === subset)!.endpoints.map((e) => `${e.address}:${e.port}`);
    await waitFor('registered', () => eps('v1').length === 1);
    await sleep(900); // three TTLs: heartbeats must have kept it
    expect(eps('v1')).toEqual(['127.0.0.1:40001']);
    // A sidecar that dies without deregistering: one registration, no heartbeat.
    const r = await httpJson(c.ports.discovery, 'POST', '/v1/register', { node: { id: 'r-2', service: 'reviews', labels: { version: 'v2' } }, address: '127.0.0.1', port: 40002 });
    expect(r.json.ttl_ms).toBe(300);
    await waitFor('r-2 in snapshot', () => eps('v2').length === 1);
    await waitFor('r-2 expired', () => eps('v2').length === 0, 2_000);
    await client.stop();
    await waitFor('r-1 deregistered', () => eps('v1').length === 0, 250);
  });
});

describe('discovery protocol details and input safety', () => {
  it('long-poll returns when the version changes; ACK bookkeeping ignores stale nonces', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    const c = await control(dir);
    const v = version(c)!;
    const first = await httpJson(c.ports.discovery, 'GET', '/v1/discovery?node=lp&version_info=&wait_ms=1000');
    expect(first.json.version_info).toBe(v);
    const waiting = httpJson(c.ports.discovery, 'GET', `/v1/discovery?node=lp&version_info=${v}&wait_ms=5000`);
    await sleep(50);
    writeFileSync(join(dir, 'other.yaml'), 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: other }\nspec:\n  hosts: [other]\n  ports: [{ number: 80, name: http }]\n');
    const second = await waiting;
    expect(Number(second.json.version_info)).toBeGreaterThan(Number(v));
    expect((await httpJson(c.ports.discovery, 'POST', '/v1/ack', { node: { id: 'lp' }, version_info: v, response_nonce: first.json.nonce })).json.status).toBe('stale');
    expect((await httpJson(c.ports.discovery, 'POST', '/v1/ack', { node: { id: 'lp' }, version_info: v, response_nonce: second.json.nonce, error_detail: { message: 'boom' } })).json.status).toBe('nack');
    const lp = (await httpJson(c.ports.api, 'GET', '/v1/proxies')).json.proxies.find((x: any) => x.node === 'lp');
    expect(lp).toMatchObject({ status: 'NACKED', stale_acks: 1, nacked: { version: second.json.version_info, error: 'boom' } });
    expect((await httpJson(c.ports.discovery, 'GET', `/v1/discovery?node=lp&version_info=${second.json.version_info}&wait_ms=100`)).status).toBe(304);
  });

  it('answers bad input with 4xx and keeps running', async () => {
    const c = await control(configDir({ 'mesh.yaml': MESH }));
    const raw = async (port: number, method: string, path: string, body: string) => (await fetch(`http://127.0.0.1:${port}${path}`, { method, body: body || undefined })).status;
    expect(await raw(c.ports.discovery, 'POST', '/v1/discovery', '{not json')).toBe(400);
    expect(await raw(c.ports.discovery, 'POST', '/v1/discovery', '[]')).toBe(400);
    expect(await raw(c.ports.discovery, 'POST', '/v1/discovery', '{"node":{"id":5}}')).toBe(400);
    expect(await raw(c.ports.discovery, 'POST', '/v1/ack', '{"node":{"id":"ghost"},"response_nonce":"x"}')).toBe(409);
    expect(await raw(c.ports.discovery, 'POST', '/v1/register', '{"node":{"id":"a","service":"reviews"},"address":"127.0.0.1","port":70000}')).toBe(400);
    // A host name would become a STATIC endpoint that fails every request (ENOTFOUND).
    expect(await raw(c.ports.discovery, 'POST', '/v1/register', '{"node":{"id":"a","service":"reviews"},"address":"db.internal","port":8080}')).toBe(400);
    expect(await raw(c.ports.discovery, 'POST', '/v1/ack', 'x'.repeat(2 << 20))).toBe(413);
    expect(await raw(c.ports.api, 'POST', '/v1/weights', '{"host":"reviews","weights":{"v1":"a lot"}}')).toBe(400);
    expect(await raw(c.ports.discovery, 'PUT', '/v1/discovery', '')).toBe(405);
    expect((await httpJson(c.ports.api, 'GET', '/healthz')).status).toBe(200);
  });

  it('refuses a non-loopback bind without a token; with a token, requests need it', async () => {
    const dir = configDir({ 'mesh.yaml': MESH });
    await expect(startControl({ configDir: dir, bind: '0.0.0.0', port: 0, apiPort: 0, logger: silent })).rejects.toThrow(/refusing to bind 0\.0\.0\.0 without a token/);
    const c = await control(dir, { token: 'abc' });
    expect((await httpJson(c.ports.api, 'GET', '/v1/config')).status).toBe(401);
    expect((await httpJson(c.ports.api, 'GET', '/v1/config', undefined, 'abd')).status).toBe(401);
    expect((await httpJson(c.ports.api, 'GET', '/v1/config', undefined, 'abc')).status).toBe(200);
    expect(existsSync(join(dir, OPS_FILE))).toBe(false);
  });
});
