// The concrete level: one cluster per destination (service x port x subset), owning its
// endpoints, balancer, breakers, outlier detector and stats. Knows nothing of routes.
import type { ClusterSpec, EndpointSpec } from '../config/schema.ts';
import { newClusterStats, type ClusterStats } from '../telemetry/stats.ts';
import { EndpointPool, type Breakers, type Connector } from './pool.ts';
import { H2Pool } from './h2-pool.ts';
import { OutlierDetector, newHostOutlierState, type HostOutlierState } from './outlier.ts';
import type { ClusterInfo } from '../core/stream-info.ts';
import { DnsDiscovery, type DnsLookup } from './dns.ts';
import { isIP } from 'node:net';
import { Balancer, HostLb, observeRtt } from './balancer.ts';
import { requestHash, type HashRequest } from './lb/key.ts';
import { rankLoads, rankOf, type Locality } from './locality.ts';

/**
 * A rate budget on retries, held per cluster and fed every request (meshlet's Linkerd-style
 * --retry-budget-*; the retry module implements it): defined here so the cluster depends on no
 * filter.
 */
export interface RetryBudgetLike {
  onRequest(): void;
  /** Take one retry from the budget; false = exhausted. */
  tryWithdraw(): boolean;
}

export interface ClusterOptions {
  /** Makes each cluster's retry budget; absent = none, as Istio configures none. */
  retryBudget?: () => RetryBudgetLike;
  /** DNS clusters: how names resolve (default: the OS resolver) and how often (default 5 s). */
  dnsLookup?: DnsLookup;
  dnsRefreshMs?: number;
  /** A DNS name failed to resolve (its last good addresses stay in use). */
  onDnsError?: (cluster: string, name: string, err: Error) => void;
  /** The transport to each endpoint (mTLS origination, proxy/identity/tls.ts); undefined = plain TCP. */
  transport?: (cluster: ClusterSpec, endpoint: EndpointSpec) => Connector | undefined;
  /** This proxy's locality (--zone/--region): locality-aware balancing when the cluster allows it. */
  locality?: Locality;
}

/** Locality ranks of the current endpoints (locality.ts), nearest first, empty ranks dropped. */
interface Ranks {
  hosts: Endpoint[][];
  /** One balancer per rank: each keeps its own rotation and hash table. */
  balancers: Balancer[];
  rankOfHost: Uint8Array;
  healthy: Float64Array;
  total: Float64Array;
  load: Float64Array;
}

export class Endpoint {
  readonly spec: EndpointSpec;
  readonly pool: EndpointPool;
  readonly outlier: HostOutlierState = newHostOutlierState();
  /** Balancing state: weight, slow-start start, smooth-RR credit, PEAK_EWMA estimate. */
  readonly lb: HostLb;
  /** "address:port" (made once: the router reads it per attempt, the hash tables place it). */
  readonly key: string;
  /** `addedAt`: when it joined a running cluster (monotonic ms; 0 = with the cluster, never slow-started). */
  constructor(spec: EndpointSpec, br: Breakers, addedAt = 0, protocol?: 'http2' | 'client', connector?: Connector) {
    this.spec = spec;
    // `protocol`: the cluster's (ClusterSpec.protocol): HTTP/2 endpoints get a multiplexed pool.
    this.pool = protocol === undefined ? new EndpointPool(spec.address, spec.port, br) : new H2Pool(spec.address, spec.port, br, protocol);
    // The transport (mTLS origination, proxy/identity/tls.ts); undefined = plain TCP.
    this.pool.connector = connector;
    this.lb = new HostLb(spec.weight ?? 1, addedAt);
    this.key = `${spec.address}:${spec.port}`;
  }
}

/** What a consistent-hash pick reads from the request, and where a generated cookie goes. */
export interface PickRequest {
  readonly s: HashRequest & { readonly req: { readonly host: string | undefined } };
  setCookie: string | null;
}

/** PASSTHROUGH: at most this many original destinations keep a pool (Envoy ORIGINAL_DST's host map). */
const PASSTHROUGH_MAX_HOSTS = 256;

/** An IP-literal authority ("10.0.0.1:8080", "[::1]:80"; no port = the cluster's) as [address, port], or null. */
export function originalDestination(authority: string, defaultPort: number): [string, number] | null {
  let host = authority, port = defaultPort;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return null;
    host = authority.slice(1, end);
    const rest = authority.slice(end + 1);
    if (rest !== '') { if (!rest.startsWith(':')) return null; port = Number(rest.slice(1)); }
    if (isIP(host) !== 6) return null;
  } else {
    const c = authority.lastIndexOf(':');
    if (c >= 0) { host = authority.slice(0, c); port = Number(authority.slice(c + 1)); }
    if (isIP(host) !== 4) return null;
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return [host, port];
}

/** The destination's version, as Istio's destination_version: the subset, else the version label all endpoints share. */
function destinationVersion(spec: ClusterSpec): string {
  if (spec.subset) return spec.subset;
  const versions = new Set(spec.endpoints.map((e) => e.labels.version ?? ''));
  return versions.size === 1 ? [...versions][0] : '';
}

export class Cluster implements ClusterInfo {
  spec: ClusterSpec;
  specJson: string;
  readonly stats: ClusterStats = newClusterStats();
  readonly br: Breakers;
  endpoints: Endpoint[];
  readonly detector: OutlierDetector | null;
  readonly budget: RetryBudgetLike | null;
  private destVersion: string;
  /** DNS clusters only: the resolver that turns the spec's names into `endpoints`. */
  private readonly dns: DnsDiscovery | null = null;
  private readonly balancer: Balancer;
  /** PASSTHROUGH: hosts made on demand for original destinations, by the authority that named them. */
  private passthrough: Map<string, Endpoint> | null = null;
  private readonly locality: Locality | null;
  private ranks: Ranks | null = null;
  private rng: () => number = Math.random;
  private readonly transport: ClusterOptions['transport'];

  constructor(spec: ClusterSpec, specJson = JSON.stringify(spec), opts: ClusterOptions = {}) {
    this.spec = spec;
    this.specJson = specJson;
    this.budget = opts.retryBudget ? opts.retryBudget() : null;
    this.br = { limits: spec.connectionPool, stats: this.stats, cxActive: 0, rqActive: 0, pendingActive: 0, retriesActive: 0, hostsInBackoff: 0 };
    // A DNS cluster starts with no hosts: they arrive with the first answer (`warmed`).
    this.transport = opts.transport;
    this.endpoints = spec.resolution ? [] : spec.endpoints.map((e) => new Endpoint(e, this.br, 0, spec.protocol, this.transport?.(spec, e)));
    this.destVersion = destinationVersion(spec);
    this.balancer = new Balancer({ warmupMs: spec.warmupMs, minRingSize: spec.hash?.minimumRingSize, tableSize: spec.hash?.tableSize });
    // Istio: locality failover needs outlier detection (nothing else marks endpoints unhealthy).
    this.locality = opts.locality && spec.outlier && spec.locality?.enabled !== false && spec.lb !== 'PASSTHROUGH' ? opts.locality : null;
    this.rankEndpoints();
    this.stats.membership_total = this.endpoints.length;
    this.stats.membership_healthy = this.endpoints.length;
    this.detector = spec.outlier ? new OutlierDetector(spec.outlier, this.stats, () => this.endpoints.map((e) => e.outlier)) : null;
    if (spec.resolution) {
      const onErr = opts.onDnsError;
      this.dns = new DnsDiscovery(spec.endpoints, {
        mode: spec.resolution, lookup: opts.dnsLookup, refreshMs: opts.dnsRefreshMs, stats: this.stats,
        onHosts: (hosts) => this.replaceHosts(hosts),
        onError: onErr ? (name, err) => onErr(this.spec.name, name, err) : undefined,
      });
    }
  }

  /** Settles once the hosts are known: at once for STATIC, after the first lookups for DNS. */
  get warmed(): Promise<void> { return this.dns ? this.dns.warmed : Promise.resolve(); }

  get name(): string { return this.spec.name; }

  // --- ClusterInfo: what telemetry reads ---
  get service(): string { return this.spec.service; }
  /** Istio's destination_version: the subset, else the version label all endpoints share ('' = none). */
  version(): string { return this.destVersion; }

  /** The spec with endpoints left out: equal = this cluster can take the new endpoints in place. */
  static shape(spec: ClusterSpec): string {
    return JSON.stringify({ ...spec, endpoints: null });
  }

  /**
   * Take a new endpoint list without losing state: endpoints that stay keep their pools and
   * outlier state, removed ones drain, new ones start fresh. Breakers and stats are unchanged.
   */
  setEndpoints(spec: ClusterSpec, specJson: string): void {
    this.spec = spec;
    this.specJson = specJson;
    this.destVersion = destinationVersion(spec);
    // DNS: the spec's endpoints are names; the hosts follow when they resolve.
    if (this.dns) this.dns.setTargets(spec.endpoints);
    else this.replaceHosts(spec.endpoints);
  }

  private replaceHosts(specs: EndpointSpec[]): void {
    // Hosts joining a cluster that already has some are new (slow start); the first set is not.
    const addedAt = this.endpoints.length > 0 ? performance.now() : 0;
    // The identity fields are part of the key: an endpoint that gains a sidecar gets a TLS connector.
    const idKey = (e: EndpointSpec) => `${JSON.stringify(e.labels)}|${e.tlsMode ?? ''}|${e.namespace ?? ''}|${e.serviceAccount ?? ''}`;
    const old = new Map(this.endpoints.map((e) => [`${e.key}|${idKey(e.spec)}`, e]));
    const next = specs.map((e) => {
      const k = `${e.address}:${e.port}|${idKey(e)}`;
      const kept = old.get(k);
      // A kept host takes a changed weight in place (the balancer re-reads weights with the new array).
      if (kept) { old.delete(k); kept.lb.weight = e.weight !== undefined && e.weight > 0 ? e.weight : 1; return kept; }
      return new Endpoint(e, this.br, addedAt, this.spec.protocol, this.transport?.(this.spec, e));
    });
    for (const gone of old.values()) {
      if (gone.outlier.ejected) this.stats['outlier_detection.ejections_active']--;
      gone.pool.drain();
    }
    this.endpoints = next;
    this.rankEndpoints();
    this.stats.membership_total = next.length;
    this.stats.membership_healthy = next.filter((e) => !e.outlier.ejected).length;
  }

  /**
   * Pick an endpoint (balancer.ts): ejected ones are skipped unless in panic, and so are those in
   * `avoid` (the hosts this request already tried) and those whose last connect failed, while
   * others remain. Undefined = no healthy upstream (503 UH).
   */
  pick(avoid?: Endpoint[] | null, r?: PickRequest): Endpoint | undefined {
    const lb = this.spec.lb;
    if (lb === 'PASSTHROUGH') return r === undefined || r.s.req.host === undefined ? undefined : this.original(r.s.req.host);
    if (this.ranks !== null) return this.pickByLocality(this.ranks, avoid ?? null, r);
    const eps = this.endpoints;
    const n = eps.length;
    if (n === 0) return undefined;
    let healthy = n;
    if (this.detector !== null) {
      healthy = 0;
      for (let i = 0; i < n; i++) if (!eps[i].outlier.ejected) healthy++;
      this.stats.membership_healthy = healthy;
    }
    // Panic (Envoy healthy_panic_threshold = Istio minHealthPercent): balance across all hosts.
    const minHealth = this.spec.outlier ? this.spec.outlier.minHealthPercent : 50;
    const panic = healthy < n && 100 * healthy / n < minHealth;
    if (healthy === 0 && !panic) return undefined;
    // Nothing to exclude (the common case): the balancer indexes the hosts directly.
    const filtered = (healthy < n && !panic) || this.br.hostsInBackoff > 0 || (avoid !== undefined && avoid !== null);
    const hash = this.spec.hash !== undefined && r !== undefined ? requestHash(this.spec.hash, r.s, r) : -1;
    return this.balancer.pick(eps, lb, panic, avoid ?? null, filtered, hash);
  }

  /** The balancers' random source (tests give a seeded one). */
  set random(f: () => number) {
    this.rng = f;
    this.balancer.random = f;
    if (this.ranks) for (const b of this.ranks.balancers) b.random = f;
  }

  /** Group the endpoints by locality rank; null when locality is off or all are in one rank. */
  private rankEndpoints(): void {
    this.ranks = null;
    const self = this.locality;
    if (self === null) return;
    const failover = this.spec.locality?.failover ?? [];
    const raw = this.endpoints.map((e) => rankOf(e.spec.labels, self, failover));
    const used = [...new Set(raw)].sort((a, b) => a - b);
    if (used.length < 2) return;
    const s = this.spec;
    const n = used.length;
    const ranks: Ranks = {
      hosts: used.map(() => []), balancers: used.map(() => new Balancer({ warmupMs: s.warmupMs, minRingSize: s.hash?.minimumRingSize, tableSize: s.hash?.tableSize })),
      rankOfHost: new Uint8Array(this.endpoints.length), healthy: new Float64Array(n), total: new Float64Array(n), load: new Float64Array(n),
    };
    this.endpoints.forEach((e, i) => { const k = used.indexOf(raw[i]); ranks.rankOfHost[i] = k; ranks.hosts[k].push(e); ranks.total[k]++; });
    for (const b of ranks.balancers) b.random = this.rng;
    this.ranks = ranks;
  }

  /**
   * Envoy's priority selection: each rank's share from its healthy hosts (locality.ts), one
   * draw, then the rank's balancer; a rank with no usable host passes to the next ones.
   */
  private pickByLocality(ranks: Ranks, avoid: Endpoint[] | null, r?: PickRequest): Endpoint | undefined {
    const eps = this.endpoints;
    const n = ranks.hosts.length;
    ranks.healthy.fill(0);
    let healthy = 0;
    for (let i = 0; i < eps.length; i++) if (!eps[i].outlier.ejected) { healthy++; ranks.healthy[ranks.rankOfHost[i]]++; }
    this.stats.membership_healthy = healthy;
    const minHealth = this.spec.outlier ? this.spec.outlier.minHealthPercent : 50;
    const panic = healthy < eps.length && 100 * healthy / eps.length < minHealth;
    if (healthy === 0 && !panic) return undefined;
    rankLoads(ranks.healthy, ranks.total, ranks.load);
    let x = this.rng() * 100;
    let k = 0;
    while (k < n - 1 && x >= ranks.load[k]) { x -= ranks.load[k]; k++; }
    const hash = this.spec.hash !== undefined && r !== undefined ? requestHash(this.spec.hash, r.s, r) : -1;
    for (let t = 0; t < n; t++) {
      const i = (k + t) % n;
      const ep = ranks.balancers[i].pick(ranks.hosts[i], this.spec.lb, panic, avoid, true, hash);
      if (ep !== undefined && (avoid === null || !avoid.includes(ep) || t === n - 1)) return ep;
    }
    return undefined;
  }

  /** Time to the first response byte of a request to `ep` (PEAK_EWMA's sample; others ignore it). */
  observeRtt(ep: Endpoint, ms: number): void {
    if (this.spec.lb === 'PEAK_EWMA') observeRtt(ep.lb, ms, performance.now());
  }

  /**
   * PASSTHROUGH (Istio; Envoy ORIGINAL_DST): meshlet has no transparent capture, so the original
   * destination is the request's authority when it is an IP literal (port defaulting to the
   * cluster's). Any other authority has none: 503 UH. Hosts are kept by address, at most
   * PASSTHROUGH_MAX_HOSTS (an idle one is dropped to make room).
   */
  private original(authority: string): Endpoint | undefined {
    // Keyed by the authority as written: a repeat destination costs one map lookup, no parsing.
    const map = (this.passthrough ??= new Map());
    let ep = map.get(authority);
    if (ep === undefined) {
      const d = originalDestination(authority, this.spec.port);
      if (d === null) return undefined;
      if (map.size >= PASSTHROUGH_MAX_HOSTS) {
        for (const [k, e] of map) if (e.pool.activeRequests === 0) { e.pool.drain(); map.delete(k); break; }
        if (map.size >= PASSTHROUGH_MAX_HOSTS) return undefined;
      }
      ep = new Endpoint({ address: d[0], port: d[1], labels: {} }, this.br, 0, this.spec.protocol);
      map.set(authority, ep);
    }
    return ep;
  }

  drain(): void {
    this.dns?.stop();
    this.detector?.stop();
    for (const e of this.endpoints) e.pool.drain();
    if (this.passthrough) for (const e of this.passthrough.values()) e.pool.drain();
  }
}
