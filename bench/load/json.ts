// The -json result: fortio's fhttp.HTTPRunnerResults as json.MarshalIndent writes it: the same
// field names, order and types (durations as integer nanoseconds, Payload as base64, nil slices
// as null), so a strict Go decoder of fortio's struct (DisallowUnknownFields) reads it. What only
// meshlet knows (its coordinated-omission correction) goes in one separate `Meshlet` object,
// written only with -json-strict=false.
import type { HistogramData } from './histogram.ts';
import type { LoadResult } from './runner.ts';
import { goG } from './gofmt.ts';
import { goDurationMs } from './goflag.ts';

/** The flags echoed in HTTPOptions that the runner does not need to know as such. */
export interface JsonEcho {
  labels: string;
  runId: number;
  percentiles: number[];
  cacert?: string;
  cert?: string;
  key?: string;
  h2?: boolean;
  stdClient?: boolean;
  meshlet?: boolean;
  accessLogInfo?: string;
  version?: string;
}

export interface FortioJson {
  RunType: string; Labels: string; StartTime: string; RequestedQPS: string; RequestedDuration: string;
  ActualQPS: number; ActualDuration: number; NumThreads: number; Version: string;
  DurationHistogram: HistogramData; ErrorsDurationHistogram: HistogramData;
  Exactly: number; Jitter: boolean; Uniform: boolean; NoCatchUp: boolean; RunID: number;
  AccessLoggerInfo: string; ID: string;
  RetCodes: Record<string, number>; IPCountMap: Record<string, number>;
  Insecure: boolean; MTLS: boolean; CACert: string; Cert: string; Key: string; UnixDomainSocket: string;
  URL: string; NumConnections: number; Compression: boolean; DisableFastClient: boolean; HTTP10: boolean; H2: boolean;
  DisableKeepAlive: boolean; AllowHalfClose: boolean; FollowRedirects: boolean; Resolve: string; HTTPReqTimeOut: number;
  UserCredentials: string; ContentType: string; Payload: string | null; MethodOverride: string; LogErrors: boolean;
  SequentialWarmup: boolean; ConnReuseRange: [number, number]; NoResolveEachConn: boolean; Offset: number; Resolution: number;
  Sizes: HistogramData; HeaderSizes: HistogramData; Sockets: number[]; SocketCount: number; ConnectionStats: HistogramData;
  AbortOn: number;
  Meshlet?: { LatencyFrom: string; BehindSchedule: number; MaxLagMs: number };
}

/** Go's time.Time JSON (RFC 3339 with the local offset; fractional seconds without trailing zeros). */
export function goTimeJson(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const off = -d.getTimezoneOffset();
  const frac = d.getMilliseconds() ? `.${p(d.getMilliseconds(), 3).replace(/0+$/, '')}` : '';
  const zone = off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${p(Math.floor(Math.abs(off) / 60))}:${p(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}${frac}${zone}`;
}

/**
 * fortio's RunnerResults.ID(): the local start time as YYYY-MM-DD-HHmmSS, `_<runid>` when
 * set, then `_` and the labels with every run of other than [A-Za-z0-9] made one `_` (none at
 * the end). Also the `-a` file name (plus `.json`).
 */
export function fortioId(start: Date, runId: number, labels: string): string {
  const p = (n: number) => String(n).padStart(2, '0');
  let base = `${start.getFullYear()}-${p(start.getMonth() + 1)}-${p(start.getDate())}-${p(start.getHours())}${p(start.getMinutes())}${p(start.getSeconds())}`;
  if (runId !== 0) base += `_${runId}`;
  if (labels === '') return base;
  let last = '_';
  base += last;
  for (const ch of labels) {
    if (/[A-Za-z0-9]/.test(ch)) last = ch;
    else { if (last === '_') continue; last = '_'; }
    base += last;
  }
  if (last === '_') base = base.slice(0, -1);
  return base.length > 96 ? base.slice(0, 96) : base; // fortio caps the ID at 96 characters
}

export function toFortioJson(r: LoadResult, percentilesOrEcho: number[] | JsonEcho, labels = ''): FortioJson {
  const e: JsonEcho = Array.isArray(percentilesOrEcho) ? { labels, runId: 0, percentiles: percentilesOrEcho } : percentilesOrEcho;
  const o = r.options;
  const count = r.duration.counter.count;
  const secs = r.actualDurationMs / 1000;
  let requestedDuration = r.exactly > 0 ? `exactly ${r.exactly} calls` : r.requestedDurationMs > 0 ? goDurationMs(r.requestedDurationMs) : 'until stop';
  if (r.exactly > 0 && count !== r.exactly) requestedDuration += `, interrupted after ${count}`;
  const j: FortioJson = {
    RunType: 'HTTP',
    Labels: e.labels,
    StartTime: goTimeJson(r.startTime),
    RequestedQPS: r.requestedQps > 0 ? goG(r.requestedQps, 9) : 'max',
    RequestedDuration: requestedDuration,
    ActualQPS: secs > 0 ? count / secs : 0,
    ActualDuration: Math.round(r.actualDurationMs * 1e6),
    NumThreads: r.connections,
    Version: e.version ?? 'meshlet',
    DurationHistogram: r.duration.export(e.percentiles),
    ErrorsDurationHistogram: r.errors.export(e.percentiles),
    Exactly: r.exactly,
    Jitter: !!o.jitter,
    Uniform: !!o.uniform,
    NoCatchUp: !!o.noCatchUp,
    RunID: e.runId,
    AccessLoggerInfo: e.accessLogInfo ?? '',
    ID: fortioId(r.startTime, e.runId, e.labels),
    RetCodes: Object.fromEntries([...r.retCodes].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v])),
    IPCountMap: Object.fromEntries(r.ips),
    Insecure: !!o.tls?.insecure,
    MTLS: !!(e.cert && e.key),
    CACert: e.cacert ?? '',
    Cert: e.cert ?? '',
    Key: e.key ?? '',
    UnixDomainSocket: o.unixSocket ?? '',
    URL: o.url,
    NumConnections: r.connections,
    Compression: !!o.compression,
    DisableFastClient: !!(e.stdClient || o.followRedirects),
    HTTP10: !!o.http10,
    H2: !!e.h2,
    DisableKeepAlive: o.keepAlive === false,
    AllowHalfClose: !!o.halfClose,
    FollowRedirects: !!o.followRedirects,
    Resolve: o.resolve ?? '',
    HTTPReqTimeOut: Math.round(o.timeoutMs * 1e6),
    UserCredentials: o.user ?? '',
    ContentType: o.contentType ?? '',
    Payload: o.payload && o.payload.length ? o.payload.toString('base64') : null,
    MethodOverride: o.method ?? '',
    LogErrors: o.logErrors !== false,
    SequentialWarmup: !!o.sequentialWarmup,
    ConnReuseRange: o.reuse ? [o.reuse[0], o.reuse[1]] : [0, 0],
    NoResolveEachConn: !!o.noReresolve,
    Offset: Math.round((o.offsetSec ?? 0) * 1e9),
    Resolution: o.resolution ?? 0.001,
    Sizes: r.sizes.export(),
    HeaderSizes: r.headerSizes.export(),
    Sockets: r.sockets,
    SocketCount: r.sockets.reduce((a, b) => a + b, 0),
    ConnectionStats: r.connStats.export(e.percentiles),
    AbortOn: o.abortOn ?? 0,
  };
  if (e.meshlet) {
    j.Meshlet = { LatencyFrom: o.coCorrection === false ? 'actual send' : 'intended start when behind schedule', BehindSchedule: r.behind, MaxLagMs: r.maxLagMs };
  }
  return j;
}
