// Naming, compiled per snapshot: a request's logical name (/svc/<Host>) bound through the base
// dtab, the propagated l5d-ctx-dtab and the user's l5d-dtab (Linkerd 1 semantics,
// docs/spec/dtab.md §3), to a mesh service (then its VirtualService routes), a subset, or an
// address. It returns a target and creates nothing: clusters for addresses are the runtime's.
import type { Snapshot } from '../../config/schema.ts';
import { clusterName } from '../../config/schema.ts';
import {
  BindError, DEFAULT_BASE_DTAB, Dtab, Interpreter, MESHLET_NAMER_PREFIX, makeIdentifier, meshletNamer, parsePath, pickBranch, showPath,
  type Bound, type Identifier, type IdentifierConfig, type Path,
} from '../../dtab/index.ts';
import type { Cluster } from '../../upstream/cluster.ts';
import { directRoute, type CompiledRoute, type CompiledVHost, type RouteTable } from '../route/table.ts';

export type Target =
  | { kind: 'vhost'; vhost: CompiledVHost; uri?: string }
  | { kind: 'route'; route: CompiledRoute; uri?: string }
  | { kind: 'address'; host: string; port: number; uri?: string }
  | { kind: 'error'; status: number; message: string };

/** How a listener names requests (Linkerd's identifiers); default: the Host token under /svc. */
export interface NamingOptions {
  /** The proxy's Kubernetes namespace: short host names resolve in it (RouteTable.forHost). */
  namespace?: string;
  identifier?: IdentifierConfig;
  dstPrefix?: string;
}

/** What an identifier may read from a request. */
export interface NamedRequest { method: string; uri: string; httpVersion: string; header(lower: string): string | undefined }

export class Naming {
  readonly interpreter: Interpreter;
  /** The base dtab is the default: a request without dtab headers needs no binding at all. */
  readonly trivial: boolean;
  private routes: RouteTable;
  private subsetRoutes = new Map<string, CompiledRoute>();
  private services: Map<string, Snapshot['services'][number]>;
  private clusters: Map<string, Cluster>;
  private identifier: Identifier | null;

  constructor(snapshot: Snapshot, routes: RouteTable, clusters: Map<string, Cluster>, opts: NamingOptions) {
    this.routes = routes;
    this.clusters = clusters;
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
    if (b.addr) return { kind: 'address', host: b.addr.host, port: b.addr.port };
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
      r = directRoute(`dtab:${service}/${subset}`, service, cluster);
      this.subsetRoutes.set(key, r);
    }
    return { kind: 'route', route: r };
  }
}
