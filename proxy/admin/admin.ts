// The admin port: readiness, Envoy-format stats, Prometheus, config and cluster state.
// Served by the proxy's own HTTP engine: node:http would add ~15 MB of RSS to every sidecar.
import { HttpServer, type ServerRequest, type ServerResponse } from '../engine/server.ts';
import { registerStatFamilies, renderEnvoyText, type StatSource } from '../telemetry/stats.ts';
import type { Metrics } from '../telemetry/metrics.ts';
import type { Runtime } from '../runtime.ts';
import type { Cluster } from '../upstream/cluster.ts';
import { searchTest, type StringTest } from '../config/regex.ts';

export interface AdminContext {
  ready(): { ok: boolean; state: string };
  runtime(): Runtime | null;
  /** The Envoy stat sources now (clusters follow the snapshot): read on every /stats and scrape. */
  statSources(): StatSource[];
  /** Its registry renders /stats/prometheus: Istio's families, and the Envoy ones createAdmin registers. */
  metrics: Metrics;
  clusters(): Cluster[];
  configDump(): unknown;
  /** Extra routes (e.g. the dtab delegator) contributed by other stages. */
  extra?: (req: ServerRequest, res: ServerResponse, url: URL) => boolean;
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, undefined, ['content-type', type, 'content-length', String(Buffer.byteLength(body)), 'cache-control', 'no-cache']);
  res.end(body);
}

/** A success rate for /clusters: -1 stays -1, others with at most 3 decimals. */
function rate(v: number): string {
  return v < 0 ? '-1' : String(Math.round(v * 1000) / 1000);
}

export function renderClusters(clusters: Cluster[], nowMs: number): string {
  let out = '';
  for (const c of clusters) {
    const n = c.name;
    const l = c.spec.connectionPool;
    out += `${n}::observability_name::${n}\n`;
    if (c.detector) {
      // The last interval's success-rate statistics (-1 = too few hosts with enough requests, as Envoy).
      out += `${n}::outlier::success_rate_average::${rate(c.detector.srAverage)}\n${n}::outlier::success_rate_ejection_threshold::${rate(c.detector.srThreshold)}\n`;
      for (const k of ['local_origin_success_rate_average', 'local_origin_success_rate_ejection_threshold']) out += `${n}::outlier::${k}::-1\n`;
    }
    out += `${n}::default_priority::max_connections::${l.maxConnections}\n${n}::default_priority::max_pending_requests::${l.maxPendingRequests}\n`;
    out += `${n}::default_priority::max_requests::${l.maxRequests}\n${n}::default_priority::max_retries::${l.maxRetries}\n`;
    out += `${n}::high_priority::max_connections::1024\n${n}::high_priority::max_pending_requests::1024\n${n}::high_priority::max_requests::1024\n${n}::high_priority::max_retries::3\n`;
    out += `${n}::added_via_api::true\n`;
    for (const e of c.endpoints) {
      const h = `${n}::${e.key}`;
      const s = e.pool.hostStats;
      for (const k of ['cx_active', 'cx_connect_fail', 'cx_total', 'rq_active', 'rq_error', 'rq_success', 'rq_timeout', 'rq_total'] as const) out += `${h}::${k}::${s[k]}\n`;
      out += `${h}::hostname::${e.spec.hostname ?? e.spec.address}\n`; // DNS hosts: the name they resolved from
      out += `${h}::health_flags::${e.outlier.ejected ? '/failed_outlier_check' : 'healthy'}\n`;
      const lab = e.spec.labels;
      out += `${h}::weight::${e.lb.weight}\n${h}::region::${lab['topology.kubernetes.io/region'] ?? ''}\n${h}::zone::${lab['topology.kubernetes.io/zone'] ?? ''}\n${h}::sub_zone::\n${h}::canary::false\n${h}::priority::0\n`;
      out += `${h}::success_rate::${rate(e.outlier.successRate)}\n${h}::local_origin_success_rate::-1\n`;
      out += `${h}::labels::${Object.entries(e.spec.labels).map(([k, v]) => `${k}=${v}`).join(',')}\n`;
      if (e.outlier.ejected && c.detector) out += `${h}::ejected_until_ms::${Math.max(0, Math.round(c.detector.returnsAt(e.outlier) - nowMs))}\n`;
    }
  }
  return out;
}

function clustersJson(clusters: Cluster[], nowMs: number): unknown {
  return {
    cluster_statuses: clusters.map((c) => ({
      name: c.name,
      service: c.spec.service,
      subset: c.spec.subset,
      ...(c.detector && c.detector.srThreshold >= 0 ? { success_rate_ejection_threshold: { value: c.detector.srThreshold } } : {}),
      circuit_breakers: { thresholds: [{ priority: 'DEFAULT', max_connections: c.spec.connectionPool.maxConnections, max_pending_requests: c.spec.connectionPool.maxPendingRequests, max_requests: c.spec.connectionPool.maxRequests, max_retries: c.spec.connectionPool.maxRetries }] },
      host_statuses: c.endpoints.map((e) => ({
        address: { socket_address: { address: e.spec.address, port_value: e.spec.port } },
        ...(e.spec.hostname ? { hostname: e.spec.hostname } : {}),
        labels: e.spec.labels,
        stats: e.pool.hostStats,
        health_status: { eds_health_status: 'HEALTHY', failed_outlier_check: e.outlier.ejected },
        ...(e.outlier.successRate >= 0 ? { success_rate: { value: e.outlier.successRate } } : {}),
        weight: e.lb.weight,
        ejected_for_ms: e.outlier.ejected && c.detector ? Math.max(0, Math.round(c.detector.returnsAt(e.outlier) - nowMs)) : 0,
      })),
    })),
  };
}

export function createAdmin(ctx: AdminContext): HttpServer {
  // One Prometheus exposition: the Envoy families join Istio's in the same Registry, once.
  registerStatFamilies(ctx.metrics.registry, ctx.statSources);
  const noop = () => {};
  return new HttpServer({ maxHeaderBytes: 64 * 1024, idleTimeoutMs: 60_000, headersTimeoutMs: 10_000 }, {
    onRequest: (req, res) => { void handle(ctx, req, res); }, onAbort: noop, onConnection: noop,
  });
}

/**
 * The health port (Istio's 15021): only `/healthz/ready`, so kubelet can probe the sidecar on the
 * pod IP while the admin port (stats, config dump) stays on localhost.
 */
export function createHealth(ready: AdminContext['ready']): HttpServer {
  const noop = () => {};
  return new HttpServer({ maxHeaderBytes: 8 * 1024, idleTimeoutMs: 10_000, headersTimeoutMs: 5_000 }, {
    onRequest: (req, res) => {
      if (req.method !== 'GET' || (req.url !== '/healthz/ready' && req.url !== '/ready')) return send(res, 404, 'not found\n');
      const r = ready();
      return send(res, r.ok ? 200 : 503, `${r.state}\n`);
    },
    onAbort: noop, onConnection: noop,
  });
}

async function handle(ctx: AdminContext, req: ServerRequest, res: ServerResponse): Promise<void> {
  {
    let url: URL;
    try { url = new URL(req.url, 'http://admin'); } catch { return send(res, 400, 'bad request target\n'); }
    try {
      switch (url.pathname) {
        case '/ready': {
          const r = ctx.ready();
          return send(res, r.ok ? 200 : 503, `${r.state}\n`);
        }
        case '/stats': {
          const filter = url.searchParams.get('filter');
          // Envoy's filter is RE2 with partial-match semantics: linear time on any client input.
          let re: StringTest | undefined;
          if (filter) {
            try { re = searchTest(filter); } catch (e) { return send(res, 400, `invalid filter: ${(e as Error).message}\n`); }
          }
          // Envoy serves the same exposition at both paths.
          if (url.searchParams.get('format') === 'prometheus') return send(res, 200, await ctx.metrics.registry.metrics(), ctx.metrics.registry.contentType);
          return send(res, 200, renderEnvoyText(ctx.statSources(), { filter: re, usedOnly: url.searchParams.has('usedonly') }));
        }
        case '/stats/prometheus':
          return send(res, 200, await ctx.metrics.registry.metrics(), ctx.metrics.registry.contentType);
        case '/config_dump':
          return send(res, 200, `${JSON.stringify(ctx.configDump(), null, 2)}\n`, 'application/json');
        case '/clusters': {
          const now = performance.now();
          if (url.searchParams.get('format') === 'json') return send(res, 200, `${JSON.stringify(clustersJson(ctx.clusters(), now), null, 2)}\n`, 'application/json');
          return send(res, 200, renderClusters(ctx.clusters(), now));
        }
        case '/memory': {
          // Envoy's /memory, plus what a leak check needs: RSS and the open handles by kind
          // (sockets of finished tunnels or requests must be gone: TCPSocketWrap).
          const m = process.memoryUsage();
          const handles: Record<string, number> = {};
          for (const k of process.getActiveResourcesInfo()) handles[k] = (handles[k] ?? 0) + 1;
          return send(res, 200, `${JSON.stringify({ allocated: String(m.heapUsed), heap_size: String(m.heapTotal), rss: String(m.rss), external: String(m.external), active_resources: handles }, null, 2)}\n`, 'application/json');
        }
        case '/':
          return send(res, 200, ['meshlet admin', '/ready', '/stats', '/memory', '/stats?format=prometheus', '/stats/prometheus', '/config_dump', '/clusters', '/clusters?format=json', '/delegator', '/delegator.json'].join('\n') + '\n');
        default:
          if (ctx.extra && ctx.extra(req, res, url)) return;
          return send(res, 404, 'not found\n');
      }
    } catch (e) {
      if (!res.headersSent) send(res, 500, `${(e as Error).message}\n`);
    }
  }
}
