// A snapshot made executable: clusters (kept across snapshots when their spec is unchanged, so
// pools and outlier state survive unrelated changes) and the compiled route table. Requests hold
// the Runtime they started with, so an apply never changes an in-flight request's config.
import type { Snapshot } from './config/schema.ts';
import { checkRegexes } from './config/compile.ts';
import { Cluster, type ClusterOptions } from './upstream/cluster.ts';
import { RouteTable } from './filters/route.ts';
import { Naming, type NamingOptions } from './filters/naming.ts';

export class Runtime {
  readonly snapshot: Snapshot;
  readonly clusters: Map<string, Cluster>;
  readonly routes: RouteTable;
  readonly naming: Naming;
  readonly appliedAt = new Date();

  private constructor(snapshot: Snapshot, clusters: Map<string, Cluster>, routes: RouteTable, naming: Naming) {
    this.snapshot = snapshot;
    this.clusters = clusters;
    this.routes = routes;
    this.naming = naming;
  }

  /**
   * Validate and build a runtime for `snapshot`, reusing clusters of `prev` whose spec is equal.
   * Throws (and builds nothing that needs cleanup) if the snapshot cannot be applied.
   */
  static build(snapshot: Snapshot, prev: Runtime | null, opts: ClusterOptions & NamingOptions): Runtime {
    checkRegexes(snapshot);
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
      routes = new RouteTable(snapshot, clusters);
      naming = new Naming(snapshot, routes, clusters, opts);
    } catch (e) {
      for (const [name, c] of clusters) if (prev?.clusters.get(name) !== c) c.drain();
      throw e;
    }
    for (const apply of endpointUpdates) apply();
    return new Runtime(snapshot, clusters, routes, naming);
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
    for (const c of this.naming.ownedClusters()) c.drain();
  }
}
