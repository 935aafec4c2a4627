// The router's per-route tunnel config (Envoy's RouteAction.upgrade_configs and idle_timeout),
// compiled once per snapshot into the route (the route table calls this, as it calls each
// filter's compile function); read by filters/router/upgrade.ts.
import type { RouteSpec } from '../../config/schema.ts';

/** A route's compiled upgrade switches: lower-case type ("connect" for CONNECT) -> enabled. */
export interface RouteUpgrades {
  types: Map<string, boolean> | null;
  /** Tunnels on this route close after this long idle; 0 = never; -1 = unset (the listener's stream idle timeout). */
  idleTimeoutMs: number;
}

export const NO_ROUTE_UPGRADES: RouteUpgrades = { types: null, idleTimeoutMs: -1 };

export function compileUpgrades(r: RouteSpec): RouteUpgrades {
  if (r.upgrades === undefined && r.idleTimeoutMs === undefined) return NO_ROUTE_UPGRADES;
  return { types: r.upgrades ? new Map(r.upgrades.map((u) => [u.type, u.enabled])) : null, idleTimeoutMs: r.idleTimeoutMs ?? -1 };
}
