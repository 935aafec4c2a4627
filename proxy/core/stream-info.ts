// StreamInfo (Envoy's name): the facts of one request that every stage may set and telemetry and
// the access log read at the end: status, response flags, bytes, ids, timings, what was chosen
// (route, cluster, host). Filters' private per-request state lives with each filter, not here.
import type { ActiveSpan } from '../telemetry/tracing.ts';

/**
 * Response flags as bits; FLAG_NAMES gives Envoy's order for the joined form (`UF,URX`), so
 * setting a flag is one OR and the string is built only when something reads it.
 */
export const Flag = {
  UH: 1 << 0, UT: 1 << 1, LR: 1 << 2, UR: 1 << 3, UF: 1 << 4, UC: 1 << 5, UO: 1 << 6, NR: 1 << 7,
  DI: 1 << 8, FI: 1 << 9, DC: 1 << 10, URX: 1 << 11, UPE: 1 << 12, NC: 1 << 13, IH: 1 << 14, SI: 1 << 15,
} as const;
export type FlagName = keyof typeof Flag;
const FLAG_NAMES = Object.keys(Flag) as FlagName[];

/** `UF,URX` for a flag set, `-` for none (Envoy's access-log form). */
export function flagString(flags: number): string {
  if (flags === 0) return '-';
  let out = '';
  for (let i = 0; i < FLAG_NAMES.length; i++) if (flags & (1 << i)) out = out === '' ? FLAG_NAMES[i] : `${out},${FLAG_NAMES[i]}`;
  return out;
}

/** What telemetry may know of the upstream cluster a request went to (Envoy's ClusterInfo): names, not internals. */
export interface ClusterInfo {
  readonly name: string;
  /** The destination service (its canonical host). */
  readonly service: string;
  /** The destination version: the subset, or the endpoints' common `version` label; '' = unknown. */
  version(): string;
}

export type ListenerName = 'outbound' | 'inbound';

export class StreamInfo {
  /** performance.now() when the request head was parsed. */
  readonly startMs: number;
  readonly listener: ListenerName;
  /** The request as received (the access log's method, path, protocol). */
  readonly method: string;
  readonly target: string;
  readonly protocol: string;
  readonly downstreamAddress: string;
  requestId = '';
  /** The trace this request belongs to (access log), when tracing is on. */
  traceId: string | null = null;
  /** This hop's server span (inbound, sampled): ended by telemetry with the final status. */
  serverSpan: ActiveSpan | null = null;
  /** The status sent downstream (0: none, e.g. the client went away first). */
  status = 0;
  flags = 0;
  bytesReceived = 0;
  bytesSent = 0;
  routeName: string | null = null;
  /** The cluster the router sent to (set when it started forwarding). */
  upstreamCluster: ClusterInfo | null = null;
  upstreamHost: string | null = null;
  /** Upstream attempts made (tries, retries and resends). */
  attempts = 0;
  /** A dtab override (l5d-dtab / l5d-ctx-dtab) applied to this request. */
  dtabOverride = false;
  /** Set when the stream ends. */
  durationMs = 0;
  /** The request is gRPC (content-type application/grpc*): local replies become gRPC errors. */
  grpc = false;
  /** grpc-status sent downstream (response headers or trailers); -1 = none. */
  grpcStatus = -1;
  grpcMessage: string | null = null;
  // --- security (Istio's standard labels; the access log) ---
  /** The connection was mutual TLS (Istio's connection_security_policy mutual_tls / none). */
  mtls = false;
  /** The peer's SPIFFE ID (inbound: the caller; outbound: the server verified). */
  sourcePrincipal: string | null = null;
  destinationPrincipal: string | null = null;
  /** The verified JWT's `<iss>/<sub>` (RequestAuthentication). */
  requestPrincipal: string | null = null;
  /** A matching AUDIT AuthorizationPolicy (`ns/name`): the request is marked for audit. */
  audit: string | null = null;
  /** The policy (`ns/name`) that decided an authorization, or null. */
  authzPolicy: string | null = null;

  constructor(listener: ListenerName, method: string, target: string, protocol: string, downstreamAddress: string, startMs: number) {
    this.listener = listener;
    this.method = method;
    this.target = target;
    this.protocol = protocol;
    this.downstreamAddress = downstreamAddress;
    this.startMs = startMs;
  }

  addFlag(bit: number): void { this.flags |= bit; }
  flagString(): string { return flagString(this.flags); }
}
