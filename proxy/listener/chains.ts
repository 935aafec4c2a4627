// The filter chain of each listener, declared in one place (Envoy's http_filters list per HCM).
// A request runs the filters in this order; each is one module under proxy/filters/ that owns
// its config, per-request state, stats and timers. Adding a filter is a new directory there and
// one line here (see docs/architecture.md, "Adding a filter").
//
//   outbound: dtab (parse + bind) -> route -> fault -> mirror -> router
//   inbound:  dtab (parse, forward) -> jwt -> authz -> inbound-route -> router
import type { HttpFilter } from './stream.ts';
import type { Runtime } from '../runtime.ts';
import type { Cluster } from '../upstream/cluster.ts';
import { DtabFilter } from '../filters/dtab/filter.ts';
import { RouteFilter, InboundRouteFilter } from '../filters/route/filter.ts';
import { FaultFilter, type FaultOptions } from '../filters/fault/filter.ts';
import { MirrorFilter, type MirrorOptions } from '../filters/mirror/filter.ts';
import { RouterFilter } from '../filters/router/router.ts';
import { AuthzFilter, type AuthzOptions } from '../filters/authz/filter.ts';
import { JwtFilter, type JwtOptions } from '../filters/jwt/filter.ts';

export interface ChainDeps {
  runtime: () => Runtime | null;
  inboundCluster: () => Cluster | null;
  fault: FaultOptions;
  mirror: MirrorOptions;
  /** Inbound security: this workload's identity facts for AuthorizationPolicy and RequestAuthentication. */
  authz?: Omit<AuthzOptions, 'runtime'>;
  jwt?: Omit<JwtOptions, 'runtime'>;
}

export function outboundFilters(d: ChainDeps): HttpFilter[] {
  return [
    new DtabFilter({ bind: true, runtime: d.runtime }),
    new RouteFilter(d.runtime),
    new FaultFilter(d.fault),
    new MirrorFilter(d.mirror),
    new RouterFilter(),
  ];
}

export function inboundFilters(d: ChainDeps): HttpFilter[] {
  return [
    new DtabFilter({ bind: false, runtime: d.runtime }),
    new JwtFilter({ runtime: d.runtime, ...(d.jwt ?? { workload: d.authz?.workload ?? { namespace: 'default', labels: {} } }) }),
    new AuthzFilter({ runtime: d.runtime, ...(d.authz ?? { workload: { namespace: 'default', labels: {} }, numTrustedProxies: 0 }) }),
    new InboundRouteFilter(d.inboundCluster),
    new RouterFilter(),
  ];
}
