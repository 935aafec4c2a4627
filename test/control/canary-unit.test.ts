// The canary's pure parts: the resource check, Flagger's step rules, the sequential test, the
// route edit, and the Prometheus provider against a stand-in HTTP server answering Prometheus's
// /api/v1/query shape (Prometheus itself is optional here; docs/canary.md).
import { describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import { build, OPS_FILE, renderOpsFile } from '../../control/build.ts';
import { canaryRouting, type OpsContext } from '../../control/api/ops.ts';
import { maxWeight, nextWeight, strategy } from '../../control/canary/controller.ts';
import { prometheusQuery, renderQuery } from '../../control/canary/prometheus.ts';
import { relativeCheck, sprt } from '../../control/canary/sequential.ts';
import { fromDirFiles, type CanaryDef, type CanaryFeed, parseCanary } from '../../control/canary/source.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import { EDGE_BUCKETS_MS } from '../../proxy/telemetry/edges.ts';

const CANARY = `apiVersion: flagger.app/v1beta1
kind: Canary
metadata: { name: reviews }
spec:
  targetRef: { kind: Deployment, name: reviews }
  analysis: { interval: 1s, threshold: 2, stepWeight: 20, metrics: [{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 5s }] }
`;
const MESH = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 9001 }, labels: { version: v1 } }, { address: 127.0.0.1, ports: { http: 9002 }, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec: { host: reviews, subsets: [{ name: v0, labels: { version: v0 } }, { name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }] }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - { name: legacy, match: [{ headers: { x-legacy: { exact: "1" } } }], route: [{ destination: { host: reviews, subset: v0 } }] }
    - { name: jason, match: [{ headers: { end-user: { exact: jason } } }], route: [{ destination: { host: reviews, subset: v1 } }] }
    - { name: default, route: [{ destination: { host: reviews, subset: v1 } }] }
`;

const def = (analysis: Record<string, unknown>): CanaryDef => ({ name: 'x', namespace: 'default', origin: 't', file: 't', spec: { targetRef: { name: 'reviews' }, analysis } as CanaryDef['spec'] });

describe('Canary resource', () => {
  it('accepts Flagger\'s apiVersion and fields; the proxy\'s parser skips the kind', () => {
    const feed = fromDirFiles(new Map([['/d/c.yaml', CANARY], ['/d/mesh.yaml', MESH]]));
    expect(feed.errors).toEqual([]);
    expect(feed.canaries.map((c) => c.name)).toEqual(['reviews']);
    const errors: string[] = [];
    expect(parseResourceText('/d/c.yaml', CANARY, errors)).toEqual([]);
    expect(errors).toEqual([]);
    // The snapshot build reads the same directory without complaint.
    expect(() => build(new Map([['/d/c.yaml', CANARY], ['/d/mesh.yaml', MESH]]), [], 'test')).not.toThrow();
  });

  it('a misspelt field, decreasing stepWeights, an unknown metric without a template: errors naming file, canary and field', () => {
    const out: CanaryFeed = { canaries: [], templates: [], errors: [] };
    const base = { apiVersion: 'meshlet.io/v1alpha1', kind: 'Canary', metadata: { name: 'r' } };
    parseCanary('f.yaml', { ...base, spec: { targetRef: { name: 'r' }, analysis: { intervall: '1s' } } }, 't', out);
    parseCanary('f.yaml', { ...base, spec: { targetRef: { name: 'r' }, analysis: { stepWeights: [10, 5] } } }, 't', out);
    parseCanary('f.yaml', { ...base, spec: { targetRef: { name: 'r' }, analysis: { metrics: [{ name: 'error-budget' }] } } }, 't', out);
    parseCanary('f.yaml', { ...base, spec: { targetRef: { name: 'r' }, analysis: { interval: 'soon' } } }, 't', out);
    expect(out.canaries).toEqual([]);
    expect(out.errors[0]).toBe('f.yaml: Canary/r: spec.analysis: unknown field(s) intervall');
    expect(out.errors.some((e) => e === 'f.yaml: Canary/r: spec.analysis.stepWeights: must increase')).toBe(true);
    expect(out.errors.some((e) => e.includes('metrics[0].name: "error-budget" is not built in'))).toBe(true);
    expect(out.errors.some((e) => e.startsWith('f.yaml: Canary/r: spec.analysis.interval:'))).toBe(true);
  });
});

describe("Flagger's step rules", () => {
  it('stepWeight is linear up to maxWeight; stepWeights steps through the list; strategies', () => {
    expect([0, 20, 40, 80, 90].map((w) => nextWeight(def({ stepWeight: 20, maxWeight: 90 }), w))).toEqual([20, 40, 60, 90, 90]);
    expect(maxWeight(def({}))).toBe(100);
    expect(maxWeight(def({ stepWeights: [1, 5, 30] }))).toBe(30);
    expect([0, 1, 5].map((w) => nextWeight(def({ stepWeights: [1, 5, 30] }), w))).toEqual([1, 5, 30]);
    expect(strategy(def({ stepWeight: 10 }))).toBe('canary');
    expect(strategy(def({ iterations: 5 }))).toBe('bluegreen');
    expect(strategy(def({ iterations: 5, match: [{ headers: { a: { exact: 'b' } } }] }))).toBe('ab');
  });
});

describe('sequential test', () => {
  const w = (requests: number, errors: number, buckets = new Array(EDGE_BUCKETS_MS.length + 1).fill(0)) => ({ requests, errors, buckets, reports: 1, ejected: false });
  const m = { name: 'request-success-rate', relative: { maxDecrease: 0.5 } };
  it('Wald bounds: clear evidence decides, little evidence does not', () => {
    expect(sprt(0, 10, 0.001, 0.006).decision).toBe(null);
    expect(sprt(10, 1000, 0.001, 0.006).decision).toBe('H1');
    expect(sprt(0, 2000, 0.001, 0.006).decision).toBe('H0');
  });
  it('relative success rate: equal → pass, 2 points worse → fail, 100 requests → undecided', () => {
    expect(relativeCheck(m, w(5000, 5), w(50000, 50)).result).toBe('pass');
    expect(relativeCheck(m, w(5000, 100), w(50000, 50)).result).toBe('fail');
    expect(relativeCheck(m, w(100, 0), w(50000, 50)).result).toBe('insufficient');
  });
  it('relative p99: a candidate with 5 % of requests far above the primary p99 fails', () => {
    const fast = new Array(EDGE_BUCKETS_MS.length + 1).fill(0); fast[2] = 1000; // ≤ 5 ms
    const slow = new Array(EDGE_BUCKETS_MS.length + 1).fill(0); slow[2] = 950; slow[7] = 50; // 5 % in (100, 250] ms
    const d = { name: 'request-duration', relative: { maxIncreasePercent: 20 } };
    expect(relativeCheck(d, w(1000, 0, slow), w(1000, 0, fast)).result).toBe('fail');
    expect(relativeCheck(d, w(1000, 0, fast), w(1000, 0, fast)).result).toBe('pass');
  });
});

describe('canaryRouting (the ops edit of a step)', () => {
  const ctxOf = (): OpsContext => {
    const files = new Map([['/d/mesh.yaml', MESH]]);
    const r = build(files, [], 'test');
    return { snapshot: r.snapshot, resources: r.resources, overrides: r.overrides, files };
  };
  it('splits every route of the two versions (the header-matched one too), leaves other subsets, puts A/B and sticky routes in front', () => {
    const o = canaryRouting(ctxOf(), 'reviews', { primary: 'v1', canary: 'v2', weight: 30, managedPrefix: 'canary-r-', match: [{ headers: { 'x-canary': { exact: 'y' } } }], cookie: { name: 'c', value: 'abc', maxAge: 86400 } });
    const http = o.raw.spec.http;
    expect(http.map((h: any) => h.name)).toEqual(['canary-r-sticky-canary', 'canary-r-match', 'legacy', 'jason', 'default']);
    expect(http[2].route).toEqual([{ destination: { host: 'reviews', subset: 'v0' } }]);
    for (const h of http.slice(3)) expect(h.route.map((d: any) => [d.destination.subset, d.weight])).toEqual([['v1', 70], ['v2', 30]]);
    expect(http[4].route[1].headers.response.add['set-cookie']).toBe('c=abc; Max-Age=86400; Path=/');
    expect(http[0].match[0].headers.cookie.regex).toBe('.*\\bc=abc\\b.*');
    // The ops file it makes passes the full build, and the snapshot routes as asked.
    const files = new Map([['/d/mesh.yaml', MESH], [`/d/${OPS_FILE}`, renderOpsFile([o])]]);
    const snap = build(files, [], 't').snapshot;
    const def = snap.virtualHosts.find((v) => v.service === 'reviews')!.routes.find((r) => r.name === 'default')!;
    expect(def.destinations.map((d) => [d.subset, d.weight])).toEqual([['v1', 70], ['v2', 30]]);
  });
  it('the end of a run drops the run\'s routes; an unknown subset is a 400', () => {
    const ctx = ctxOf();
    const o = canaryRouting(ctx, 'reviews', { primary: 'v1', canary: 'v2', weight: 100, managedPrefix: 'canary-r-' });
    expect(o.raw.spec.http.map((h: any) => [h.name, h.route.map((d: any) => d.destination.subset).join()])).toEqual([['legacy', 'v0'], ['jason', 'v2'], ['default', 'v2']]);
    expect(() => canaryRouting(ctx, 'reviews', { primary: 'v1', canary: 'v9', weight: 10, managedPrefix: 'x-' })).toThrow(/no subset "v9"/);
  });
});

describe('MetricTemplate provider prometheus', () => {
  it('renders the template variables and reads the first sample of /api/v1/query; an empty vector is null', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      const q = new URL(req.url!, 'http://x').searchParams.get('query')!;
      seen.push(q);
      const result = q.includes('empty') ? [] : [{ metric: {}, value: [1700000000, '99.5'] }];
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'success', data: { resultType: 'vector', result } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const address = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      expect(renderQuery('rate(x{d="{{ target }}",v="{{variables.v}}"}[{{ interval }}])', { target: 'reviews', interval: '1m', v: 'v2' })).toBe('rate(x{d="reviews",v="v2"}[1m])');
      expect(await prometheusQuery({ provider: { type: 'prometheus', address }, query: 'up{job="{{ name }}"}' }, { name: 'r' })).toBe(99.5);
      expect(seen[0]).toBe('up{job="r"}');
      expect(await prometheusQuery({ provider: { type: 'prometheus', address }, query: 'empty' }, {})).toBe(null);
    } finally { server.close(); }
  });
});
