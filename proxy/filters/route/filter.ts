// The route filter: the request's virtual host (the dtab filter's binding, or the Host header)
// -> first matching route -> weighted destination, then the route's rewrite and header
// operations. It owns `no_route` (404 NR) and `no_cluster` (503 NC), and applies the route's and
// the destination's response header operations on the way back. The inbound listener's
// counterpart sends everything to the local app's cluster.
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import { applyOps } from '../../listener/headers.ts';
import type { Runtime } from '../../runtime.ts';
import type { Cluster } from '../../upstream/cluster.ts';
import { Flag } from '../../core/stream-info.ts';
import { BODY } from '../../local-reply.ts';
import { matchRoute, pickDestination, type RequestView } from './table.ts';

export class RouteFilter implements HttpFilter {
  readonly name = 'route';
  readonly stats = { no_route: 0, no_cluster: 0 };
  private readonly runtime: () => Runtime | null;

  constructor(runtime: () => Runtime | null) { this.runtime = runtime; }

  onRequest(s: HttpStream): boolean {
    // CONNECT (authority-form) is routed by its target, as Envoy matches the CONNECT target, not
    // Host; its route is the one a request for `/` on that host would take.
    const connect = s.method === 'CONNECT';
    const url = connect ? '/' : s.path;
    const authority = connect ? s.req.url : s.req.host ?? '';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    let route = s.route; // a dtab binding may have chosen one directly (a subset, an address)
    if (route === null) {
      const vh = s.vhost ?? this.runtime()?.routes.forHost(authority);
      if (vh) {
        const view: RequestView = { method: s.method, path, query, authority, req: s.req };
        route = matchRoute(vh, view) ?? null;
      }
      if (route === null) { this.stats.no_route++; s.sendLocalReply(404, '', Flag.NR); return false; }
      s.route = route;
    }
    s.info.routeName = route.name;
    const dest = pickDestination(route);
    if (!dest) { this.stats.no_cluster++; s.sendLocalReply(503, '', Flag.NC); return false; }
    s.dest = dest;
    s.cluster = dest.cluster;
    s.info.upstreamCluster = dest.cluster; // telemetry's destination, also for a fault that never reaches the router
    const rw = route.rewrite;
    if (rw && !connect) {
      if (rw.uri !== undefined) {
        // Istio: with a prefix match the matched prefix is replaced, otherwise the whole path.
        const p = route.prefixMatch !== undefined && path.startsWith(route.prefixMatch)
          ? rw.uri + path.slice(route.prefixMatch.length) : rw.uri;
        s.path = query ? `${p || '/'}?${query}` : p || '/';
      }
      if (rw.authority !== undefined) {
        const h = s.headers;
        for (let i = 0; i < h.length; i += 2) if (h[i].toLowerCase() === 'host') h[i + 1] = rw.authority;
      }
    }
    if (route.headers?.request) applyOps(s.headers, route.headers.request);
    if (dest.headers?.request) applyOps(s.headers, dest.headers.request);
    return true;
  }

  onResponseHeaders(s: HttpStream, headers: string[]): void {
    const r = s.route?.headers?.response;
    const d = s.dest?.headers?.response;
    if (r) applyOps(headers, r);
    if (d) applyOps(headers, d);
  }
}

/** Inbound: every request goes to the local app (`inbound|<port>||`); none configured = 503 UH. */
export class InboundRouteFilter implements HttpFilter {
  readonly name = 'inbound-route';
  private readonly cluster: () => Cluster | null;

  constructor(cluster: () => Cluster | null) { this.cluster = cluster; }

  onRequest(s: HttpStream): boolean {
    const c = this.cluster();
    if (c === null) { s.sendLocalReply(503, BODY.noHealthy, Flag.UH); return false; }
    s.cluster = c;
    s.info.upstreamCluster = c;
    return true;
  }
}
