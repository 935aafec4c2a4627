// The admin port and the inbound listener, on real sockets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, proxyFor, send, startUpstream, stat, twoSubsetYaml, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

let v1: Upstream, v2: Upstream, app: Upstream;
let p: RunningProxy;
const HOST = 'ratings.default.svc.cluster.local';

beforeAll(async () => {
  v1 = await startUpstream(echo('v1'));
  v2 = await startUpstream((req, res) => { res.statusCode = 503; res.end('down'); void req; });
  app = await startUpstream(echo('app'));
  p = await proxyFor(twoSubsetYaml(HOST, { v1: v1.port, v2: v2.port }, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [ratings]
  http:
    - match: [{ headers: { x-v: { exact: "2" } } }]
      route: [{ destination: { host: ratings, subset: v2 } }]
    - route: [{ destination: { host: ratings, subset: v1 } }]
`), { appPort: app.port, service: 'ratings', labels: { version: 'v1' } });
});
afterAll(async () => { await p.drain(100); await v1.close(); await v2.close(); await app.close(); });

describe('admin', () => {
  it('/ready is LIVE once listening with a config', async () => {
    const r = await send(p.ports.admin, { path: '/ready' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('LIVE\n');
  });

  it('/stats: Envoy text format, sorted, Istio cluster names with ";"', async () => {
    for (let i = 0; i < 3; i++) await send(p.ports.outbound, { host: 'ratings' });
    await send(p.ports.outbound, { host: 'ratings', headers: { 'x-v': '2' } });
    const text = (await send(p.ports.admin, { path: '/stats' })).body;
    const lines = text.trim().split('\n');
    expect(lines.every((l) => /^[^:]+(:[^:]+)*: \d+$/.test(l))).toBe(true);
    const names = lines.map((l) => l.slice(0, l.lastIndexOf(': ')));
    expect([...names].sort()).toEqual(names);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v1|${HOST};.upstream_rq_total`)).toBe(3);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v1|${HOST};.upstream_rq_2xx`)).toBe(3);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v1|${HOST};.upstream_rq_200`)).toBe(3);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v2|${HOST};.upstream_rq_5xx`)).toBe(1);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v2|${HOST};.upstream_rq_503`)).toBe(1);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v1|${HOST};.upstream_cx_total`)).toBe(1);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v1|${HOST};.upstream_cx_active`)).toBe(1);
    expect(await stat(p.ports.admin, `cluster.outbound|80|v1|${HOST};.upstream_rq_active`)).toBe(0);
    const filtered = (await send(p.ports.admin, { path: '/stats?filter=upstream_rq_503' })).body.trim().split('\n');
    expect(filtered).toEqual([`cluster.outbound|80|v2|${HOST};.upstream_rq_503: 1`]);
  });

  it('/stats/prometheus: istio_requests_total with destination labels and envoy_cluster_* families', async () => {
    const text = (await send(p.ports.admin, { path: '/stats/prometheus' })).body;
    expect(text).toContain('# TYPE istio_requests_total counter');
    const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="503"'));
    expect(line).toBeDefined();
    expect(line).toContain(`destination_service="${HOST}"`);
    expect(line).toContain('destination_version="v2"');
    expect(line).toContain('response_flags="-"');
    expect(line).toMatch(/ 1$/);
    expect(text).toContain('istio_request_duration_milliseconds_bucket{');
    expect(text).toContain(`envoy_cluster_upstream_rq_total{cluster_name="outbound|80|v1|${HOST}"} `);
  });

  it('/config_dump shows the running snapshot and its version', async () => {
    const d = JSON.parse((await send(p.ports.admin, { path: '/config_dump' })).body);
    expect(d.version).toBe('1');
    expect(d.hash).toMatch(/^[0-9a-f]{16}$/);
    expect(d.snapshot.clusters.length).toBe(3);
    expect(d.node).toEqual({ service: 'ratings', labels: { version: 'v1' } });
  });

  it('/clusters lists endpoints with labels and health', async () => {
    const text = (await send(p.ports.admin, { path: '/clusters' })).body;
    expect(text).toContain(`outbound|80|v1|${HOST}::127.0.0.1:${v1.port}::health_flags::healthy`);
    expect(text).toContain(`outbound|80|v1|${HOST}::127.0.0.1:${v1.port}::labels::version=v1`);
    expect(text).toContain(`outbound|80|v1|${HOST}::default_priority::max_connections::4294967295`);
    const json = JSON.parse((await send(p.ports.admin, { path: '/clusters?format=json' })).body);
    expect(json.cluster_statuses.length).toBeGreaterThanOrEqual(3);
  });
});

describe('inbound listener', () => {
  it('forwards to 127.0.0.1:<app-port> and counts in the inbound cluster', async () => {
    const r = await send(p.ports.inbound, { host: 'ratings', path: '/ratings/0' });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('app');
    expect(JSON.parse(r.body).url).toBe('/ratings/0');
    expect(await stat(p.ports.admin, `cluster.inbound|${app.port}||;.upstream_rq_200`)).toBe(1);
  });
});
