// The whole Prometheus exposition of a proxy with traffic, read by our own parser of the text
// format (0.0.4): every line well-formed, each family's HELP and TYPE once and before its samples,
// families never interleaved, no duplicate series, histograms cumulative up to +Inf = _count.
// The Envoy families come from the same prom-client Registry as Istio's: every stat of /stats
// appears with the same value, and /stats?format=prometheus is the same text. (`promtool check
// metrics` over the same output is a manual cross-check; it is not needed here.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fixtures, echo, send, snapshotFromYaml, twoSubsetYaml } from '../helpers.ts';
import { mergePrometheus } from '../../proxy/workers.ts';
import type { RunningProxy } from '../../proxy/main.ts';
import { Metrics } from '../../proxy/telemetry/metrics.ts';
import { newClusterStats, registerStatFamilies, type StatSource } from '../../proxy/telemetry/stats.ts';

interface Family { name: string; type: string | null; help: string | null; samples: Sample[] }
interface Sample { name: string; labels: Record<string, string>; value: number }

const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/i;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** `{a="x",b="y\"z"}` -> labels; throws on anything the text format does not allow. */
function parseLabels(s: string, line: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`label without '=': ${line}`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name) || name.startsWith('__')) throw new Error(`bad label name '${name}': ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`label value not quoted: ${line}`);
    let v = '';
    let j = eq + 2;
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const e = s[++j];
        if (e === '\\') v += '\\'; else if (e === '"') v += '"'; else if (e === 'n') v += '\n';
        else throw new Error(`bad escape '\\${e}' in label value: ${line}`);
      } else if (s[j] === '\n') throw new Error(`raw newline in label value: ${line}`);
      else v += s[j];
    }
    if (j >= s.length) throw new Error(`unterminated label value: ${line}`);
    if (name in out) throw new Error(`label '${name}' twice: ${line}`);
    out[name] = v;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (i < s.length) throw new Error(`expected ',' between labels: ${line}`);
  }
  return out;
}

/** The family a sample name belongs to, given its type (histogram/summary suffixes). */
function familyOf(sample: string, fam: Family | null): boolean {
  if (fam === null) return false;
  if (sample === fam.name) return fam.type !== 'histogram';
  if (fam.type === 'histogram') return [`${fam.name}_bucket`, `${fam.name}_sum`, `${fam.name}_count`].includes(sample);
  if (fam.type === 'summary') return [`${fam.name}_sum`, `${fam.name}_count`].includes(sample);
  return false;
}

/** Parse and check a whole exposition; throws naming the first violation. */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition does not end with a newline');
  const families = new Map<string, Family>();
  let cur = null as Family | null;
  const series = new Set<string>();
  const open = (name: string, line: string): Family => {
    if (!METRIC.test(name)) throw new Error(`bad metric name: ${line}`);
    if (cur?.name === name) return cur;
    if (families.has(name)) throw new Error(`family ${name} appears in two places (interleaved): ${line}`);
    cur = { name, type: null, help: null, samples: [] };
    families.set(name, cur);
    return cur;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) continue; // a plain comment
      const f = open(m[2], line);
      if (m[1] === 'HELP') {
        if (f.help !== null) throw new Error(`second HELP for ${f.name}`);
        if (/\\[^\\n]/.test(m[3] ?? '')) throw new Error(`bad escape in HELP: ${line}`);
        f.help = m[3] ?? '';
      } else {
        if (f.type !== null) throw new Error(`second TYPE for ${f.name}`);
        if (f.samples.length > 0) throw new Error(`TYPE after samples of ${f.name}`);
        if (!TYPES.has(m[3] ?? '')) throw new Error(`bad type: ${line}`);
        f.type = m[3]!;
      }
      continue;
    }
    const m = /^([^\s{]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const [, name, rawLabels, value] = m;
    if (!METRIC.test(name)) throw new Error(`bad metric name: ${line}`);
    if (!VALUE.test(value)) throw new Error(`bad value: ${line}`);
    const labels = rawLabels === undefined ? {} : parseLabels(rawLabels, line);
    let f = cur as Family | null;
    if (!familyOf(name, f)) {
      // An untyped sample starts its own family; one of a family seen before is interleaving.
      for (const [n, fam] of families) if (familyOf(name, fam) && n !== f?.name) throw new Error(`sample of ${n} after other families (interleaved): ${line}`);
      f = open(name, line);
    }
    const key = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(',')}}`;
    if (series.has(key)) throw new Error(`duplicate series ${key}`);
    series.add(key);
    f!.samples.push({ name, labels, value: Number(value.replace(/^([+-]?)inf$/i, '$1Infinity')) });
  }
  for (const f of families.values()) {
    if (f.type === 'counter' || f.type === 'histogram') for (const s of f.samples) if (!(s.value >= 0)) throw new Error(`negative ${f.type} sample ${s.name}`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = JSON.stringify(Object.entries(rest).sort());
    let g = groups.get(k);
    if (!g) { g = { buckets: [] }; groups.set(k, g); }
    if (s.name.endsWith('_bucket')) {
      if (le === undefined) throw new Error(`${f.name}_bucket without le`);
      g.buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
    } else if (s.name.endsWith('_count')) g.count = s.value;
    else g.sum = s.value;
  }
  for (const [k, g] of groups) {
    if (g.buckets.length === 0 || g.count === undefined || g.sum === undefined) throw new Error(`${f.name} ${k}: buckets, _sum and _count required`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i][0] > g.buckets[i - 1][0])) throw new Error(`${f.name} ${k}: le not increasing`);
      if (g.buckets[i][1] < g.buckets[i - 1][1]) throw new Error(`${f.name} ${k}: buckets not cumulative`);
    }
    const last = g.buckets[g.buckets.length - 1];
    if (last[0] !== Infinity || last[1] !== g.count) throw new Error(`${f.name} ${k}: +Inf bucket must equal _count`);
  }
}

describe('the exposition parser (it must be able to fail)', () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n';
  it('accepts a well-formed exposition', () => {
    const f = parseExposition(ok);
    expect([...f.keys()]).toEqual(['a_total', 'h']);
    expect(f.get('h')!.samples).toHaveLength(4);
  });
  it.each([
    ['a second TYPE', '# TYPE a counter\n# TYPE a counter\na 1\n', /second TYPE/],
    ['a second HELP', '# HELP a x\n# HELP a y\na 1\n', /second HELP/],
    ['an interleaved family', '# TYPE a counter\na 1\n# TYPE b gauge\nb 1\na{x="2"} 1\n', /interleaved/],
    ['a family declared twice', '# TYPE a counter\na 1\n# TYPE b gauge\nb 1\n# TYPE a counter\n', /interleaved/],
    ['TYPE after samples', '# HELP a x\na 1\n# TYPE a counter\n', /TYPE after samples/],
    ['a duplicate series', '# TYPE a counter\na{x="1"} 1\na{x="1"} 2\n', /duplicate series/],
    ['a bad escape', '# TYPE a counter\na{x="\\t"} 1\n', /bad escape/],
    ['an unquoted label', '# TYPE a counter\na{x=1} 1\n', /not quoted/],
    ['a bad value', '# TYPE a counter\na 1,5\n', /bad value/],
    ['a negative counter', '# TYPE a counter\na -1\n', /negative/],
    ['a histogram without +Inf = count', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 2\n', /\+Inf/],
    ['a non-cumulative histogram', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /cumulative/],
    ['no final newline', '# TYPE a counter\na 1', /newline/],
  ])('rejects %s', (_what, text, re) => {
    expect(() => parseExposition(text)).toThrow(re);
  });
});

describe('registerStatFamilies', () => {
  it('reads the sources once per scrape and again at the next one (never a stale set), each family once', async () => {
    const m = new Metrics({ workload: 'w', version: 'v1' });
    let reads = 0;
    const clusters = [{ name: 'outbound|80||a', stats: newClusterStats() }];
    registerStatFamilies(m.registry, () => {
      reads++;
      return clusters.map((c) => ({ prefix: `cluster.${c.name};`, stats: c.stats as unknown as StatSource['stats'], prom: ['envoy_cluster_', { cluster_name: c.name }] as [string, Record<string, string>] }));
    });
    clusters[0].stats.upstream_rq_total = 7;
    const first = parseExposition(await m.registry.metrics());
    expect(reads).toBe(1);
    expect(first.get('envoy_cluster_upstream_rq_total')!.samples).toEqual([{ name: 'envoy_cluster_upstream_rq_total', labels: { cluster_name: 'outbound|80||a' }, value: 7 }]);
    clusters.push({ name: 'outbound|80||b"\\', stats: newClusterStats() }); // a name that needs escaping
    clusters[0].stats.upstream_rq_total = 8;
    const second = parseExposition(await m.registry.metrics());
    expect(reads).toBe(2);
    expect(second.get('envoy_cluster_upstream_rq_total')!.samples.map((x) => [x.labels.cluster_name, x.value])).toEqual([['outbound|80||a', 8], ['outbound|80||b"\\', 0]]);
    expect([...second.keys()]).toEqual([...first.keys()]);
    // No tracer: no tracer families (the proxy below has one, and they are there).
    expect([...second.keys()].filter((k) => k.startsWith('meshlet_tracing_'))).toEqual([]);
    // Registering the same families twice is refused (one family per name).
    expect(() => registerStatFamilies(m.registry, () => [])).toThrow(/already been registered/);
  });

  it('registers the tracer families when the proxy has a tracer', async () => {
    const m = new Metrics({ workload: 'w', version: 'v1' });
    const tracer = { spans_started: 3, spans_ended: 2, sampled: 3, unsampled: 9 };
    registerStatFamilies(m.registry, () => [{ prefix: 'tracing', stats: tracer, prom: ['meshlet_tracing_', {}] }]);
    const f = parseExposition(await m.registry.metrics());
    expect([...f.keys()].filter((k) => k.startsWith('meshlet_tracing_'))).toEqual(['meshlet_tracing_sampled', 'meshlet_tracing_spans_ended', 'meshlet_tracing_spans_started', 'meshlet_tracing_unsampled']);
    expect(f.get('meshlet_tracing_unsampled')!.samples).toEqual([{ name: 'meshlet_tracing_unsampled', labels: {}, value: 9 }]);
    expect(f.get('meshlet_tracing_unsampled')!.type).toBe('counter');
  });
});

const fx = new Fixtures();
const HOST = 'ratings.default.svc.cluster.local';
let p: RunningProxy;
let appPort = 0;

beforeAll(async () => {
  const collector = await fx.upstream((req, res) => { req.resume(); req.on('end', () => res.end('{}')); });
  const v1 = await fx.upstream(echo('v1'));
  const v2 = await fx.upstream((_req, res) => { res.statusCode = 503; res.end('down'); });
  const app = await fx.upstream(echo('app'));
  appPort = app.port;
  p = await fx.proxy(twoSubsetYaml(HOST, { v1: v1.port, v2: v2.port }, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [ratings]
  http:
    - match: [{ headers: { x-v: { exact: "2" } } }]
      route: [{ destination: { host: ratings, subset: v2 } }]
      retries: { attempts: 2, retryOn: 5xx }
    - route: [{ destination: { host: ratings, subset: v1 } }]
`), {
    appPort: app.port, service: 'productpage', labels: { version: 'v1' },
    traceSampling: 1, traceEndpoint: `http://127.0.0.1:${collector.port}/v1/traces`, traceProtocol: 'http/json',
  });
  for (let i = 0; i < 6; i++) expect((await send(p.ports.outbound, { host: 'ratings' })).status).toBe(200);
  // v2's 503s are retried twice: the retry families get samples too.
  for (let i = 0; i < 2; i++) expect((await send(p.ports.outbound, { host: 'ratings', headers: { 'x-v': '2' } })).status).toBe(503);
  expect((await send(p.ports.outbound, { host: 'nowhere' })).status).toBe(404); // no route
  for (let i = 0; i < 3; i++) expect((await send(p.ports.inbound, { host: 'productpage' })).status).toBe(200);
});
afterAll(() => fx.closeAll());

/** /stats as name -> value. */
async function envoyStats(): Promise<Map<string, number>> {
  const text = (await send(p.ports.admin, { path: '/stats' })).body;
  return new Map(text.trim().split('\n').map((l) => { const i = l.lastIndexOf(': '); return [l.slice(0, i), Number(l.slice(i + 2))] as [string, number]; }));
}

/** The Prometheus sample an Envoy stat name is rendered as (Envoy's tag extraction for our prefixes). */
function promFor(stat: string): { name: string; labels: Record<string, string> } {
  let m = /^cluster\.(.+);\.(.+)$/.exec(stat);
  if (m) {
    const code = /^(retry\.)?upstream_rq_(\d{3})$/.exec(m[2]);
    if (code) return { name: `envoy_cluster_${code[1] ? 'retry_' : ''}upstream_rq`, labels: { cluster_name: m[1], response_code: code[2] } };
    return { name: `envoy_cluster_${m[2].replace(/\./g, '_')}`, labels: { cluster_name: m[1] } };
  }
  m = /^http\.(outbound|inbound)\.(.+)$/.exec(stat);
  if (m) return { name: `envoy_http_${m[2].replace(/\./g, '_')}`, labels: { http_conn_manager_prefix: m[1] } };
  m = /^tracing\.(.+)$/.exec(stat);
  if (m) return { name: `meshlet_tracing_${m[1]}`, labels: {} };
  // mTLS: the inbound listener's TLS termination, the outbound side's origination.
  m = /^listener\.inbound\.(.+)$/.exec(stat);
  if (m) return { name: `envoy_listener_${m[1].replace(/\./g, '_')}`, labels: { listener_prefix: 'inbound' } };
  m = /^cluster_manager\.outbound\.(.+)$/.exec(stat);
  if (m) return { name: `envoy_cluster_manager_${m[1].replace(/\./g, '_')}`, labels: {} };
  throw new Error(`no Prometheus mapping for ${stat}`);
}

describe('/stats/prometheus of a proxy with traffic', () => {
  it('is valid Prometheus text: every family once, typed, not interleaved; Istio and Envoy families from one Registry', async () => {
    const r = await send(p.ports.admin, { path: '/stats/prometheus' });
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const fams = parseExposition(r.body);
    for (const f of fams.values()) {
      expect(f.type, f.name).not.toBeNull();
      expect(f.help, f.name).not.toBeNull();
    }
    expect(fams.get('istio_requests_total')!.type).toBe('counter');
    expect(fams.get('istio_request_duration_milliseconds')!.type).toBe('histogram');
    expect(fams.get('envoy_cluster_upstream_rq_total')!.type).toBe('counter');
    expect(fams.get('envoy_cluster_upstream_cx_active')!.type).toBe('gauge');
    expect(fams.get('envoy_cluster_membership_healthy')!.type).toBe('gauge');
    expect(fams.get('envoy_http_downstream_rq_active')!.type).toBe('gauge');
    expect(fams.get('envoy_http_downstream_rq_total')!.type).toBe('counter');
    // response_code split as Envoy's tag extraction does it: final answers, and the codes that were retried.
    const rq = fams.get('envoy_cluster_upstream_rq')!;
    expect(rq.type).toBe('counter');
    expect(rq.samples).toContainEqual({ name: 'envoy_cluster_upstream_rq', labels: { cluster_name: `outbound|80|v1|${HOST}`, response_code: '200' }, value: 6 });
    expect(rq.samples).toContainEqual({ name: 'envoy_cluster_upstream_rq', labels: { cluster_name: `outbound|80|v2|${HOST}`, response_code: '503' }, value: 6 }); // every attempt
    expect(fams.get('envoy_cluster_retry_upstream_rq')!.samples).toContainEqual({ name: 'envoy_cluster_retry_upstream_rq', labels: { cluster_name: `outbound|80|v2|${HOST}`, response_code: '503' }, value: 4 });
    const served = fams.get('envoy_http_downstream_rq_total')!.samples.map((s) => [s.labels.http_conn_manager_prefix, s.value]);
    expect(served).toEqual([['outbound', 9], ['inbound', 3]]);
    expect(fams.get('meshlet_tracing_spans_started')!.samples[0].value).toBeGreaterThan(0);
    // Istio's histogram in its own buckets, +Inf = count = requests (checked per series by the parser).
    const h = fams.get('istio_request_duration_milliseconds')!;
    const count = h.samples.filter((s) => s.name.endsWith('_count')).reduce((a, s) => a + s.value, 0);
    const total = fams.get('istio_requests_total')!.samples.reduce((a, s) => a + s.value, 0);
    expect(count).toBe(total);
    expect(total).toBe(6 + 2 + 3); // the 404 had no cluster: no Istio series, as in Istio
  });

  it('has every Envoy stat of /stats, with the same value, and nothing else besides Istio', async () => {
    const stats = await envoyStats();
    const fams = parseExposition((await send(p.ports.admin, { path: '/stats/prometheus' })).body);
    const samples = new Map<string, number>();
    for (const f of fams.values()) for (const s of f.samples) if (!s.name.startsWith('istio_')) samples.set(`${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`, s.value);
    const missing: string[] = [];
    for (const [stat, v] of stats) {
      const { name, labels } = promFor(stat);
      const got = samples.get(`${name}${JSON.stringify(Object.entries(labels).sort())}`);
      if (got !== v) missing.push(`${stat}: ${v} -> ${name} ${JSON.stringify(labels)}: ${got}`);
    }
    expect(missing).toEqual([]);
    expect(samples.size).toBe(stats.size);
    expect(stats.get('tracing.spans_started')).toBeGreaterThan(0);
  });

  it('/stats?format=prometheus is the same exposition', async () => {
    const a = await send(p.ports.admin, { path: '/stats/prometheus' });
    const b = await send(p.ports.admin, { path: '/stats?format=prometheus' });
    expect(b.body).toBe(a.body);
    expect(b.headers['content-type']).toBe(a.headers['content-type']);
  });

  it('follows the clusters of a new snapshot without re-registering (a cluster removed is gone, one added appears)', async () => {
    const before = parseExposition((await send(p.ports.admin, { path: '/stats/prometheus' })).body);
    const names = (f: Map<string, Family>) => new Set(f.get('envoy_cluster_upstream_rq_total')!.samples.map((s) => s.labels.cluster_name));
    expect(names(before)).toContain(`outbound|80|v1|${HOST}`);
    const u = await fx.upstream(echo('other'));
    p.apply(snapshotFromYaml(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: other }
spec:
  hosts: [other]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${u.port} } }]
`, '2'));
    expect((await send(p.ports.outbound, { host: 'other' })).status).toBe(200);
    const after = parseExposition((await send(p.ports.admin, { path: '/stats/prometheus' })).body);
    expect([...names(after)].sort()).toEqual([`inbound|${appPort}||`, 'outbound|80||other']);
    expect([...after.keys()]).toEqual([...before.keys()]); // the same families, in the same order
  });

  it('merged over --workers (mergePrometheus) stays valid: each family once, every sample per worker with a worker label', async () => {
    const t = (await send(p.ports.admin, { path: '/stats/prometheus' })).body;
    const one = parseExposition(t);
    const merged = parseExposition(mergePrometheus([{ index: 0, t }, { index: 1, t }]));
    expect([...merged.keys()]).toEqual([...one.keys()]);
    for (const [name, f] of one) {
      const m = merged.get(name)!;
      expect(m.type).toBe(f.type);
      expect(m.samples).toHaveLength(2 * f.samples.length);
      for (const s of f.samples) for (const w of ['0', '1']) expect(m.samples).toContainEqual({ ...s, labels: { worker: w, ...s.labels } });
    }
  });
});
