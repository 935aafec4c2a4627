// The naming stage: a request's logical name (/svc/<Host>) bound through the base dtab, the
// propagated l5d-ctx-dtab and the user's l5d-dtab (Linkerd 1 semantics, docs/spec/dtab.md §3), to a
// mesh service (then its VirtualService routes), a subset, or an address. Compiled per snapshot.
import type { Snapshot, ClusterSpec } from '../config/schema.ts';
import { DEFAULT_CONNECTION_POOL, clusterName } from '../config/schema.ts';
import {
  BindError, DEFAULT_BASE_DTAB, Dtab, Interpreter, MESHLET_NAMER_PREFIX, makeIdentifier, meshletNamer, parsePath, pickBranch, showPath,
  type Bound, type Identifier, type IdentifierConfig, type Path,
} from '../dtab/index.ts';
import { ISTIO_DEFAULT_RETRY } from '../config/compile.ts';
import { Cluster, type ClusterOptions } from '../upstream/cluster.ts';
import type { CompiledRoute, CompiledVHost, RouteTable } from './route.ts';

export type Target =
  | { kind: 'vhost'; vhost: CompiledVHost; uri?: string }
  | { kind: 'route'; route: CompiledRoute; uri?: string }
  | { kind: 'error'; status: number; message: string };

/** How a listener names requests (Linkerd's identifiers); default: the Host token under /svc. */
export interface NamingOptions {
  identifier?: IdentifierConfig;
  dstPrefix?: string;
}

/** What an identifier may read from a request. */
export interface NamedRequest { method: string; uri: string; httpVersion: string; header(lower: string): string | undefined }

const MAX_ADDRESS_CLUSTERS = 256;

export class Naming {
  readonly interpreter: Interpreter;
  /** The base dtab is the default: a request without dtab headers needs no binding at all. */
  readonly trivial: boolean;
  private routes: RouteTable;
  private subsetRoutes = new Map<string, CompiledRoute>();
  private addressRoutes = new Map<string, CompiledRoute>();
  private services: Map<string, Snapshot['services'][number]>;
  private clusters: Map<string, Cluster>;
  private clusterOpts: ClusterOptions;
  private identifier: Identifier | null;

  constructor(snapshot: Snapshot, routes: RouteTable, clusters: Map<string, Cluster>, opts: ClusterOptions & NamingOptions) {
    this.routes = routes;
    this.clusters = clusters;
    this.clusterOpts = opts;
    this.services = new Map(snapshot.services.map((s) => [s.host, s]));
    const base = Dtab.parse(snapshot.dtab);
    const prefix = opts.dstPrefix ?? '/svc';
    const defaultNaming = (!opts.identifier || (opts.identifier.kind === 'io.l5d.header.token' && (opts.identifier.header ?? 'Host').toLowerCase() === 'host')) && prefix === '/svc';
    this.identifier = defaultNaming ? null : makeIdentifier(opts.identifier ?? { kind: 'io.l5d.header.token' }, parsePath(prefix));
    this.trivial = defaultNaming && base.show() === Dtab.parse(DEFAULT_BASE_DTAB).show();
    const namer = meshletNamer((host) => {
      const vh = routes.forHost(host);
      if (!vh) return undefined;
      return { host, subsets: this.services.get(vh.service)?.subsets ?? [] };
    });
    this.interpreter = new Interpreter(base, [{ prefix: MESHLET_NAMER_PREFIX, namer }]);
  }

  /** Name the request with the listener's identifier, then bind and route it. */
  resolveRequest(req: NamedRequest, local: Dtab): Target {
    if (this.identifier === null) return this.resolve(req.header('host') ?? '', local);
    const r = this.identifier({ method: req.method, uri: req.uri, version: `HTTP/${req.httpVersion}`, header: (n) => req.header(n) });
    if (!r.ok) return { kind: 'error', status: 400, message: `Unknown destination: ${req.method} ${req.uri} / ${r.reason}` };
    const t = this.bindName(r.name, local);
    if (r.uri !== undefined && t.kind !== 'error') t.uri = r.uri;
    return t;
  }

  /** Bind `/svc/<host>` under the local dtab and turn the chosen branch into a routing target. */
  resolve(host: string, local: Dtab): Target {
    // Linkerd's default identifier: /svc/<Host>, one element, case and port as received.
    return this.bindName(['svc', host], local);
  }

  private bindName(name: Path, local: Dtab): Target {
    let tree;
    try {
      tree = this.interpreter.bind(name, local);
    } catch (e) {
      if (e instanceof BindError) return { kind: 'error', status: 502, message: e.message };
      throw e;
    }
    const b = pickBranch(tree);
    if (typeof b === 'string') {
      return {
        kind: 'error', status: 502,
        message: `Unable to route request! service: ${showPath(name)} (bound to ${b}) base dtab: ${this.interpreter.base.show()} override dtab: ${local.show()}`,
      };
    }
    return this.target(b, name);
  }

  private target(b: Bound, name: Path): Target {
    const id = b.id;
    if (id[0] === MESHLET_NAMER_PREFIX[0] && id[1] === MESHLET_NAMER_PREFIX[1]) {
      const vh = this.routes.forHost(id[2]);
      if (!vh) return { kind: 'error', status: 502, message: `Unable to route request! ${showPath(id)}: no such mesh service` };
      if (id.length === 3) return { kind: 'vhost', vhost: vh };
      return this.subsetRoute(vh.service, id[3]);
    }
    if (b.addr) return this.addressRoute(b.addr.host, b.addr.port);
    return { kind: 'error', status: 502, message: `Unable to route request! service: ${showPath(name)} bound to ${showPath(id)}, which has no address` };
  }

  /** `/#/meshlet/<host>/<subset>`: that subset's cluster directly, weights bypassed. */
  private subsetRoute(service: string, subset: string): Target {
    const key = `${service}|${subset}`;
    let r = this.subsetRoutes.get(key);
    if (!r) {
      const svc = this.services.get(service);
      const cluster = svc && this.clusters.get(clusterName(svc.ports[0].number, subset, service));
      if (!cluster) return { kind: 'error', status: 502, message: `Unable to route request! no subset ${subset} of ${service}` };
      r = direct(`dtab:${service}/${subset}`, service, cluster);
      this.subsetRoutes.set(key, r);
    }
    return { kind: 'route', route: r };
  }

  /** `/$/inet/<host>/<port>`: a direct address (trusted callers only; see the docs on trust). */
  private addressRoute(host: string, port: number): Target {
    const key = `${host}:${port}`;
    let r = this.addressRoutes.get(key);
    if (!r) {
      if (port < 1 || port > 65535) return { kind: 'error', status: 502, message: `Unable to route request! invalid port ${port}` };
      if (this.addressRoutes.size >= MAX_ADDRESS_CLUSTERS) return { kind: 'error', status: 502, message: 'Unable to route request! too many distinct dtab addresses' };
      const spec: ClusterSpec = {
        name: clusterName(port, '', host), service: host, subset: '', port, lb: 'ROUND_ROBIN',
        endpoints: [{ address: host === 'localhost' ? '127.0.0.1' : host, port, labels: {} }], connectionPool: { ...DEFAULT_CONNECTION_POOL },
      };
      const cluster = this.clusters.get(spec.name) ?? new Cluster(spec, undefined, this.clusterOpts);
      r = direct(`dtab:${key}`, host, cluster);
      this.addressRoutes.set(key, r);
    }
    return { kind: 'route', route: r };
  }

  /** Clusters created for dtab addresses, so the runtime can drain them when it retires. */
  ownedClusters(): Cluster[] {
    const out: Cluster[] = [];
    for (const r of this.addressRoutes.values()) {
      const c = r.destinations[0].cluster;
      if (this.clusters.get(c.name) !== c) out.push(c);
    }
    return out;
  }
}

function direct(name: string, service: string, cluster: Cluster): CompiledRoute {
  return {
    name, vhost: name, service, matches: [],
    destinations: [{ cluster, host: service, subset: cluster.spec.subset, weight: 100 }], totalWeight: 100,
    timeoutMs: 0, retries: ISTIO_DEFAULT_RETRY, fault: null, mirrors: [],
  };
}
