// The telemetry stage: the last stage of every request, run once when its stream ends, reading
// StreamInfo only: Istio's metrics (istio_requests_total, istio_request_duration_milliseconds:
// one series record per request, from which the per-edge reports are also drained), the inbound
// server span, and the access log.
import type { Logger } from 'pino';
import type { StreamInfo } from '../core/stream-info.ts';
import { NO_SECURITY, PLAINTEXT_INBOUND, type SecurityLabels } from './metrics.ts';
import type { AccessLogMode } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Tracing } from './tracing.ts';
import { decodeGrpcMessage } from '../grpc.ts';

export interface TelemetryOptions {
  metrics: Metrics;
  tracing: Tracing | null;
  accessLog: AccessLogMode;
  log: Logger;
}

export class Telemetry {
  private readonly metrics: Metrics;
  private readonly tracing: Tracing | null;
  private readonly accessLog: AccessLogMode;
  private readonly access: Logger | null;

  constructor(opts: TelemetryOptions) {
    this.metrics = opts.metrics;
    this.tracing = opts.tracing;
    this.accessLog = opts.accessLog;
    this.access = opts.accessLog === 'off' ? null : opts.log.child({ log: 'access' });
  }

  record(info: StreamInfo): void {
    const code = info.status;
    const flags = info.flagString();
    if (info.serverSpan !== null) this.tracing!.end(info.serverSpan, code, flags, code >= 500 || code === 0);
    const dur = info.durationMs;
    const c = info.upstreamCluster;
    if (c !== null) {
      const reporter = info.listener === 'inbound' ? 'destination' : 'source';
      this.metrics.series(reporter, c.name, c.service, c.version(), code, flags, info.dtabOverride, info.grpcStatus, securityLabels(info)).record(dur);
    }
    const access = this.access;
    if (access !== null && (this.accessLog === 'all' || code >= 500 || info.flags !== 0)) {
      access.info({
        start_time: new Date(Date.now() - dur).toISOString(), method: info.method, path: info.target, protocol: info.protocol,
        response_code: code, response_flags: flags, bytes_received: info.bytesReceived, bytes_sent: info.bytesSent,
        duration_ms: Math.round(dur * 1000) / 1000, upstream_host: info.upstreamHost, upstream_cluster: c?.name ?? null,
        x_request_id: info.requestId, trace_id: info.traceId, listener: info.listener, attempts: info.attempts,
        // Envoy's %GRPC_STATUS% (null for a request that is not gRPC or got none).
        grpc_status: info.grpcStatus >= 0 ? info.grpcStatus : null, grpc_message: info.grpcMessage === null ? null : decodeGrpcMessage(info.grpcMessage),
        connection_security_policy: info.listener === 'inbound' ? (info.mtls ? 'mutual_tls' : 'none') : 'unknown',
        source_principal: info.sourcePrincipal, destination_principal: info.destinationPrincipal,
        ...(info.requestPrincipal !== null ? { request_principal: info.requestPrincipal } : {}),
        ...(info.authzPolicy !== null ? { authz_policy: info.authzPolicy } : {}),
        ...(info.audit !== null ? { audit: info.audit } : {}),
      });
    }
  }
}

/** The inbound series carry the connection's security (the same object when nothing differs: no allocation for plaintext). */
const mtlsLabels = new Map<string, SecurityLabels>();
function securityLabels(info: StreamInfo): SecurityLabels {
  if (info.listener !== 'inbound') return NO_SECURITY;
  if (!info.mtls) return PLAINTEXT_INBOUND;
  const k = `${info.sourcePrincipal}|${info.destinationPrincipal}`;
  let l = mtlsLabels.get(k);
  if (l === undefined) {
    l = { policy: 'mutual_tls', source: info.sourcePrincipal ?? 'unknown', destination: info.destinationPrincipal ?? 'unknown' };
    if (mtlsLabels.size < 10_000) mtlsLabels.set(k, l);
  }
  return l;
}
