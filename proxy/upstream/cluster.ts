// The concrete level: one cluster per destination (service x port x subset), owning its
// endpoints, balancer, breakers, outlier detector and stats. Knows nothing of routes.
import type { ClusterSpec, EndpointSpec } from '../config/schema.ts';
import { newClusterStats, type ClusterStats } from '../telemetry/stats.ts';
import { EndpointPool, type Breakers, type Connector } from './pool.ts';
import { OutlierDetector, newHostOutlierState, type HostOutlierState } from './outlier.ts';
import type { ClusterInfo } from '../core/stream-info.ts';
import { DnsDiscovery, type DnsLookup } from './dns.ts';
import { Balancer } from './balancer.ts';

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
}

export class Endpoint {
  readonly spec: EndpointSpec;
  readonly pool: EndpointPool;
  readonly outlier: HostOutlierState = newHostOutlierState();
  constructor(spec: EndpointSpec, br: Breakers, connector?: Connector) {
    this.spec = spec;
    this.pool = new EndpointPool(spec.address, spec.port, br);
    this.pool.connector = connector;
  }
  get key(): string { return `${this.spec.address}:${this.spec.port}`; }
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
  private readonly balancer = new Balancer();
  private readonly transport: ClusterOptions['transport'];

  constructor(spec: ClusterSpec, specJson = JSON.stringify(spec), opts: ClusterOptions = {}) {
    this.spec = spec;
    this.specJson = specJson;
    this.budget = opts.retryBudget ? opts.retryBudget() : null;
    this.br = { limits: spec.connectionPool, stats: this.stats, cxActive: 0, rqActive: 0, pendingActive: 0, retriesActive: 0, hostsInBackoff: 0 };
    // A DNS cluster starts with no hosts: they arrive with the first answer (`warmed`).
    this.transport = opts.transport;
    this.endpoints = spec.resolution ? [] : spec.endpoints.map((e) => new Endpoint(e, this.br, this.transport?.(spec, e)));
    this.destVersion = destinationVersion(spec);
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
    // The identity fields are part of the key: an endpoint that gains a sidecar gets a TLS connector.
    const idKey = (e: EndpointSpec) => `${JSON.stringify(e.labels)}|${e.tlsMode ?? ''}|${e.namespace ?? ''}|${e.serviceAccount ?? ''}`;
    const old = new Map(this.endpoints.map((e) => [`${e.key}|${idKey(e.spec)}`, e]));
    const next = specs.map((e) => {
      const k = `${e.address}:${e.port}|${idKey(e)}`;
      const kept = old.get(k);
      if (kept) { old.delete(k); return kept; }
      return new Endpoint(e, this.br, this.transport?.(this.spec, e));
    });
    for (const gone of old.values()) {
      if (gone.outlier.ejected) this.stats['outlier_detection.ejections_active']--;
      gone.pool.drain();
    }
    this.endpoints = next;
    this.stats.membership_total = next.length;
    this.stats.membership_healthy = next.filter((e) => !e.outlier.ejected).length;
  }

  /**
   * Pick an endpoint (balancer.ts): ejected ones are skipped unless in panic, and so are those in
   * `avoid` (the hosts this request already tried) and those whose last connect failed, while
   * others remain. Undefined = no healthy upstream (503 UH).
   */
  pick(avoid?: Endpoint[] | null): Endpoint | undefined {
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
    return this.balancer.pick(eps, this.spec.lb, panic, avoid ?? null, filtered);
  }

  drain(): void {
    this.dns?.stop();
    this.detector?.stop();
    for (const e of this.endpoints) e.pool.drain();
  }
}
