// A snapshot made executable: clusters (kept across snapshots when their spec is unchanged, so
// pools and outlier state survive unrelated changes) and the compiled route table. Requests hold
// the Runtime they started with, so an apply never changes an in-flight request's config.
import type { ClusterSpec, Snapshot } from './config/schema.ts';
import { DEFAULT_CONNECTION_POOL, clusterName } from './config/schema.ts';
import { checkRegexes } from './config/compile.ts';
import { Cluster, type ClusterOptions } from './upstream/cluster.ts';
import { RouteTable, directRoute, type CompiledRoute } from './filters/route/table.ts';
import { Naming, type NamingOptions } from './filters/dtab/naming.ts';
import { authzProblems } from './filters/authz/policy.ts';

/** Distinct `/$/inet/<host>/<port>` destinations a runtime creates clusters for. */
const MAX_ADDRESS_CLUSTERS = 256;

export class Runtime {
  readonly snapshot: Snapshot;
  readonly clusters: Map<string, Cluster>;
  readonly routes: RouteTable;
  readonly naming: Naming;
  readonly appliedAt = new Date();
  private readonly clusterOpts: ClusterOptions;
  /** Routes (and their clusters) for dtab address targets, made on first use. */
  private addressRoutes = new Map<string, CompiledRoute>();

  private constructor(snapshot: Snapshot, clusters: Map<string, Cluster>, routes: RouteTable, naming: Naming, opts: ClusterOptions) {
    this.snapshot = snapshot;
    this.clusters = clusters;
    this.routes = routes;
    this.naming = naming;
    this.clusterOpts = opts;
  }

  /**
   * `/$/inet/<host>/<port>` (a dtab address; trusted callers only, see the docs on trust): a route
   * to a cluster of that one address, the snapshot's own cluster when one has its name. Bounded in
   * number; a string is the error for the client.
   */
  addressRoute(host: string, port: number): CompiledRoute | string {
    const key = `${host}:${port}`;
    let r = this.addressRoutes.get(key);
    if (!r) {
      if (port < 1 || port > 65535) return `Unable to route request! invalid port ${port}`;
      if (this.addressRoutes.size >= MAX_ADDRESS_CLUSTERS) return 'Unable to route request! too many distinct dtab addresses';
      const spec: ClusterSpec = {
        name: clusterName(port, '', host), service: host, subset: '', port, lb: 'ROUND_ROBIN',
        endpoints: [{ address: host === 'localhost' ? '127.0.0.1' : host, port, labels: {} }], connectionPool: { ...DEFAULT_CONNECTION_POOL },
      };
      const cluster = this.clusters.get(spec.name) ?? new Cluster(spec, undefined, this.clusterOpts);
      r = directRoute(`dtab:${key}`, host, cluster);
      this.addressRoutes.set(key, r);
    }
    return r;
  }

  /**
   * Validate and build a runtime for `snapshot`, reusing clusters of `prev` whose spec is equal.
   * Throws (and builds nothing that needs cleanup) if the snapshot cannot be applied.
   */
  static build(snapshot: Snapshot, prev: Runtime | null, opts: ClusterOptions & NamingOptions): Runtime {
    checkRegexes(snapshot);
    // A policy this proxy cannot enforce as written refuses the snapshot whole (the old one stays).
    const authzErrors = (snapshot.security?.authorizationPolicies ?? []).flatMap((e) => authzProblems(e).map((p) => `AuthorizationPolicy ${e.namespace}/${e.name}: ${p}`));
    if (authzErrors.length > 0) throw new Error(authzErrors.join('; '));
    const specs = new Map<string, { spec: Snapshot['clusters'][number]; json: string }>();
    for (const c of snapshot.clusters) specs.set(c.name, { spec: c, json: JSON.stringify(c) });
    // Compile routes against placeholder-free clusters: create new clusters lazily after checks.
    const clusters = new Map<string, Cluster>();
    // A cluster whose spec differs only in its endpoints is kept and updated in place once the
    // snapshot is known to be good (registrations come and go without resetting breakers,
    // outlier state or the pools of endpoints that stay).
    const endpointUpdates: Array<() => void> = [];
    for (const [name, { spec, json }] of specs) {
      const old = prev?.clusters.get(name);
      if (old && old.specJson === json) clusters.set(name, old);
      else if (old && Cluster.shape(old.spec) === Cluster.shape(spec)) {
        clusters.set(name, old);
        endpointUpdates.push(() => old.setEndpoints(spec, json));
      } else clusters.set(name, new Cluster(spec, json, opts));
    }
    let routes: RouteTable;
    let naming: Naming;
    try {
      routes = new RouteTable(snapshot, clusters, opts.namespace);
      naming = new Naming(snapshot, routes, clusters, opts);
    } catch (e) {
      for (const [name, c] of clusters) if (prev?.clusters.get(name) !== c) c.drain();
      throw e;
    }
    for (const apply of endpointUpdates) apply();
    return new Runtime(snapshot, clusters, routes, naming, opts);
  }

  /**
   * Settles when every cluster knows its hosts (DNS clusters: first lookups answered or failed),
   * or after `timeoutMs`: what Envoy calls cluster warming, awaited before serving at startup.
   */
  warm(timeoutMs = 6_000): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const all = Promise.all([...this.clusters.values()].map((c) => c.warmed)).then(() => {});
    return Promise.race([all, new Promise<void>((r) => { t = setTimeout(r, timeoutMs); })]).finally(() => clearTimeout(t));
  }

  /** Retire what `next` no longer uses: pools drain after their in-flight requests. */
  retire(next: Runtime | null): void {
    for (const [name, c] of this.clusters) if (next?.clusters.get(name) !== c) c.drain();
    // Clusters made for dtab addresses (not the snapshot's own) go with this runtime.
    for (const r of this.addressRoutes.values()) {
      const c = r.destinations[0].cluster;
      if (this.clusters.get(c.name) !== c) c.drain();
    }
  }
}
