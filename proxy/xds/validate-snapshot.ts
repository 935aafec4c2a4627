// Shape check for a snapshot received from a control server, before proxy.apply() builds it.
// The control server compiles with the same code, but a proxy must not trust the wire: a
// different version of the control server, or a bug, must produce a NACK naming the field, not
// a crash deep in the router. Also checks what only this proxy can know (its own ports).
import type { Snapshot } from '../config/schema.ts';
import { DEFAULT_BASE_DTAB } from '../config/compile.ts';

type Check = (v: unknown, path: string, errs: string[]) => void;

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const str: Check = (v, p, e) => { if (typeof v !== 'string') e.push(`${p}: must be a string`); };
const bool: Check = (v, p, e) => { if (typeof v !== 'boolean') e.push(`${p}: must be a boolean`); };
const int = (min: number, max: number): Check => (v, p, e) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) e.push(`${p}: must be an integer ${min}..${max}, got ${JSON.stringify(v)}`);
};
const num = (min: number, max: number): Check => (v, p, e) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) e.push(`${p}: must be a number ${min}..${max}, got ${JSON.stringify(v)}`);
};
const list = (item: Check): Check => (v, p, e) => {
  if (!Array.isArray(v)) { e.push(`${p}: must be a list`); return; }
  v.forEach((x, i) => item(x, `${p}[${i}]`, e));
};
const dict = (item: Check): Check => (v, p, e) => {
  if (!isObj(v)) { e.push(`${p}: must be an object`); return; }
  for (const [k, x] of Object.entries(v)) item(x, `${p}.${k}`, e);
};
const oneOf = (...vals: string[]): Check => (v, p, e) => { if (!vals.includes(v as string)) e.push(`${p}: must be one of ${vals.join(', ')}`); };
/** Known fields; `req` lists required ones. Unknown fields are errors: a newer control server's field this proxy would ignore silently. */
const obj = (fields: Record<string, Check>, req: string[] = []): Check => (v, p, e) => {
  if (!isObj(v)) { e.push(`${p}: must be an object`); return; }
  for (const [k, x] of Object.entries(v)) {
    const f = fields[k];
    if (!f) e.push(`${p}.${k}: unknown field (this proxy does not understand it)`);
    else if (x !== undefined) f(x, `${p}.${k}`, e);
  }
  for (const r of req) if (v[r] === undefined) e.push(`${p}.${r}: is required`);
};

const U32 = 4294967295;
const stringMatch = obj({ exact: str, prefix: str, regex: str });
const headerOps = obj({ set: dict(str), add: dict(str), remove: list(str) });
const headersBlock = obj({ request: headerOps, response: headerOps });
const match = obj({
  uri: stringMatch, method: stringMatch, authority: stringMatch, headers: dict(stringMatch),
  withoutHeaders: dict(stringMatch), queryParams: dict(stringMatch), ignoreUriCase: bool,
});
const route = obj({
  name: str, match: list(match),
  destinations: list(obj({ cluster: str, host: str, subset: str, weight: int(0, 100), headers: headersBlock }, ['cluster', 'host', 'subset', 'weight'])),
  rewrite: obj({ uri: str, authority: str }), headers: headersBlock, timeoutMs: num(0, 1e12),
  retries: obj({ attempts: int(0, 1000), perTryTimeoutMs: num(0, 1e12), retryOn: str, retriableStatusCodes: list(int(100, 599)) }, ['attempts', 'retryOn', 'retriableStatusCodes']),
  fault: obj({
    delay: obj({ fixedDelayMs: num(0, 1e12), percent: num(0, 100) }, ['fixedDelayMs', 'percent']),
    abort: obj({ httpStatus: int(200, 599), percent: num(0, 100) }, ['httpStatus', 'percent']),
  }),
  mirrors: list(obj({ cluster: str, host: str, percent: num(0, 100) }, ['cluster', 'host', 'percent'])),
}, ['name', 'match', 'destinations']);
const cluster = obj({
  name: str, service: str, subset: str, port: int(1, 65535), lb: oneOf('ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM'),
  endpoints: list(obj({ address: str, port: int(1, 65535), labels: dict(str) }, ['address', 'port', 'labels'])),
  connectionPool: obj({
    maxConnections: int(0, U32), connectTimeoutMs: num(0, 1e12), maxPendingRequests: int(0, U32), maxRequests: int(0, U32),
    maxRetries: int(0, U32), maxRequestsPerConnection: int(0, U32), idleTimeoutMs: num(0, 1e12),
    retryBudget: obj({ percent: num(0, 100), minRetryConcurrency: int(0, U32) }, ['percent', 'minRetryConcurrency']),
  }, ['maxConnections', 'connectTimeoutMs', 'maxPendingRequests', 'maxRequests', 'maxRetries', 'maxRequestsPerConnection', 'idleTimeoutMs']),
  outlier: obj({
    consecutive5xx: int(0, U32), consecutiveGatewayErrors: int(0, U32), enforceGateway: bool, consecutiveLocalOriginFailures: int(0, U32),
    splitExternalLocalOriginErrors: bool, intervalMs: num(0, 1e12), baseEjectionTimeMs: num(0, 1e12), maxEjectionPercent: num(0, 100), minHealthPercent: num(0, 100),
  }, ['consecutive5xx', 'consecutiveGatewayErrors', 'enforceGateway', 'consecutiveLocalOriginFailures', 'splitExternalLocalOriginErrors', 'intervalMs', 'baseEjectionTimeMs', 'maxEjectionPercent', 'minHealthPercent']),
  resolution: oneOf('DNS', 'DNS_ROUND_ROBIN'),
}, ['name', 'service', 'subset', 'port', 'lb', 'endpoints', 'connectionPool']);
const snapshot = obj({
  version: str, hash: str, source: str,
  services: list(obj({ host: str, aliases: list(str), ports: list(obj({ number: int(1, 65535), name: str, protocol: str }, ['number', 'name', 'protocol'])), subsets: list(str) }, ['host', 'aliases', 'ports', 'subsets'])),
  clusters: list(cluster),
  virtualHosts: list(obj({ name: str, service: str, domains: list(str), routes: list(route) }, ['name', 'service', 'domains', 'routes'])),
  dtab: str,
}, ['version', 'hash', 'source', 'services', 'clusters', 'virtualHosts', 'dtab']);

export interface SelfInfo { address: string; ports: number[] }

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** Problems with `v` as a snapshot for this proxy; empty = it may be applied. */
export function snapshotProblems(v: unknown, self?: SelfInfo): string[] {
  const errs: string[] = [];
  snapshot(v, 'snapshot', errs);
  if (errs.length > 0) return errs.slice(0, 20);
  const s = v as Snapshot;
  const names = new Set<string>();
  s.clusters.forEach((c, i) => { if (names.has(c.name)) errs.push(`snapshot.clusters[${i}].name: duplicate cluster "${c.name}"`); names.add(c.name); });
  s.virtualHosts.forEach((vh, i) => vh.routes.forEach((r, j) => {
    r.destinations.forEach((d, k) => { if (!names.has(d.cluster)) errs.push(`snapshot.virtualHosts[${i}].routes[${j}].destinations[${k}].cluster: no cluster "${d.cluster}"`); });
    const sum = r.destinations.reduce((a, d) => a + d.weight, 0);
    if (r.destinations.length > 0 && sum !== 100) errs.push(`snapshot.virtualHosts[${i}].routes[${j}]: weights sum to ${sum}, must be 100`);
    (r.mirrors ?? []).forEach((m, k) => { if (!names.has(m.cluster)) errs.push(`snapshot.virtualHosts[${i}].routes[${j}].mirrors[${k}].cluster: no cluster "${m.cluster}"`); });
  }));
  // An endpoint that is this proxy's own outbound or admin listener would loop requests back
  // into the proxy: only the proxy knows its ports, so this check lives here, not in control.
  if (self) {
    s.clusters.forEach((c, i) => c.endpoints.forEach((e, k) => {
      if ((LOOPBACK.test(e.address) || e.address === self.address) && self.ports.includes(e.port)) {
        errs.push(`snapshot.clusters[${i}].endpoints[${k}]: ${e.address}:${e.port} is this proxy's own listener (cluster ${c.name}); applying it would loop requests`);
      }
    }));
  }
  return errs.slice(0, 20);
}

/** A snapshot that routes nothing: the state of a proxy that has not heard from control yet. */
export function emptySnapshot(source = 'empty'): Snapshot {
  return { version: '0', hash: 'empty', source, services: [], clusters: [], virtualHosts: [], dtab: DEFAULT_BASE_DTAB };
}
