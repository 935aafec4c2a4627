// The mesh view's numbers: edge reports into the rolling window, broken edges and their reasons,
// the split, and the report endpoint's validation; and a 50-service topology.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TopologyWindow, parseEdgesReport, splits } from '../../control/mesh/topology.ts';
import { EDGE_BUCKETS_MS } from '../../proxy/telemetry/edges.ts';
import { startControl, type RunningControl } from '../../control/main.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { send } from '../helpers.ts';

const buckets = (i: number, n: number) => { const b = new Array(EDGE_BUCKETS_MS.length + 1).fill(0); b[i] = n; return b; };
const edge = (destination: string, subset: string, requests: number, extra: Partial<{ errors5xx: number; flags: Record<string, number>; healthy: number; total: number; bucket: number }> = {}) => ({
  destination, subset, requests, errors5xx: extra.errors5xx ?? 0, flags: extra.flags ?? {}, buckets: buckets(extra.bucket ?? 4, requests), healthy: extra.healthy ?? 1, total: extra.total ?? 1,
});

let control: RunningControl | null = null;
afterAll(async () => { await control?.close(); });

describe('topology window', () => {
  it('aggregates reports into rps, success rate, percentiles and broken edges with reasons', () => {
    const w = new TopologyWindow(30);
    let now = 1_000_000;
    w.now = () => now;
    w.ingest(parseEdgesReport({ node: 'pp-1', service: 'productpage', version: 'v1', edges: [
      edge('reviews.default.svc.cluster.local', 'v1', 100, { bucket: 3 }),
      edge('ratings.default.svc.cluster.local', '', 50, { errors5xx: 50, flags: { UO: 50 } }),
      edge('details.default.svc.cluster.local', 'v1', 0, { healthy: 0, total: 2 }),
    ] }));
    now += 5000;
    w.ingest(parseEdgesReport({ node: 'pp-1', service: 'productpage', version: 'v1', edges: [edge('reviews.default.svc.cluster.local', 'v1', 100, { bucket: 3 })] }));
    const t = w.topology();
    expect(t.window_s).toBe(30);
    expect(t.nodes.map((n) => n.id)).toEqual(['details:v1', 'productpage:v1', 'ratings', 'reviews:v1']);
    const byDest = Object.fromEntries(t.edges.map((e) => [e.destination, e]));
    expect(byDest['reviews:v1']).toMatchObject({ source: 'productpage:v1', successRate: 1, p50Ms: EDGE_BUCKETS_MS[3], broken: false, reason: null });
    expect(byDest['reviews:v1'].rps).toBeGreaterThan(0);
    expect(byDest.ratings).toMatchObject({ successRate: 0, broken: true, reason: 'overflow' });
    expect(byDest['details:v1']).toMatchObject({ broken: true, reason: 'ejection' });
    // Samples older than the window drop out.
    now += 31_000;
    expect(w.topology().edges).toEqual([]);
  });

  it('stays well-formed with 50 services', () => {
    const w = new TopologyWindow(30);
    for (let s = 0; s < 50; s++) {
      w.ingest(parseEdgesReport({ node: `svc${s}-1`, service: `svc${s}`, version: 'v1', edges: [edge(`svc${(s + 1) % 50}`, 'v1', 10), edge(`svc${(s + 7) % 50}`, 'v2', 5)] }));
    }
    const t = w.topology();
    expect(t.edges.length).toBe(100);
    expect(new Set(t.nodes.map((n) => n.id)).size).toBe(t.nodes.length);
    for (const e of t.edges) {
      expect(t.nodes.some((n) => n.id === e.source)).toBe(true);
      expect(t.nodes.some((n) => n.id === e.destination)).toBe(true);
    }
  });

  it('split: configured weights next to the observed share per version', () => {
    const w = new TopologyWindow(30);
    w.ingest(parseEdgesReport({ node: 'a', service: 'productpage', version: 'v1', edges: [edge('reviews', 'v1', 20), edge('reviews', 'v2', 80)] }));
    const s = splits([{ service: 'reviews.default.svc.cluster.local', routes: [{ name: 'split', destinations: [{ host: 'reviews', subset: 'v1', weight: 50 }, { host: 'reviews', subset: 'v2', weight: 50 }] }] }], w.topology());
    expect(s).toEqual([{ service: 'reviews', route: 'split', versions: [{ version: 'v1', weight: 50, observed: 20 }, { version: 'v2', weight: 50, observed: 80 }] }]);
  });

  it('uses the Istio bucket layout; a report in the earlier 15-count layout is re-binned, never dropped', () => {
    // Istio's default buckets for istio_request_duration_milliseconds (its stats filter): the same array.
    expect(EDGE_BUCKETS_MS).toEqual([0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000]);
    const legacy = (i: number, n: number) => { const b = new Array(15).fill(0); b[i] = n; return b; };
    const w = new TopologyWindow(30);
    w.ingest(parseEdgesReport({ node: 'old', service: 'a', version: 'v1', edges: [
      { ...edge('b', 'v1', 10), buckets: legacy(2, 10) }, // old "<= 2 ms" -> "<= 5 ms"
      { ...edge('c', 'v1', 10), buckets: legacy(13, 10) }, // old "<= 10 s" stays
      { ...edge('d', 'v1', 10), buckets: legacy(14, 10) }, // old open bucket (> 10 s) -> "<= 30 s"
    ] }));
    const byDest = Object.fromEntries(w.topology().edges.map((e) => [e.destination, e]));
    expect([byDest['b:v1'].p50Ms, byDest['c:v1'].p50Ms, byDest['d:v1'].p50Ms]).toEqual([5, 10000, 30000]);
    expect(parseEdgesReport({ node: 'n', service: 'x', edges: [{ ...edge('d', '', 3), buckets: legacy(0, 3) }] }).edges[0].buckets).toEqual(buckets(0, 3));
    expect(() => parseEdgesReport({ node: 'n', service: 'x', edges: [{ ...edge('d', '', 1), buckets: new Array(16).fill(0) }] })).toThrow(/buckets must be 20 non-negative counts \(or 15/);
    expect(() => parseEdgesReport({ node: 'n', service: 'x', edges: [{ ...edge('d', '', 1), buckets: [...buckets(0, 1).slice(1), -1] }] })).toThrow(/buckets/);
  });

  it('rejects malformed reports naming the field', () => {
    expect(() => parseEdgesReport({ service: 'x', edges: [] })).toThrow(/report\.node/);
    expect(() => parseEdgesReport({ node: 'n', service: 'x', edges: [{ ...edge('d', '', 1), requests: -1 }] })).toThrow(/requests/);
    expect(() => parseEdgesReport({ node: 'n', service: 'x', edges: [{ ...edge('d', '', 1), buckets: [1] }] })).toThrow(/buckets/);
  });
});

describe('POST /v1/report on the control server', () => {
  it('accepts a report (204), rejects a malformed one (400), and serves it at /api/v1/topology', async () => {
    control = await startControl({ configDir: mkdtempSync(join(tmpdir(), 'meshlet-topo-')), port: 0, apiPort: 0, logger: createLogger('silent') });
    const ok = await send(control.ports.discovery, { path: '/v1/report', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ node: 'n1', service: 'hello', version: 'v1', edges: [edge('world', 'v1', 5)] }) });
    expect(ok.status).toBe(204);
    const bad = await send(control.ports.discovery, { path: '/v1/report', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"node":"n1"}' });
    expect(bad.status).toBe(400);
    const topo = JSON.parse((await send(control.ports.api, { path: '/api/v1/topology' })).body);
    expect(topo.edges).toMatchObject([{ source: 'hello:v1', destination: 'world:v1' }]);
    const page = await send(control.ports.api, { path: '/' });
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('meshlet mesh');
  });
});
