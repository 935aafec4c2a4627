// A faithful fake of the Kubernetes API server, for tests only: no cluster runs here, and the
// client under test is the real @kubernetes/client-node. It follows the wire shapes of
// Kubernetes 1.30-1.33 (the API conventions doc, apimachinery's metav1.Status / WatchEvent, and
// the apiserver's watch behaviour), written down in docs/kubernetes.md:
//
// - lists: {kind: <Kind>List, apiVersion, metadata: {resourceVersion}, items}; built-in items
//   carry no kind/apiVersion (as the real server encodes typed lists), custom resources do;
// - one global, increasing resourceVersion (etcd's revision) stamped on every write;
// - `?watch=true|1&resourceVersion=N`: a chunked stream of `{"type","object"}` lines: the
//   changes after N (replayed from history), then live; resourceVersion "" or "0" starts with
//   ADDED for every object; BOOKMARK events (only the resourceVersion) when
//   allowWatchBookmarks=true; a resourceVersion older than the compacted history gets an ERROR
//   event with a Status (code 410, reason Expired, "too old resource version") and the stream
//   ends, which makes a client relist;
// - create (POST) -> 409 AlreadyExists; update (PUT) with a stale metadata.resourceVersion ->
//   409 Conflict; get of a missing object -> 404 NotFound; all as Status objects;
// - TokenReview create (authentication.k8s.io/v1) against tokens the test registers, with
//   audiences; API group discovery (/apis/<group>); bearer-token authentication (401 otherwise).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';

export type KObj = { apiVersion?: string; kind?: string; metadata: Record<string, any>; [k: string]: any };

interface KindInfo { group: string; versions: string[]; plural: string; kind: string; namespaced: boolean; builtin: boolean }

const KINDS: KindInfo[] = [
  { group: '', versions: ['v1'], plural: 'services', kind: 'Service', namespaced: true, builtin: true },
  { group: '', versions: ['v1'], plural: 'pods', kind: 'Pod', namespaced: true, builtin: true },
  { group: '', versions: ['v1'], plural: 'namespaces', kind: 'Namespace', namespaced: false, builtin: true },
  { group: '', versions: ['v1'], plural: 'events', kind: 'Event', namespaced: true, builtin: true },
  { group: 'discovery.k8s.io', versions: ['v1'], plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true, builtin: true },
  { group: 'coordination.k8s.io', versions: ['v1'], plural: 'leases', kind: 'Lease', namespaced: true, builtin: true },
  // Istio's CRDs serve v1 and v1beta1 from one storage (no conversion: the schemas are equal).
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1'], plural: 'virtualservices', kind: 'VirtualService', namespaced: true, builtin: false },
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1'], plural: 'destinationrules', kind: 'DestinationRule', namespaced: true, builtin: false },
  { group: 'networking.istio.io', versions: ['v1', 'v1beta1'], plural: 'serviceentries', kind: 'ServiceEntry', namespaced: true, builtin: false },
  { group: 'gateway.networking.k8s.io', versions: ['v1'], plural: 'httproutes', kind: 'HTTPRoute', namespaced: true, builtin: false },
  { group: 'meshlet.io', versions: ['v1alpha1'], plural: 'dtabs', kind: 'Dtab', namespaced: true, builtin: false },
  { group: 'security.istio.io', versions: ['v1', 'v1beta1'], plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true, builtin: false },
  { group: 'security.istio.io', versions: ['v1', 'v1beta1'], plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true, builtin: false },
  { group: 'security.istio.io', versions: ['v1', 'v1beta1'], plural: 'requestauthentications', kind: 'RequestAuthentication', namespaced: true, builtin: false },
  { group: 'meshlet.io', versions: ['v1alpha1'], plural: 'canaries', kind: 'Canary', namespaced: true, builtin: false },
  { group: 'meshlet.io', versions: ['v1alpha1'], plural: 'metrictemplates', kind: 'MetricTemplate', namespaced: true, builtin: false },
  { group: 'flagger.app', versions: ['v1beta1'], plural: 'canaries', kind: 'Canary', namespaced: true, builtin: false },
  { group: 'flagger.app', versions: ['v1beta1'], plural: 'metrictemplates', kind: 'MetricTemplate', namespaced: true, builtin: false },
];

const gv = (k: KindInfo, v: string) => (k.group ? `${k.group}/${v}` : v);

interface Change { rv: number; type: 'ADDED' | 'MODIFIED' | 'DELETED'; kind: KindInfo; obj: KObj }

interface Watcher { kind: KindInfo; version: string; ns: string | null; res: ServerResponse; bookmarks: boolean }

export interface TokenInfo { namespace: string; serviceAccount: string; audiences: string[]; podName?: string }

function status(res: ServerResponse, code: number, reason: string, message: string, details?: Record<string, unknown>): void {
  const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code });
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function send(res: ServerResponse, code: number, obj: unknown): void {
  const body = JSON.stringify(obj);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function body(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

export class FakeApiServer {
  readonly token: string;
  url = '';
  private server: Server;
  private rv = 100;
  private compactedRv = 0;
  private readonly store = new Map<string, Map<string, KObj>>();   // plural.group -> ns/name -> obj
  private history: Change[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly tokens = new Map<string, TokenInfo>();
  private bookmarkTimer: NodeJS.Timeout | null = null;
  /** Every request, as "METHOD path?query", for tests that check what the client did (e.g. relist). */
  readonly requests: string[] = [];
  /** Resources (plural.group, e.g. "httproutes.gateway.networking.k8s.io") this server does not serve: a CRD not installed (404). */
  readonly unserved = new Set<string>();
  /** Answer this many of the next requests with 500 (an apiserver having trouble), then recover. */
  failNext = 0;

  private constructor(token: string) {
    this.token = token;
    this.server = createServer((req, res) => { this.handle(req, res).catch((e) => status(res, 500, 'InternalError', (e as Error).message)); });
  }

  static async start(opts: { token?: string; bookmarkMs?: number } = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(opts.token ?? `fake-admin-${randomUUID()}`);
    await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', () => r()));
    s.url = `http://127.0.0.1:${(s.server.address() as { port: number }).port}`;
    s.bookmarkTimer = setInterval(() => s.bookmark(), opts.bookmarkMs ?? 1000);
    s.bookmarkTimer.unref();
    return s;
  }

  /**
   * A kubeconfig (YAML) for this server, as `kubectl config view --raw` would print it. The fake
   * speaks plain HTTP on loopback; client-node refuses http:// unless the cluster entry says
   * insecure-skip-tls-verify (a real API server is HTTPS with the cluster CA).
   */
  kubeconfig(): string {
    return [
      'apiVersion: v1', 'kind: Config', 'current-context: fake',
      'clusters:', `- name: fake`, `  cluster:`, `    server: ${this.url}`, '    insecure-skip-tls-verify: true',
      'users:', '- name: fake-admin', '  user:', `    token: ${this.token}`,
      'contexts:', '- name: fake', '  context:', '    cluster: fake', '    user: fake-admin',
      '',
    ].join('\n');
  }

  currentResourceVersion(): string { return String(this.rv); }

  /** Register a service-account token a TokenReview will accept. */
  addToken(token: string, info: TokenInfo): void { this.tokens.set(token, info); }

  private kindOf(apiVersion: string, kind: string): KindInfo {
    const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
    const k = KINDS.find((x) => x.group === group && x.kind === kind && x.versions.includes(version));
    if (!k) throw new Error(`fake apiserver: unknown ${apiVersion} ${kind}`);
    return k;
  }

  private bucket(k: KindInfo): Map<string, KObj> {
    const key = `${k.plural}.${k.group}`;
    let b = this.store.get(key);
    if (!b) { b = new Map(); this.store.set(key, b); }
    return b;
  }

  /** Create or replace an object (as `kubectl apply` would end up); returns the stored copy. */
  apply(obj: KObj): KObj {
    const k = this.kindOf(obj.apiVersion!, obj.kind!);
    return this.write(k, structuredClone(obj), null);
  }

  /** Delete an object; returns whether it existed. */
  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): boolean {
    const k = this.kindOf(apiVersion, kind);
    const b = this.bucket(k);
    const key = `${k.namespaced ? namespace ?? 'default' : ''}/${name}`;
    const prev = b.get(key);
    if (!prev) return false;
    b.delete(key);
    this.rv++;
    const gone = { ...structuredClone(prev), metadata: { ...prev.metadata, resourceVersion: String(this.rv) } };
    this.emit({ rv: this.rv, type: 'DELETED', kind: k, obj: gone });
    return true;
  }

  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): KObj | undefined {
    const k = this.kindOf(apiVersion, kind);
    const o = this.bucket(k).get(`${k.namespaced ? namespace ?? 'default' : ''}/${name}`);
    return o ? structuredClone(o) : undefined;
  }

  list(apiVersion: string, kind: string): KObj[] {
    return [...this.bucket(this.kindOf(apiVersion, kind)).values()].map((o) => structuredClone(o));
  }

  private write(k: KindInfo, obj: KObj, expectRv: string | null): KObj {
    const md = obj.metadata ?? (obj.metadata = {});
    if (k.namespaced) md.namespace ??= 'default'; else delete md.namespace;
    const b = this.bucket(k);
    const key = `${md.namespace ?? ''}/${md.name}`;
    const prev = b.get(key);
    if (expectRv !== null && prev && prev.metadata.resourceVersion !== expectRv) throw Object.assign(new Error('conflict'), { conflict: true });
    this.rv++;
    md.resourceVersion = String(this.rv);
    md.uid = prev?.metadata.uid ?? md.uid ?? randomUUID();
    md.creationTimestamp = prev?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    md.generation = (prev?.metadata.generation ?? 0) + (prev && JSON.stringify(prev.spec) === JSON.stringify(obj.spec) ? 0 : 1);
    delete obj.apiVersion; delete obj.kind;
    const stored = { apiVersion: gv(k, k.versions[0]), kind: k.kind, ...obj };
    b.set(key, stored);
    this.emit({ rv: this.rv, type: prev ? 'MODIFIED' : 'ADDED', kind: k, obj: stored });
    return structuredClone(stored);
  }

  private emit(c: Change): void {
    this.history.push(c);
    if (this.history.length > 10_000) this.history.splice(0, 5_000);
    for (const w of this.watchers) {
      if (w.kind !== c.kind || (w.ns !== null && c.obj.metadata.namespace !== w.ns)) continue;
      this.sendEvent(w, c.type, c.obj);
    }
  }

  private sendEvent(w: Watcher, type: string, obj: KObj): void {
    w.res.write(`${JSON.stringify({ type, object: { ...obj, apiVersion: gv(w.kind, w.version) } })}\n`);
  }

  /** Send a BOOKMARK to every watch that asked for them (also on a timer). */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: w.kind.kind, apiVersion: gv(w.kind, w.version), metadata: { resourceVersion: String(this.rv) } } })}\n`);
    }
  }

  /**
   * Compact the history (etcd compaction / the watch cache's window moving on): every open
   * watch gets the 410 ERROR event and ends; a client resuming from any earlier resourceVersion
   * gets it too, and must relist.
   */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
    for (const w of [...this.watchers]) this.expire(w, 0);
  }

  private expire(w: Watcher, asked: number): void {
    const st = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${asked} (${this.compactedRv})`, reason: 'Expired', code: 410 };
    w.res.end(`${JSON.stringify({ type: 'ERROR', object: st })}\n`);
    this.watchers.delete(w);
  }

  /** Close every open watch without an error (the apiserver's timeoutSeconds ending a watch). */
  closeWatches(): void {
    for (const w of [...this.watchers]) { w.res.end(); this.watchers.delete(w); }
  }

  openWatches(): number { return this.watchers.size; }

  async close(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.closeWatches();
    await new Promise<void>((r) => { this.server.close(() => r()); this.server.closeAllConnections(); });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.headers.authorization !== `Bearer ${this.token}`) { req.resume(); return status(res, 401, 'Unauthorized', 'Unauthorized'); }
    if (this.failNext > 0) { this.failNext--; req.resume(); return status(res, 500, 'InternalError', 'Internal error occurred: etcdserver: request timed out'); }
    const parts = url.pathname.split('/').filter(Boolean);
    // Discovery of an API group: /apis/<group>
    if (parts[0] === 'apis' && parts.length === 2 && req.method === 'GET') {
      const versions = [...new Set(KINDS.filter((k) => k.group === parts[1]).flatMap((k) => k.versions))];
      if (versions.length === 0) return status(res, 404, 'NotFound', 'the server could not find the requested resource');
      const vs = versions.map((v) => ({ groupVersion: `${parts[1]}/${v}`, version: v }));
      return send(res, 200, { kind: 'APIGroup', apiVersion: 'v1', name: parts[1], versions: vs, preferredVersion: vs[0] });
    }
    let group: string; let version: string; let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') { group = ''; version = 'v1'; rest = parts.slice(2); }
    else if (parts[0] === 'apis' && parts.length >= 4) { group = parts[1]; version = parts[2]; rest = parts.slice(3); }
    else { req.resume(); return status(res, 404, 'NotFound', 'the server could not find the requested resource'); }
    let ns: string | null = null;
    if (rest[0] === 'namespaces' && rest.length >= 3) { ns = rest[1]; rest = rest.slice(2); }
    const [plural, name, sub] = rest;
    if (group === 'authentication.k8s.io' && plural === 'tokenreviews' && req.method === 'POST') return this.tokenReview(await body(req), version, res);
    const k = KINDS.find((x) => x.group === group && x.plural === plural && x.versions.includes(version) && !this.unserved.has(`${x.plural}.${x.group}`));
    if (!k || sub !== undefined) { req.resume(); return status(res, 404, 'NotFound', 'the server could not find the requested resource'); }
    const b = this.bucket(k);
    const key = (n: string) => `${k.namespaced ? ns ?? '' : ''}/${n}`;
    const out = (o: KObj) => ({ ...o, apiVersion: gv(k, version) });
    const fq = `${k.plural}${k.group ? `.${k.group}` : ''}`;
    if (req.method === 'GET' && name === undefined) {
      const w = url.searchParams.get('watch');
      if (w === 'true' || w === '1') return this.watch(k, version, ns, url, res);
      const items = [...b.values()].filter((o) => ns === null || o.metadata.namespace === ns)
        .map((o) => { if (k.builtin) { const { apiVersion: _a, kind: _k, ...rest2 } = o; return rest2; } return out(o); });
      return send(res, 200, { kind: `${k.kind}List`, apiVersion: gv(k, version), metadata: { resourceVersion: String(this.rv) }, items });
    }
    if (req.method === 'GET') {
      const o = b.get(key(name));
      return o ? send(res, 200, out(o)) : status(res, 404, 'NotFound', `${fq} "${name}" not found`, { name, group: k.group, kind: k.plural });
    }
    if (req.method === 'POST' && name === undefined) {
      const obj = await body(req) as KObj;
      if (ns !== null) obj.metadata = { ...obj.metadata, namespace: ns };
      if (!obj.metadata?.name) return status(res, 422, 'Invalid', `${k.kind} is invalid: metadata.name: Required value`);
      if (b.has(key(obj.metadata.name))) return status(res, 409, 'AlreadyExists', `${fq} "${obj.metadata.name}" already exists`, { name: obj.metadata.name, group: k.group, kind: k.plural });
      delete obj.metadata.resourceVersion;
      return send(res, 201, out(this.write(k, obj, null)));
    }
    if (req.method === 'PUT' && name !== undefined) {
      const obj = await body(req) as KObj;
      if (!b.has(key(name))) return status(res, 404, 'NotFound', `${fq} "${name}" not found`, { name, group: k.group, kind: k.plural });
      obj.metadata = { ...obj.metadata, name, ...(ns !== null ? { namespace: ns } : {}) };
      try {
        return send(res, 200, out(this.write(k, obj, obj.metadata.resourceVersion ?? null)));
      } catch (e) {
        if ((e as { conflict?: boolean }).conflict) {
          return status(res, 409, 'Conflict', `Operation cannot be fulfilled on ${fq} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, group: k.group, kind: k.plural });
        }
        throw e;
      }
    }
    if (req.method === 'DELETE' && name !== undefined) {
      const o = b.get(key(name));
      if (!o) return status(res, 404, 'NotFound', `${fq} "${name}" not found`);
      this.remove(gv(k, k.versions[0]), k.kind, o.metadata.namespace, name);
      return send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: k.group, kind: k.plural, uid: o.metadata.uid } });
    }
    req.resume();
    return status(res, 405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
  }

  private watch(k: KindInfo, version: string, ns: string | null, url: URL, res: ServerResponse): void {
    const from = url.searchParams.get('resourceVersion') ?? '';
    const w: Watcher = { kind: k, version, ns, res, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    res.on('close', () => this.watchers.delete(w));
    if (from === '' || from === '0') {
      for (const o of this.bucket(k).values()) if (ns === null || o.metadata.namespace === ns) this.sendEvent(w, 'ADDED', o);
    } else {
      const n = Number(from);
      if (!Number.isFinite(n) || n < this.compactedRv) { this.expire(w, n); return; }
      for (const c of this.history) {
        if (c.rv > n && c.kind === k && (ns === null || c.obj.metadata.namespace === ns)) this.sendEvent(w, c.type, c.obj);
      }
    }
    this.watchers.add(w);
  }

  private tokenReview(review: any, version: string, res: ServerResponse): void {
    const token = review?.spec?.token as string | undefined;
    const wanted = (review?.spec?.audiences ?? []) as string[];
    const info = token ? this.tokens.get(token) : undefined;
    // kube-apiserver: authenticated only when the token is valid and, if audiences were asked
    // for, the token is bound to at least one of them; status.audiences is that intersection.
    const auds = info ? (wanted.length ? wanted.filter((a) => info.audiences.includes(a)) : info.audiences) : [];
    const ok = info !== undefined && auds.length > 0;
    const st = ok
      ? {
        authenticated: true, audiences: auds,
        user: {
          username: `system:serviceaccount:${info.namespace}:${info.serviceAccount}`, uid: randomUUID(),
          groups: ['system:serviceaccounts', `system:serviceaccounts:${info.namespace}`, 'system:authenticated'],
          ...(info.podName ? { extra: { 'authentication.kubernetes.io/pod-name': [info.podName] } } : {}),
        },
      }
      : { authenticated: false, error: info ? 'token audiences do not match' : 'invalid bearer token', user: {} };
    send(res, 201, { kind: 'TokenReview', apiVersion: `authentication.k8s.io/${version}`, metadata: { creationTimestamp: null }, spec: review?.spec ?? {}, status: st });
  }
}

/** An AdmissionReview request (admission.k8s.io/v1) for a Pod CREATE, as kube-apiserver sends it to a webhook. */
export function podAdmissionReview(pod: KObj, namespace: string, uid = randomUUID()): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: {
      uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' }, requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: pod.metadata?.name ?? '', namespace, operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts', 'system:authenticated'] },
      object: { apiVersion: 'v1', kind: 'Pod', ...pod, metadata: { ...pod.metadata, namespace } },
      oldObject: null, dryRun: false, options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}
