// Envoy-style stats: plain numeric fields on per-cluster objects (the hot path does `s.x++`),
// rendered on demand in Envoy's `/stats` text format, and as Prometheus families registered in
// the same prom-client Registry as Istio's (registerStatFamilies): one family object per metric
// name, registered once, reading the live sources when scraped.
import type { Registry } from 'prom-client';
import type { SpanStats } from './tracing.ts';

const CLUSTER_COUNTERS = [
  'upstream_rq_total', 'upstream_rq_completed', 'upstream_rq_2xx', 'upstream_rq_3xx', 'upstream_rq_4xx', 'upstream_rq_5xx',
  'upstream_cx_total', 'upstream_cx_connect_fail', 'upstream_cx_connect_timeout', 'upstream_cx_overflow', 'upstream_cx_none_healthy',
  'upstream_cx_destroy_remote_with_active_rq', 'upstream_cx_destroy_local_with_active_rq', 'upstream_cx_protocol_error',
  'upstream_rq_pending_total', 'upstream_rq_pending_overflow', 'upstream_rq_pending_failure_eject', 'upstream_rq_cancelled',
  'upstream_rq_timeout', 'upstream_rq_per_try_timeout', 'upstream_rq_rx_reset', 'upstream_rq_tx_reset',
  'upstream_rq_retry', 'upstream_rq_retry_success', 'upstream_rq_retry_overflow', 'upstream_rq_retry_limit_exceeded',
  'upstream_rq_retry_backoff_exponential', 'retry_or_shadow_abandoned',
  // Tunnels (upgrades, CONNECT) to this cluster: Envoy's HCM downstream_cx_upgrades_* names, upstream side.
  'upstream_cx_upgrades_total',
  // HTTP/2 upstreams: sessions opened, GOAWAYs received (Envoy's names).
  'upstream_cx_http2_total', 'upstream_cx_close_notify',
  'update_attempt', 'update_success', 'update_failure', 'membership_change',
  'outlier_detection.ejections_enforced_total', 'outlier_detection.ejections_overflow', 'outlier_detection.ejections_total',
  'outlier_detection.ejections_detected_consecutive_5xx', 'outlier_detection.ejections_enforced_consecutive_5xx',
  'outlier_detection.ejections_consecutive_5xx',
  'outlier_detection.ejections_detected_consecutive_gateway_failure', 'outlier_detection.ejections_enforced_consecutive_gateway_failure',
  'outlier_detection.ejections_detected_consecutive_local_origin_failure', 'outlier_detection.ejections_enforced_consecutive_local_origin_failure',
  'outlier_detection.ejections_detected_success_rate', 'outlier_detection.ejections_enforced_success_rate', 'outlier_detection.ejections_success_rate',
  'outlier_detection.ejections_detected_failure_percentage', 'outlier_detection.ejections_enforced_failure_percentage',
] as const;

const CLUSTER_GAUGES = [
  'upstream_rq_active', 'upstream_cx_active', 'upstream_rq_pending_active', 'upstream_cx_upgrades_active', 'membership_total', 'membership_healthy',
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
  // (Upgrade stats, downstream_cx_upgrades_* and downstream_rq_ws_on_non_ws_route, are the router filter's.)
  // HTTP/2 downstreams (engine/h2-server.ts): sessions, and connections closed for premature resets.
  'downstream_cx_http2_total', 'downstream_rq_too_many_premature_resets',
  // A filter threw: its request was failed (500, or reset after the response started).
  'downstream_rq_filter_error',
] as const;
// The filters' own stats (no_route, fault.*, mirror.*, dtab_*) are theirs: listener/chains.ts.
const HTTP_GAUGES = ['downstream_cx_active', 'downstream_rq_active', 'downstream_cx_http2_active'] as const;
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

/** The tracer's own counters (`tracing.*`, `meshlet_tracing_*`). */
const TRACING_COUNTERS = ['spans_started', 'spans_ended', 'sampled', 'unsampled'] as const satisfies ReadonlyArray<keyof SpanStats>;
// Every SpanStats field has a family: a field added there without one fails to type-check here.
const tracingCovered: Exclude<keyof SpanStats, (typeof TRACING_COUNTERS)[number]> extends never ? true : never = true;
void tracingCovered;

/**
 * A kind of stat source and the Prometheus families it has: every stat name it can carry (the
 * same lists that create its stats objects), as `<prom><name with . as _>` with the source's
 * labels. Families are fixed at start, so a scrape never registers anything.
 */
interface StatKind {
  /** Family prefix, matched against StatSource.prom[0]. */
  prom: string;
  /** HELP text: whose stat it is and the /stats name pattern. */
  about: string;
  counters: readonly string[];
  gauges: readonly string[];
  /** Per-code maps, each one family with a `response_code` label (Envoy's upstream_rq_<code> tag extraction). */
  codeMaps: ReadonlyArray<{ key: 'codes' | 'retryCodes'; stat: string }>;
  /**
   * Only for a proxy that has such a source when the families are registered (the tracer exists
   * from start or never): a proxy without tracing shows no tracer families at all.
   */
  optional?: true;
}

const STAT_KINDS: readonly StatKind[] = [
  {
    prom: 'envoy_cluster_', about: 'Envoy stat cluster.<cluster_name>', counters: CLUSTER_COUNTERS, gauges: CLUSTER_GAUGES,
    codeMaps: [{ key: 'codes', stat: 'upstream_rq' }, { key: 'retryCodes', stat: 'retry.upstream_rq' }],
  },
  { prom: 'envoy_http_', about: 'Envoy stat http.<http_conn_manager_prefix>', counters: HTTP_COUNTERS, gauges: HTTP_GAUGES, codeMaps: [] },
  { prom: 'meshlet_tracing_', about: "meshlet's tracer stat tracing", counters: TRACING_COUNTERS, gauges: [], codeMaps: [], optional: true },
  // mTLS (proxy/identity/tls.ts): the inbound listener's TLS termination and the upstream side's origination.
  { prom: 'envoy_listener_', about: 'Envoy stat listener.<listener_prefix>', counters: [], gauges: [], codeMaps: [], optional: true },
  { prom: 'envoy_cluster_manager_', about: 'Envoy stat cluster_manager (meshlet: the upstream TLS origination of all clusters)', counters: [], gauges: [], codeMaps: [], optional: true },
];

/**
 * A sample for prom-client. `sharedLabels` is the source's own label object: prom-client formats
 * it once per object (a WeakMap), so a cluster's name is escaped once per scrape, not once per stat.
 */
interface StatValue { labels: Record<string, string>; sharedLabels?: Record<string, string>; value: number }

/** The sources of one scrape, by kind: read once and shared by every family of the scrape. */
type SourcesByKind = () => ReadonlyMap<string, readonly StatSource[]>;

/** One Prometheus family over the sources of one kind (prom-client's registerMetric contract: name, help, type, get()). */
class StatFamily {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly aggregator = 'sum';
  private readonly kind: StatKind;
  /** The stat field, or the per-code map whose entries become `response_code` series. */
  private readonly field: string;
  private readonly byCode: boolean;
  private readonly sources: SourcesByKind;

  constructor(kind: StatKind, field: string, stat: string, type: 'counter' | 'gauge', byCode: boolean, sources: SourcesByKind) {
    this.kind = kind;
    this.field = field;
    this.byCode = byCode;
    this.sources = sources;
    this.type = type;
    this.name = `${kind.prom}${stat.replace(/\./g, '_')}`;
    this.help = `${kind.about}.${stat}${byCode ? '_<response_code>' : ''}`;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: StatValue[] } {
    const values: StatValue[] = [];
    const none = {};
    for (const src of this.sources().get(this.kind.prom) ?? []) {
      const v = src.stats[this.field];
      if (this.byCode) {
        if (v instanceof Map) for (const [code, n] of v) values.push({ labels: { ...src.prom[1], response_code: String(code) }, value: n });
      } else if (typeof v === 'number') values.push({ labels: none, sharedLabels: src.prom[1], value: v });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/**
 * Register the Envoy families (`envoy_cluster_*`, `envoy_http_*`, `meshlet_tracing_*`) in
 * `registry`, sorted by name, each reading `sources()` when scraped: clusters come and go with
 * snapshots and the families follow without being registered again. A family with no series yet
 * (e.g. no code retried so far) renders its HELP and TYPE only, as any prom-client family; the
 * tracer's families exist only when the proxy has a tracer at registration (it is made at start).
 */
export function registerStatFamilies(registry: Registry, sources: () => Iterable<StatSource>): void {
  // One read of the sources per scrape: the Registry asks every family in one synchronous pass,
  // so the first family's read is kept until the microtask queue runs, and all families of a
  // scrape see the same clusters (one snapshot of the set, not one per family).
  let scrape: Map<string, StatSource[]> | null = null;
  const current: SourcesByKind = () => {
    if (scrape === null) {
      const byKind = new Map<string, StatSource[]>();
      for (const src of sources()) {
        let list = byKind.get(src.prom[0]);
        if (list === undefined) { list = []; byKind.set(src.prom[0], list); }
        list.push(src);
      }
      scrape = byKind;
      queueMicrotask(() => { scrape = null; });
    }
    return scrape;
  };
  const families: StatFamily[] = [];
  const present = current();
  for (const kind of STAT_KINDS) {
    if (kind.optional && !present.has(kind.prom)) continue;
    // The kind's own lists, plus what its sources carry at start beyond them: the listeners'
    // filters own their stats (`fault.*`, `mirror.*`, `no_route`, …) and are made before the admin.
    const counters = new Set<string>(kind.counters);
    const gauges = new Set<string>(kind.gauges);
    for (const src of present.get(kind.prom) ?? []) {
      for (const [k, v] of Object.entries(src.stats)) if (typeof v === 'number' && !counters.has(k) && !gauges.has(k)) (GAUGES.has(k) ? gauges : counters).add(k);
    }
    for (const k of counters) families.push(new StatFamily(kind, k, k, 'counter', false, current));
    for (const k of gauges) families.push(new StatFamily(kind, k, k, 'gauge', false, current));
    for (const m of kind.codeMaps) families.push(new StatFamily(kind, m.key, m.stat, 'counter', true, current));
  }
  families.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // registerMetric refuses a second family of the same name: two stats that map to one name fail here, at start.
  for (const f of families) registry.registerMetric(f as never);
}
