// Istio's standard metrics, exposed through a prom-client Registry. The per-request work is two
// additions on a Series object cached per (destination, code, flags): prom-client's own
// Counter/Histogram hash their label set on every inc()/observe(), which cost more than the rest
// of the request's bookkeeping, so these two families are kept here and handed to the registry
// as metrics it renders (prom-client's `registerMetric` contract: name, help, type, get()).
import { createRequire } from 'node:module';
import type { Registry as RegistryType } from 'prom-client';

// Only the Registry: prom-client's index also loads Pushgateway, cluster aggregation and the
// OpenTelemetry API (about 20 MB of RSS in a sidecar that uses none of them).
const Registry = createRequire(import.meta.url)('prom-client/lib/registry.js') as typeof RegistryType;

const BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

type Labels = Record<string, string>;

/** One label set of istio_requests_total and istio_request_duration_milliseconds. */
export class Series {
  readonly labels: Labels;
  requests = 0;
  sum = 0;
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly buckets = new Float64Array(BUCKETS.length + 1);
  constructor(labels: Labels) { this.labels = labels; }

  record(ms: number): void {
    this.requests++;
    this.sum += ms;
    let i = 0;
    while (i < BUCKETS.length && ms > BUCKETS[i]) i++;
    this.buckets[i]++;
  }
}

interface MetricValue { labels: Labels; value: number; metricName?: string }

/** A metric family the registry renders from our series (prom-client's registerMetric contract). */
class Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  private series: () => Iterable<Series>;
  constructor(name: string, help: string, type: 'counter' | 'histogram', series: () => Iterable<Series>) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.series = series;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const s of this.series()) {
      if (this.type === 'counter') { values.push({ labels: s.labels, value: s.requests }); continue; }
      let acc = 0;
      for (let i = 0; i < BUCKETS.length; i++) {
        acc += s.buckets[i];
        values.push({ metricName: `${this.name}_bucket`, labels: { ...s.labels, le: String(BUCKETS[i]) }, value: acc });
      }
      acc += s.buckets[BUCKETS.length];
      values.push({ metricName: `${this.name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: acc });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.requests });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** What a destination caches: its plain (no flags, no override) series by status code, and the rest by key. */
interface EdgeSeries { plain: Map<number, Series>; other: Map<string, Series> }

export class Metrics {
  readonly registry = new Registry();
  private source: { workload: string; version: string };
  private cache = new Map<string, EdgeSeries>();
  private all: Series[] = [];

  constructor(source: { workload: string; version: string }) {
    this.source = source;
    const all = () => this.all;
    // Registry.registerMetric takes any object with name/help/type/get(); ours match prom-client's shapes.
    this.registry.registerMetric(new Family('istio_requests_total', 'Requests handled by this sidecar.', 'counter', all) as never);
    this.registry.registerMetric(new Family('istio_request_duration_milliseconds', 'Request duration in milliseconds.', 'histogram', all) as never);
  }

  /**
   * The series for one request's labels. `edgeKey` identifies the destination (cluster name);
   * the common case (no flags, no dtab override) is keyed by status code alone: no string built.
   */
  series(reporter: string, edgeKey: string, service: string, version: () => string, code: number, flags: string, dtab: boolean): Series {
    let byEdge = this.cache.get(edgeKey);
    if (byEdge === undefined) { byEdge = { plain: new Map(), other: new Map() }; this.cache.set(edgeKey, byEdge); }
    const plain = flags === '-' && !dtab;
    const k = plain ? '' : `${code}|${flags}|${dtab ? 1 : 0}`;
    let s = plain ? byEdge.plain.get(code) : byEdge.other.get(k);
    if (s === undefined) {
      s = new Series({
        reporter, source_workload: this.source.workload, source_version: this.source.version,
        destination_service: service, destination_service_name: service.split('.')[0], destination_version: version() || 'unknown',
        response_code: String(code), response_flags: flags, dtab_override: dtab ? 'true' : 'false',
      });
      this.all.push(s);
      if (plain) byEdge.plain.set(code, s); else byEdge.other.set(k, s);
    }
    return s;
  }

  /** Forget edges of clusters that no longer exist (their label series stay until restart, as in Envoy). */
  forget(edgeKey: string): void { this.cache.delete(edgeKey); }
}
