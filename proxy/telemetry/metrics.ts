// Istio's standard metrics, exposed through a prom-client Registry. The per-request work is two
// additions on a Series object cached per (destination, code, flags): prom-client's own
// Counter/Histogram hash their label set on every inc()/observe(), which cost more than the rest
// of the request's bookkeeping, so these two families are kept here and handed to the registry
// as metrics it renders (prom-client's `registerMetric` contract: name, help, type, get()).
//
// The same series are the only latency histogram a request feeds: the per-edge reports for the
// control server's mesh view are a view of them (`drainEdges`: the delta of each outbound
// cluster's reporter=source series since the previous report), not a second set of counters.
import { createRequire } from 'node:module';
import type { Registry as RegistryType } from 'prom-client';
import { DURATION_BUCKETS_MS } from './buckets.ts';
import type { EdgeReport } from './edges.ts';

// Only the Registry: prom-client's index also loads Pushgateway, cluster aggregation and the
// OpenTelemetry API (about 20 MB of RSS in a sidecar that uses none of them).
const Registry = createRequire(import.meta.url)('prom-client/lib/registry.js') as typeof RegistryType;

const BUCKETS = DURATION_BUCKETS_MS;

type Labels = Record<string, string>;

/** One label set of istio_requests_total and istio_request_duration_milliseconds. */
export class Series {
  readonly labels: Labels;
  /** The labels the edge view needs, parsed once: response code, flags (null for '-'), reporter=source. */
  readonly code: number;
  readonly flagList: readonly string[] | null;
  readonly source: boolean;
  requests = 0;
  sum = 0;
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly buckets = new Float64Array(BUCKETS.length + 1);
  /** The counts at the previous edge drain (`drainEdges`; allocated by the first one that sees traffic). */
  drainedRequests = 0;
  drainedBuckets: Float64Array | null = null;
  constructor(labels: Labels, code: number, flags: string) {
    this.labels = labels;
    this.code = code;
    this.flagList = flags === '-' ? null : flags.split(',');
    this.source = labels.reporter === 'source';
  }

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

/**
 * Istio's security labels: connection_security_policy (mutual_tls / none on the destination's
 * side; unknown at the source, as Istio reports), source_principal, destination_principal.
 */
export interface SecurityLabels { policy: string; source: string; destination: string }
export const NO_SECURITY: SecurityLabels = { policy: 'unknown', source: 'unknown', destination: 'unknown' };
/** Plaintext on the inbound side. With NO_SECURITY the only label sets of the by-code cache: an edge key (a cluster) is only ever inbound or outbound. */
export const PLAINTEXT_INBOUND: SecurityLabels = { policy: 'none', source: 'unknown', destination: 'unknown' };

/** What a destination caches: its plain (no flags, no override) series by status code, and the rest by key. */
interface EdgeSeries { plain: Map<number, Series>; other: Map<string, Series> }

/** An outbound cluster as the edge report sees it, from the caller (telemetry does not read cluster internals). */
export interface EdgeHealth {
  /** The cluster name: the `edgeKey` its requests were recorded under. */
  cluster: string;
  /** The destination service host and version (Cluster.version(): the subset, or the endpoints' common version label). */
  service: string;
  subset: string;
  /** Endpoints not ejected / all, now. */
  healthy: number;
  total: number;
}

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
  series(reporter: string, edgeKey: string, service: string, version: string, code: number, flags: string, dtab: boolean, grpcStatus = -1, sec: SecurityLabels = NO_SECURITY): Series {
    let byEdge = this.cache.get(edgeKey);
    if (byEdge === undefined) { byEdge = { plain: new Map(), other: new Map() }; this.cache.set(edgeKey, byEdge); }
    const plain = flags === '-' && !dtab && grpcStatus < 0 && (sec === NO_SECURITY || sec === PLAINTEXT_INBOUND);
    const k = plain ? '' : `${code}|${flags}|${dtab ? 1 : 0}|${grpcStatus}|${sec.policy}|${sec.source}|${sec.destination}`;
    let s = plain ? byEdge.plain.get(code) : byEdge.other.get(k);
    if (s === undefined) {
      s = new Series({
        reporter, source_workload: this.source.workload, source_version: this.source.version,
        destination_service: service, destination_service_name: service.split('.')[0], destination_version: version || 'unknown',
        response_code: String(code), response_flags: flags, dtab_override: dtab ? 'true' : 'false',
        // Istio's label: the gRPC status of a gRPC request, empty otherwise.
        grpc_response_status: grpcStatus >= 0 ? String(grpcStatus) : '',
        connection_security_policy: sec.policy, source_principal: sec.source, destination_principal: sec.destination,
      }, code, flags);
      this.all.push(s);
      if (plain) byEdge.plain.set(code, s); else byEdge.other.set(k, s);
    }
    return s;
  }

  /**
   * The edge reports since the previous call: per cluster in `clusters`, the delta of its
   * reporter=source series (requests; errors = code >= 500 or 0; each flag of the series' flags
   * label; latency buckets). A cluster with no traffic since is reported only while some of its
   * endpoints are ejected (the mesh view draws it broken). Series keep counting: only the drain
   * marks move. Clusters not listed keep their marks, so traffic is never counted twice.
   */
  drainEdges(clusters: Iterable<EdgeHealth>): EdgeReport[] {
    const out: EdgeReport[] = [];
    for (const h of clusters) {
      const byEdge = this.cache.get(h.cluster);
      let requests = 0;
      let errors5xx = 0;
      const flags: Record<string, number> = {};
      const buckets = new Array<number>(BUCKETS.length + 1).fill(0);
      if (byEdge !== undefined) {
        for (const map of [byEdge.plain, byEdge.other] as Array<Map<unknown, Series>>) {
          for (const s of map.values()) {
            const d = s.requests - s.drainedRequests;
            if (!s.source || d === 0) continue;
            s.drainedRequests = s.requests;
            requests += d;
            if (s.code >= 500 || s.code === 0) errors5xx += d;
            if (s.flagList !== null) for (const f of s.flagList) flags[f] = (flags[f] ?? 0) + d;
            const last = s.drainedBuckets ??= new Float64Array(BUCKETS.length + 1);
            for (let i = 0; i < buckets.length; i++) { buckets[i] += s.buckets[i] - last[i]; last[i] = s.buckets[i]; }
          }
        }
      }
      if (requests === 0 && h.healthy === h.total) continue;
      out.push({ destination: h.service, subset: h.subset, requests, errors5xx, flags, buckets, healthy: h.healthy, total: h.total });
    }
    return out;
  }
}
