// Istio's standard metrics through prom-client. Label children are resolved once per
// (destination, code, flags) and cached on the destination, never looked up by labels per request.
import { Counter, Histogram, Registry } from 'prom-client';

const BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const LABELS = ['reporter', 'source_workload', 'source_version', 'destination_service', 'destination_service_name',
  'destination_version', 'response_code', 'response_flags', 'dtab_override'] as const;

export interface EdgeChildren {
  requests: { inc(): void };
  duration: { observe(v: number): void };
}

export class Metrics {
  readonly registry = new Registry();
  private requests: Counter<(typeof LABELS)[number]>;
  private duration: Histogram<(typeof LABELS)[number]>;
  private source: { workload: string; version: string };
  private cache = new Map<string, { plain: Map<number, EdgeChildren>; other: Map<string, EdgeChildren> }>();

  constructor(source: { workload: string; version: string }) {
    this.source = source;
    this.requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled by this sidecar.', labelNames: LABELS, registers: [this.registry] });
    this.duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds.', labelNames: LABELS, buckets: BUCKETS, registers: [this.registry] });
  }

  /**
   * Children for one edge. `edgeKey` identifies the destination (cluster name or inbound);
   * the inner key is code+flags+override, a handful of values per edge.
   */
  children(reporter: string, edgeKey: string, service: string, version: string, code: number, flags: string, dtab: boolean): EdgeChildren {
    let byEdge = this.cache.get(edgeKey);
    if (!byEdge) { byEdge = { plain: new Map(), other: new Map() }; this.cache.set(edgeKey, byEdge); }
    // The common case (no flags, no dtab override) is keyed by the status code alone: no string built.
    const plain = flags === '-' && !dtab;
    const k = plain ? '' : `${code}|${flags}|${dtab ? 1 : 0}`;
    let c = plain ? byEdge.plain.get(code) : byEdge.other.get(k);
    if (!c) {
      const labels = {
        reporter, source_workload: this.source.workload, source_version: this.source.version,
        destination_service: service, destination_service_name: service.split('.')[0], destination_version: version || 'unknown',
        response_code: String(code), response_flags: flags, dtab_override: dtab ? 'true' : 'false',
      };
      c = { requests: this.requests.labels(labels), duration: this.duration.labels(labels) };
      if (plain) byEdge.plain.set(code, c); else byEdge.other.set(k, c);
    }
    return c;
  }

  /** Forget edges of clusters that no longer exist (their label series stay until restart, as in Envoy). */
  forget(edgeKey: string): void { this.cache.delete(edgeKey); }
}
