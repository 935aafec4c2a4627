// The snapshot: what a proxy executes. Owned by the proxy; the control server imports it.
// It is plain JSON (regexes as strings) so it can be streamed; the proxy compiles matchers
// from it once per snapshot (proxy/filters/route/table.ts), never per request.
//
// The shape is defined once, as a schema (snapshot.schema.ts: fields, ranges, which are
// required, what each means); these types are derived from it, never written twice. Type-only
// imports: importing this module loads no schema library.
import type { Static } from 'typebox';
import type * as S from './snapshot.schema.ts';

export type StringMatchSpec = Static<typeof S.StringMatchSpec>;
export type MatchSpec = Static<typeof S.MatchSpec>;
export type HeaderOpsSpec = Static<typeof S.HeaderOpsSpec>;
export type RetrySpec = Static<typeof S.RetrySpec>;
export type FaultSpec = Static<typeof S.FaultSpec>;
export type MirrorSpec = Static<typeof S.MirrorSpec>;
export type RouteDestinationSpec = Static<typeof S.RouteDestinationSpec>;
export type RouteSpec = Static<typeof S.RouteSpec>;
export type VirtualHostSpec = Static<typeof S.VirtualHostSpec>;
export type ConnectionPoolSpec = Static<typeof S.ConnectionPoolSpec>;
export type OutlierSpec = Static<typeof S.OutlierSpec>;
export type HashSpec = Static<typeof S.HashSpec>;
export type ClusterSpec = Static<typeof S.ClusterSpec>;
export type ServiceSpec = Static<typeof S.ServiceSpec>;
export type Snapshot = Static<typeof S.Snapshot>;

/**
 * `hostname` is not on the wire (a control server that sent it is refused): a DNS cluster sets
 * it at run time on each host resolved from a name (proxy/upstream/dns.ts), for /clusters.
 */
export type EndpointSpec = Static<typeof S.EndpointSpec> & { hostname?: string };

/** Istio's values when connectionPool fields are unset (envoy-semantics.md section 1.1). */
export const ISTIO_UNLIMITED = 4294967295;
export const DEFAULT_CONNECTION_POOL: ConnectionPoolSpec = {
  maxConnections: ISTIO_UNLIMITED,
  connectTimeoutMs: 10_000,
  maxPendingRequests: ISTIO_UNLIMITED,
  maxRequests: ISTIO_UNLIMITED,
  maxRetries: ISTIO_UNLIMITED,
  maxRequestsPerConnection: 0,
  // Envoy's default is 1 h; a Node upstream closes idle sockets after 5 s, so a pool that kept
  // them longer would race the server's close. Shorter than every common server keep-alive.
  idleTimeoutMs: 4_000,
};

export function clusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}
