// Envoy-style stats: plain numeric fields on per-cluster objects (the hot path does `s.x++`),
// rendered on demand in Envoy's `/stats` text format or Prometheus text.

const CLUSTER_COUNTERS = [
  'upstream_rq_total', 'upstream_rq_completed', 'upstream_rq_2xx', 'upstream_rq_3xx', 'upstream_rq_4xx', 'upstream_rq_5xx',
  'upstream_cx_total', 'upstream_cx_connect_fail', 'upstream_cx_connect_timeout', 'upstream_cx_overflow', 'upstream_cx_none_healthy',
  'upstream_cx_destroy_remote_with_active_rq', 'upstream_cx_destroy_local_with_active_rq', 'upstream_cx_protocol_error',
  'upstream_rq_pending_total', 'upstream_rq_pending_overflow', 'upstream_rq_pending_failure_eject', 'upstream_rq_cancelled',
  'upstream_rq_timeout', 'upstream_rq_per_try_timeout', 'upstream_rq_rx_reset', 'upstream_rq_tx_reset',
  'upstream_rq_retry', 'upstream_rq_retry_success', 'upstream_rq_retry_overflow', 'upstream_rq_retry_limit_exceeded',
  'upstream_rq_retry_backoff_exponential', 'retry_or_shadow_abandoned',
  'update_attempt', 'update_success', 'update_failure', 'membership_change',
  'outlier_detection.ejections_enforced_total', 'outlier_detection.ejections_overflow', 'outlier_detection.ejections_total',
  'outlier_detection.ejections_detected_consecutive_5xx', 'outlier_detection.ejections_enforced_consecutive_5xx',
  'outlier_detection.ejections_consecutive_5xx',
  'outlier_detection.ejections_detected_consecutive_gateway_failure', 'outlier_detection.ejections_enforced_consecutive_gateway_failure',
  'outlier_detection.ejections_detected_consecutive_local_origin_failure', 'outlier_detection.ejections_enforced_consecutive_local_origin_failure',
] as const;

const CLUSTER_GAUGES = [
  'upstream_rq_active', 'upstream_cx_active', 'upstream_rq_pending_active', 'membership_total', 'membership_healthy',
  'outlier_detection.ejections_active',
  'circuit_breakers.default.cx_open', 'circuit_breakers.default.cx_pool_open', 'circuit_breakers.default.rq_pending_open',
  'circuit_breakers.default.rq_open', 'circuit_breakers.default.rq_retry_open',
] as const;

export type ClusterStatName = (typeof CLUSTER_COUNTERS)[number] | (typeof CLUSTER_GAUGES)[number];
export type ClusterStats = Record<ClusterStatName, number> & { codes: Map<number, number>; retryCodes: Map<number, number> };

export const GAUGES = new Set<string>(CLUSTER_GAUGES);

export function newClusterStats(): ClusterStats {
  const s = { codes: new Map(), retryCodes: new Map() } as unknown as ClusterStats;
  for (const k of CLUSTER_COUNTERS) s[k] = 0;
  for (const k of CLUSTER_GAUGES) s[k] = 0;
  return s;
}

/** Count a response code the way Envoy's chargeUpstreamCode does. */
export function chargeCode(s: ClusterStats, code: number): void {
  s.upstream_rq_completed++;
  const cls = (code / 100) | 0;
  if (cls === 2) s.upstream_rq_2xx++;
  else if (cls === 5) s.upstream_rq_5xx++;
  else if (cls === 4) s.upstream_rq_4xx++;
  else if (cls === 3) s.upstream_rq_3xx++;
  s.codes.set(code, (s.codes.get(code) ?? 0) + 1);
}

/** Listener (HTTP connection manager) stats, `http.<prefix>.*`. */
const HTTP_COUNTERS = [
  'downstream_rq_total', 'downstream_rq_2xx', 'downstream_rq_3xx', 'downstream_rq_4xx', 'downstream_rq_5xx',
  'downstream_cx_total', 'downstream_rq_rx_reset', 'downstream_rq_timeout', 'downstream_rq_idle_timeout', 'downstream_rq_too_large', 'rq_direct_response',
  'downstream_rq_ws_on_non_ws_route',
  // A filter threw: its request was failed (500, or reset after the response started).
  'downstream_rq_filter_error',
] as const;
// The filters' own stats (no_route, fault.*, mirror.*, dtab_*) are theirs: listener/chains.ts.
const HTTP_GAUGES = ['downstream_cx_active', 'downstream_rq_active'] as const;
export type HttpStatName = (typeof HTTP_COUNTERS)[number] | (typeof HTTP_GAUGES)[number];
export type HttpStats = Record<HttpStatName, number>;
for (const g of HTTP_GAUGES) GAUGES.add(g);

export function newHttpStats(): HttpStats {
  const s = {} as HttpStats;
  for (const k of HTTP_COUNTERS) s[k] = 0;
  for (const k of HTTP_GAUGES) s[k] = 0;
  return s;
}

export function chargeDownstream(s: HttpStats, code: number): void {
  const cls = (code / 100) | 0;
  if (cls === 2) s.downstream_rq_2xx++;
  else if (cls === 5) s.downstream_rq_5xx++;
  else if (cls === 4) s.downstream_rq_4xx++;
  else if (cls === 3) s.downstream_rq_3xx++;
}

export interface StatSource {
  /** Envoy stat prefix, e.g. `cluster.outbound|80||a.b;` (no trailing dot). */
  prefix: string;
  stats: Record<string, number | Map<number, number>>;
  /** Prometheus rendering: metric family prefix and labels, e.g. ['envoy_cluster_', {cluster_name: …}]. */
  prom: [string, Record<string, string>];
}

function flatten(src: StatSource): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const [k, v] of Object.entries(src.stats)) {
    if (v instanceof Map) {
      const base = k === 'codes' ? 'upstream_rq_' : 'retry.upstream_rq_';
      for (const [code, n] of v) out.push([`${base}${code}`, n]);
    } else out.push([k, v]);
  }
  return out;
}

/** Envoy's /stats text: counters and gauges merged and sorted by full name. */
export function renderEnvoyText(sources: StatSource[], opts: { filter?: (name: string) => boolean; usedOnly?: boolean } = {}): string {
  const lines: Array<[string, number]> = [];
  for (const src of sources) {
    for (const [k, v] of flatten(src)) {
      const name = `${src.prefix}.${k}`;
      if (opts.filter && !opts.filter(name)) continue;
      if (opts.usedOnly && v === 0) continue;
      lines.push([name, v]);
    }
  }
  lines.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return lines.map(([k, v]) => `${k}: ${v}\n`).join('');
}

function escLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Envoy-style Prometheus families (envoy_cluster_upstream_rq_total{cluster_name="…"}). */
export function renderPrometheus(sources: StatSource[]): string {
  const families = new Map<string, { type: string; samples: string[] }>();
  for (const src of sources) {
    const [prefix, labels] = src.prom;
    const base = Object.entries(labels).map(([k, v]) => `${k}="${escLabel(v)}"`);
    for (const [k, v] of flatten(src)) {
      let name = k;
      const extra: string[] = [];
      const m = /^(retry\.)?upstream_rq_(\d{3})$/.exec(k);
      if (m) { name = `${m[1] ? 'retry_' : ''}upstream_rq`; extra.push(`response_code="${m[2]}"`); }
      const metric = `${prefix}${name.replace(/\./g, '_')}`;
      let fam = families.get(metric);
      if (!fam) { fam = { type: GAUGES.has(k) ? 'gauge' : 'counter', samples: [] }; families.set(metric, fam); }
      fam.samples.push(`${metric}{${[...base, ...extra].join(',')}} ${v}`);
    }
  }
  let out = '';
  for (const [name, fam] of [...families].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    out += `# TYPE ${name} ${fam.type}\n${fam.samples.join('\n')}\n`;
  }
  return out;
}
