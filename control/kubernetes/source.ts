// The Kubernetes source of the control server: informers for the discovery kinds and the config
// kinds, turned into meshlet resources on every change (debounced: a rollout is a burst of
// EndpointSlice and Pod updates, one rebuild covers it). An invalid custom resource is rejected
// on its own: its last valid version (if any) stays in force, the rejection is logged, kept for
// the ops API, and reported on the object as a Warning Event (reason MeshletRejected), where
// `kubectl describe` shows it.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Resource } from '../../proxy/config/resources.ts';
import { startInformer, type InformerHandle } from './informer.ts';
import { intrinsicProblems } from '../../proxy/config/compile.ts';
import { CONFIG_KINDS, DISCOVERY_KINDS, configKindSpec, type ConfigKind } from './kinds.ts';
import { nsName, servicesToEntries, type KObj } from './translate.ts';

export interface KubeRejection { object: string; resourceVersion: string; errors: string[] }

export interface KubernetesSourceOptions {
  log: Logger;
  clusterDomain?: string;
  debounceMs?: number;
  configKinds?: ConfigKind[];
  /** Report rejections as Events on the objects (default true). */
  events?: boolean;
}

/** --kubeconfig FILE, else in-cluster (the pod's service account), as kubectl and controllers do. */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error('--kubernetes: no cluster in the kubeconfig (give --kubeconfig FILE, or run in a pod)');
  return kc;
}

export class KubernetesSource {
  readonly kc: KubeConfig;
  private readonly log: Logger;
  private readonly onChange: (resources: Resource[], why: string) => void;
  private readonly discovery: { services: InformerHandle; endpointslices: InformerHandle; pods: InformerHandle };
  private readonly config: Array<{ kind: ConfigKind; informer: InformerHandle }>;
  private readonly clusterDomain: string;
  private readonly debounceMs: number;
  private readonly events: boolean;
  private timer: NodeJS.Timeout | null = null;
  private whys: string[] = [];
  private closed = false;
  // Per config object: the version last parsed and what it gave; the last valid one stays in
  // force while a newer version is invalid.
  private readonly parsed = new Map<string, { rv: string; resources: Resource[] | null; errors: string[] }>();
  private readonly lastValid = new Map<string, Resource[]>();
  private readonly reported = new Set<string>();
  private rejected: KubeRejection[] = [];
  private resolveSynced!: () => void;
  readonly synced: Promise<void>;
  private latest: Resource[] = [];

  constructor(kc: KubeConfig, opts: KubernetesSourceOptions, onChange: (resources: Resource[], why: string) => void) {
    this.kc = kc;
    this.log = opts.log;
    this.onChange = onChange;
    this.clusterDomain = opts.clusterDomain ?? 'cluster.local';
    this.debounceMs = opts.debounceMs ?? 20;
    this.events = opts.events ?? true;
    this.synced = new Promise((r) => { this.resolveSynced = r; });
    const changed = (why: string) => this.schedule(why);
    this.discovery = {
      services: startInformer(kc, DISCOVERY_KINDS.services, changed, this.log),
      endpointslices: startInformer(kc, DISCOVERY_KINDS.endpointslices, changed, this.log),
      pods: startInformer(kc, DISCOVERY_KINDS.pods, changed, this.log),
    };
    this.config = (opts.configKinds ?? CONFIG_KINDS).map((kind) => ({ kind, informer: startInformer(kc, configKindSpec(kind), changed, this.log) }));
  }

  private all(): InformerHandle[] { return [...Object.values(this.discovery), ...this.config.map((c) => c.informer)]; }

  private schedule(why: string): void {
    if (this.closed) return;
    this.whys.push(why);
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = null; this.flush(); }, this.debounceMs);
  }

  private flush(): void {
    // Nothing is published before every kind has its first list: a snapshot with the Services but
    // not yet their EndpointSlices would send traffic nowhere.
    if (!this.all().every((i) => i.synced())) return;
    const whys = this.whys;
    this.whys = [];
    this.latest = this.build();
    this.resolveSynced();
    this.onChange(this.latest, whys.length <= 3 ? whys.join('; ') : `${whys.slice(0, 3).join('; ')} (+${whys.length - 3} more)`);
  }

  /** The resources of the current caches (also what a directory rebuild combines with). */
  resources(): Resource[] { return this.latest; }

  rejections(): KubeRejection[] { return this.rejected; }

  private build(): Resource[] {
    const objs = (i: InformerHandle) => [...i.objects()] as unknown as KObj[];
    const svc = servicesToEntries(objs(this.discovery.services), objs(this.discovery.endpointslices), objs(this.discovery.pods), this.clusterDomain);
    for (const p of svc.problems) this.log.warn({ problem: p }, 'Service not translated');
    const out: Resource[] = [...svc.resources];
    const rejected: KubeRejection[] = [];
    const seen = new Set<string>();
    for (const { kind, informer } of this.config) {
      for (const o of objs(informer).sort((a, b) => nsName(a).localeCompare(nsName(b)))) {
        const key = `${kind.kind} ${nsName(o)}`;
        seen.add(key);
        const rv = String(o.metadata?.resourceVersion ?? '');
        let p = this.parsed.get(key);
        if (!p || p.rv !== rv) {
          const errors: string[] = [];
          const doc = { ...o, apiVersion: o.apiVersion ?? `${kind.group}/${kind.version}`, kind: o.kind ?? kind.kind };
          const rs = kind.toResources(doc, errors);
          // Problems of the object by itself (an unknown `when` key…) reject it alone, as a schema error does.
          for (const r of rs) for (const p of intrinsicProblems(r)) errors.push(`apiserver:${kind.kind} ${nsName(o)}: ${p}`);
          p = { rv, resources: errors.length ? null : rs, errors };
          this.parsed.set(key, p);
          if (p.resources) this.lastValid.set(key, p.resources);
        }
        if (p.resources) { out.push(...p.resources); continue; }
        rejected.push({ object: key, resourceVersion: rv, errors: p.errors });
        const kept = this.lastValid.get(key);
        if (kept) out.push(...kept);
        this.report(o, kind, key, rv, p.errors, kept !== undefined);
      }
    }
    for (const key of [...this.parsed.keys()]) if (!seen.has(key)) { this.parsed.delete(key); this.lastValid.delete(key); }
    this.rejected = rejected;
    return out;
  }

  /** Log a rejection once per object version, and post it as an Event on the object. */
  report(o: KObj, kind: { kind: string; group?: string; version?: string }, key: string, rv: string, errors: string[], keptPrevious: boolean): void {
    const id = `${key}@${rv}`;
    if (this.reported.has(id)) return;
    this.reported.add(id);
    const keeping = keptPrevious ? 'its last valid version stays in force' : 'it is ignored (no earlier valid version)';
    this.log.error({ object: key, resourceVersion: rv, errors }, `custom resource rejected; ${keeping}`);
    if (!this.events) return;
    const ns = o.metadata?.namespace ?? 'default';
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.kc.makeApiClient(CoreV1Api).createNamespacedEvent({
      namespace: ns,
      body: {
        metadata: { name: `${o.metadata?.name}.meshlet-${rv}`, namespace: ns },
        involvedObject: { apiVersion: o.apiVersion ?? (kind.group ? `${kind.group}/${kind.version}` : undefined), kind: kind.kind, name: o.metadata?.name, namespace: ns, uid: o.metadata?.uid, resourceVersion: rv },
        reason: 'MeshletRejected', type: 'Warning', message: `${errors.join('; ')} (${keeping})`.slice(0, 1024),
        source: { component: 'meshlet-control' }, reportingComponent: 'meshlet-control', count: 1,
        firstTimestamp: now as unknown as Date, lastTimestamp: now as unknown as Date,
      },
    }).catch((e: Error) => this.log.warn({ object: key, err: e.message }, 'could not post the rejection Event'));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.all().map((i) => i.stop()));
  }
}
