// The per-edge reports a sidecar posts to the control server are a view of its Istio series (one
// latency histogram per request, not two): per outbound cluster, the delta of the reporter=source
// series since the previous report. Real proxy, real upstreams, real control server on loopback.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, echo, send, twoSubsetYaml } from '../helpers.ts';
import { startProxy } from '../../proxy/main.ts';
import { startControlClient } from '../../proxy/xds/client.ts';
import { startControl } from '../../control/main.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { EDGE_BUCKETS_MS, type EdgeReport } from '../../proxy/telemetry/edges.ts';
import { configDir, httpJson, waitFor } from '../control/lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());
const silent = createLogger('silent');
const HOST = 'reviews.default.svc.cluster.local';

/** v1 answers 200; v2 answers 503 and is ejected after two of them; no retries (exact counts). */
function mesh(ports: { v1: number; v2: number }): string {
  return twoSubsetYaml(HOST, ports, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - match: [{ headers: { x-v: { exact: "2" } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
      retries: { attempts: 0 }
    - route: [{ destination: { host: reviews, subset: v1 } }]
      retries: { attempts: 0 }
`).replace('subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]',
    `subsets:
    - { name: v1, labels: { version: v1 } }
    - name: v2
      labels: { version: v2 }
      trafficPolicy: { outlierDetection: { consecutive5xxErrors: 2, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 100 } }`);
}

/** istio_requests_total and the (de-cumulated) duration buckets of the reporter=source series, by destination_version. */
function istioBySubset(prom: string): Map<string, { requests: number; errors: number; flags: Record<string, number>; buckets: number[] }> {
  const out = new Map<string, { requests: number; errors: number; flags: Record<string, number>; buckets: number[] }>();
  const get = (v: string) => {
    let e = out.get(v);
    if (!e) { e = { requests: 0, errors: 0, flags: {}, buckets: new Array(EDGE_BUCKETS_MS.length + 1).fill(0) }; out.set(v, e); }
    return e;
  };
  const cumulative = new Map<string, number[]>();
  for (const line of prom.split('\n')) {
    const m = /^(istio_requests_total|istio_request_duration_milliseconds_bucket)\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.reporter !== 'source' || labels.destination_service !== HOST) continue;
    const n = Number(m[3]);
    if (m[1] === 'istio_requests_total') {
      const e = get(labels.destination_version);
      e.requests += n;
      const code = Number(labels.response_code);
      if (code >= 500 || code === 0) e.errors += n;
      if (labels.response_flags !== '-') for (const f of labels.response_flags.split(',')) e.flags[f] = (e.flags[f] ?? 0) + n;
    } else {
      const key = `${labels.destination_version}|${labels.response_code}|${labels.response_flags}|${labels.dtab_override}`;
      const c = cumulative.get(key) ?? [];
      c.push(n); // rendered in bucket order, +Inf last
      cumulative.set(key, c);
    }
  }
  for (const [key, c] of cumulative) {
    expect(c).toHaveLength(EDGE_BUCKETS_MS.length + 1);
    const e = get(key.split('|')[0]);
    c.forEach((v, i) => { e.buckets[i] += v - (i === 0 ? 0 : c[i - 1]); });
  }
  return out;
}

const bySubset = (rs: EdgeReport[]) => Object.fromEntries(rs.map((r) => [r.subset, r]));

describe('edge reports are a view of the Istio series', () => {
  it('per outbound cluster: requests, 5xx-or-0, flags and the Istio latency buckets since the last drain; then only the delta', async () => {
    const v1 = await fx.upstream(echo('v1'));
    const v2 = await fx.upstream((_req, res) => { res.statusCode = 503; res.end('down'); });
    const p = await fx.proxy(mesh({ v1: v1.port, v2: v2.port }), { service: 'productpage', labels: { version: 'v1' } });
    expect(p.edgeReports()).toEqual([]); // no traffic, every endpoint healthy: nothing to say

    for (let i = 0; i < 5; i++) expect((await send(p.ports.outbound, { host: 'reviews' })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await send(p.ports.outbound, { host: 'reviews', headers: { 'x-v': '2' } })).status).toBe(503);
    // v2's only endpoint is ejected now: the next one is the proxy's own 503 UH.
    const uh = await send(p.ports.outbound, { host: 'reviews', headers: { 'x-v': '2' } });
    expect([uh.status, v2.hits]).toEqual([503, 2]);
    // Inbound traffic is reporter=destination: never part of the edges.
    await send(p.ports.inbound, { host: 'reviews' });

    const prom = (await send(p.ports.admin, { path: '/stats/prometheus' })).body;
    const reports = p.edgeReports();
    const r = bySubset(reports);
    expect(Object.keys(r).sort()).toEqual(['v1', 'v2']); // the default-subset cluster saw no traffic and is healthy
    expect(r.v1).toMatchObject({ destination: HOST, requests: 5, errors5xx: 0, flags: {}, healthy: 1, total: 1 });
    expect(r.v2).toMatchObject({ destination: HOST, requests: 3, errors5xx: 3, flags: { UH: 1 }, healthy: 0, total: 1 });
    for (const e of reports) {
      expect(e.buckets).toHaveLength(EDGE_BUCKETS_MS.length + 1);
      expect(e.buckets.reduce((a, b) => a + b, 0)).toBe(e.requests);
    }
    // Exactly what istio_requests_total / istio_request_duration_milliseconds say for the same edges.
    const istio = istioBySubset(prom);
    for (const v of ['v1', 'v2']) {
      expect({ requests: r[v].requests, errors: r[v].errors5xx, flags: r[v].flags, buckets: r[v].buckets }).toEqual(istio.get(v));
    }

    // Drained: a second report has only what is still worth saying (v2 is still ejected).
    const again = p.edgeReports();
    expect(again).toEqual([{ destination: HOST, subset: 'v2', requests: 0, errors5xx: 0, flags: {}, buckets: new Array(EDGE_BUCKETS_MS.length + 1).fill(0), healthy: 0, total: 1 }]);
    // New traffic: only the delta, while the Istio counters keep counting.
    for (let i = 0; i < 3; i++) await send(p.ports.outbound, { host: 'reviews' });
    const d = bySubset(p.edgeReports());
    expect(d.v1).toMatchObject({ requests: 3, errors5xx: 0 });
    expect(d.v1.buckets.reduce((a, b) => a + b, 0)).toBe(3);
    expect(istioBySubset((await send(p.ports.admin, { path: '/stats/prometheus' })).body).get('v1')!.requests).toBe(8);
  });

  it('reach the control server: a proxy following control posts them and /api/v1/topology shows the edges', async () => {
    const v1 = await fx.upstream(echo('v1'));
    const v2 = await fx.upstream((_req, res) => { res.statusCode = 503; res.end('down'); });
    const c = await startControl({ configDir: configDir({ 'mesh.yaml': mesh({ v1: v1.port, v2: v2.port }) }), port: 0, apiPort: 0, logger: silent });
    fx.add(() => c.close());
    const p = await startProxy({ outboundPort: 0, inboundPort: 0, adminPort: 0, logger: silent, service: 'productpage', labels: { version: 'v1' } });
    fx.add(() => p.drain(100));
    const client = startControlClient(p, { url: `http://127.0.0.1:${c.ports.discovery}`, nodeId: 'pp-1', service: 'productpage', labels: { version: 'v1' }, log: silent, reportMs: 100 });
    fx.add(() => client.stop());
    await waitFor('snapshot applied', () => p.runtime() !== null);
    for (let i = 0; i < 4; i++) expect((await send(p.ports.outbound, { host: 'reviews' })).status).toBe(200);
    expect((await send(p.ports.outbound, { host: 'reviews', headers: { 'x-v': '2' } })).status).toBe(503);
    const topo = await waitFor('both edges in the topology', async () => {
      const t = (await httpJson(c.ports.api, 'GET', '/api/v1/topology')).json;
      return t.edges.length === 2 ? t : undefined;
    });
    const byDest = Object.fromEntries(topo.edges.map((e: any) => [e.destination, e]));
    expect(byDest['reviews:v1']).toMatchObject({ source: 'productpage:v1', successRate: 1, broken: false });
    expect(byDest['reviews:v2']).toMatchObject({ source: 'productpage:v1', successRate: 0, broken: true });
    expect(EDGE_BUCKETS_MS).toContain(byDest['reviews:v1'].p50Ms);
  });
});
