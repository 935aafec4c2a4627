// The router's tunnel path: HTTP upgrades (WebSocket and any Upgrade the route allows) and
// CONNECT, Envoy's upgrade_configs. An upgrade request is routed like any request (route match,
// dtab, weights, faults, retries and timeouts up to the upstream's answer); a 101 from the upstream
// is copied to the client verbatim and the two sockets become a byte relay (engine/tunnel.ts). A
// CONNECT to a mesh name is terminated here (Envoy's connect_config): a fresh TCP connection to the
// chosen endpoint, a 200 to the client, then the relay. What is allowed:
//
//   listener defaults (Envoy's HCM upgrade_configs): outbound websocket + CONNECT, inbound any
//   upgrade but no CONNECT
//   per route: upgradeConfigs [{ upgradeType, enabled }] override the default for that type
//
// An upgrade that is not allowed is refused with Envoy's answer, 403 (details upgrade_failed,
// counted as downstream_rq_ws_on_non_ws_route), never forwarded as a plain request; a CONNECT to a
// name no route knows is the route filter's 404 NR (no open proxy). Any answer but a switch closes
// the client connection after it: bytes behind a refused upgrade may be tunnel payload, never a
// request to parse.
import type { Socket } from 'node:net';
import type { HttpStream } from '../../listener/stream.ts';
import type { Cluster } from '../../upstream/cluster.ts';
import { Tunnel, type TunnelEnd } from '../../engine/tunnel.ts';
import { Flag } from '../../core/stream-info.ts';
import { GAUGES } from '../../telemetry/stats.ts';

GAUGES.add('downstream_cx_upgrades_active');

// The outbound listener allows websocket and CONNECT unless a route says otherwise. The inbound
// listener (no routes: the app's own door) forwards any upgrade the caller's sidecar let through,
// its route policy having been applied there, and terminates no CONNECT (no open proxy).
const LISTENER_DEFAULTS: Record<string, (type: string) => boolean> = {
  outbound: (t) => t === 'websocket' || t === 'connect',
  inbound: (t) => t !== 'connect',
};

/** The router filter's upgrade stats, shown as `http.<listener>.<key>` (Envoy's HCM names). */
export function newUpgradeStats() {
  return { downstream_cx_upgrades_total: 0, downstream_cx_upgrades_active: 0, downstream_rq_ws_on_non_ws_route: 0, downstream_cx_upgrade_idle_timeout: 0 };
}
export type UpgradeStats = ReturnType<typeof newUpgradeStats>;

/**
 * What the request asks to tunnel: 'connect' for CONNECT, the Upgrade protocols (lower-case) for an
 * upgrade, null for a plain request. `Upgrade: h2c` alone is not an upgrade here: as Envoy, it is
 * served as plain HTTP/1.1 (the listener already dropped the hop-by-hop headers).
 */
export function requestedUpgrade(s: HttpStream): string[] | 'connect' | null {
  if (s.method === 'CONNECT') return 'connect';
  const u = s.req.upgrade;
  if (u === null || (u.length === 1 && u[0] === 'h2c')) return null;
  return u;
}

/** Every protocol asked for is enabled by the route, or by the listener's defaults where the route says nothing. */
export function upgradeAllowed(s: HttpStream, asked: string[] | 'connect'): boolean {
  const route = s.route?.upgrades?.types ?? null;
  const defaults = LISTENER_DEFAULTS[s.info.listener];
  const types = asked === 'connect' ? ['connect'] : asked;
  for (const t of types) {
    const r = route?.get(t);
    if (!(r ?? (defaults?.(t) ?? false))) return false;
  }
  return true;
}

/** What a tunnel needs from the router's attempt that made it. */
export interface TunnelOwner {
  readonly s: HttpStream;
  readonly cluster: Cluster;
  readonly stats: UpgradeStats;
  /** The tunnel closed: the attempt lets go of its upstream connection. */
  onTunnelClosed(): void;
}

/**
 * Answer the client (`status`: the upstream's 101, or 200 for a terminated CONNECT), headers
 * verbatim, and relay bytes between it and `up` until both sides are closed. The stream ends when
 * the tunnel does, so the access log's duration and bytes cover the tunnel's whole life.
 */
export function startTunnel(o: TunnelOwner, status: number, reason: string | undefined, headers: string[], up: Socket, upHead: Buffer): Tunnel | null {
  const s = o.s;
  if (s.done || s.res.destroyed) { up.destroy(); return null; }
  const { socket, head, streamIdleTimeoutMs } = s.res.upgrade(status, reason, headers);
  s.committed = true;
  s.info.status = status;
  const st = o.stats;
  const cs = o.cluster.stats;
  const routeIdle = s.route?.upgrades?.idleTimeoutMs ?? -1;
  st.downstream_cx_upgrades_total++;
  st.downstream_cx_upgrades_active++;
  cs.upstream_cx_upgrades_total++;
  cs.upstream_cx_upgrades_active++;
  return new Tunnel(socket, head, up, upHead, {
    // The route's idle timeout (0 = never) wins over the listener's stream idle timeout, as Envoy's
    // route idle_timeout overrides the HCM's stream_idle_timeout.
    idleTimeoutMs: routeIdle >= 0 ? routeIdle : streamIdleTimeoutMs,
    onClose: (t: Tunnel, how: TunnelEnd) => {
      st.downstream_cx_upgrades_active--;
      cs.upstream_cx_upgrades_active--;
      // The tunnel's bytes are the request's and the response's (bytes_received / bytes_sent).
      s.req.bodyBytes += t.rxBytes;
      s.info.bytesSent += t.txBytes;
      try { o.onTunnelClosed(); } catch (e) { s.owner.filterError('router', e); }
      switch (how) {
        case 'downstream_reset': s.downstreamReset(); break;
        case 'upstream_reset': cs.upstream_cx_destroy_remote_with_active_rq++; s.reset(Flag.UC); break;
        case 'idle_timeout': st.downstream_cx_upgrade_idle_timeout++; s.reset(Flag.SI); break;
        default: s.sendEnd(null);
      }
    },
  });
}
