// Canary and MetricTemplate objects from the API server, fed to the canary controller as the
// 'kubernetes' origin (the directory and the ops API are the others). Both API groups are
// watched: meshlet.io/v1alpha1 (meshlet's CRDs, `meshlet install`) and flagger.app/v1beta1 (a
// cluster that already has Flagger's CRDs keeps its objects). Each kind is optional: a CRD that is
// not installed is an empty kind, not an outage. Every change re-parses all objects through the
// same checks a file's Canary gets (parseCanary), so a bad object is named with its field.
import { CustomObjectsApi, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { parseCanary, type CanaryFeed, type CanarySink } from '../canary/source.ts';
import { startInformer, type InformerHandle, type KindSpec } from './informer.ts';

interface CanaryKind { group: string; version: string; plural: string; kind: 'Canary' | 'MetricTemplate' }

export const CANARY_KINDS: CanaryKind[] = [
  { group: 'meshlet.io', version: 'v1alpha1', plural: 'canaries', kind: 'Canary' },
  { group: 'meshlet.io', version: 'v1alpha1', plural: 'metrictemplates', kind: 'MetricTemplate' },
  { group: 'flagger.app', version: 'v1beta1', plural: 'canaries', kind: 'Canary' },
  { group: 'flagger.app', version: 'v1beta1', plural: 'metrictemplates', kind: 'MetricTemplate' },
];

function spec(k: CanaryKind): KindSpec {
  return {
    label: `${k.group}/${k.version} ${k.kind}`, kind: k.kind, optional: true,
    path: `/apis/${k.group}/${k.version}/${k.plural}`,
    list: (kc: KubeConfig) => kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({ group: k.group, version: k.version, plural: k.plural }) as Promise<KubernetesListObject<KubernetesObject>>,
  };
}

export interface CanaryWatch { feedNow(): CanaryFeed | null; stop(): Promise<void> }

export function watchCanaries(kc: KubeConfig, sink: CanarySink, log: Logger, debounceMs = 20): CanaryWatch {
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let last: CanaryFeed | null = null;
  const informers: Array<{ kind: CanaryKind; informer: InformerHandle }> = [];
  const build = (): CanaryFeed | null => {
    if (!informers.every((i) => i.informer.synced())) return null;
    const feed: CanaryFeed = { canaries: [], templates: [], errors: [] };
    for (const { kind, informer } of informers) {
      for (const o of informer.objects()) {
        const doc = { ...o, apiVersion: o.apiVersion ?? `${kind.group}/${kind.version}`, kind: o.kind ?? kind.kind } as Record<string, any>;
        // The server adds metadata (uid, resourceVersion, managedFields…) and a status: the
        // Canary's status is the controller's own (kept in the directory), not an input.
        const { status: _status, ...rest } = doc;
        const meta = doc.metadata ?? {};
        rest.metadata = { name: meta.name, ...(meta.namespace ? { namespace: meta.namespace } : {}), ...(meta.labels ? { labels: meta.labels } : {}), ...(meta.annotations ? { annotations: meta.annotations } : {}) };
        parseCanary(`kubernetes ${kind.group}/${kind.version}`, rest, 'kubernetes', feed);
      }
    }
    return feed;
  };
  const flush = () => {
    timer = null;
    if (stopped) return;
    const feed = build();
    if (feed === null) return;
    for (const e of feed.errors) log.error({ error: e }, 'Canary rejected');
    last = feed;
    sink.feed('kubernetes', feed);
  };
  const changed = () => { if (!stopped && timer === null) timer = setTimeout(flush, debounceMs); };
  for (const kind of CANARY_KINDS) informers.push({ kind, informer: startInformer(kc, spec(kind), changed, log) });
  return {
    feedNow: () => last,
    async stop() { stopped = true; if (timer) clearTimeout(timer); await Promise.all(informers.map((i) => i.informer.stop())); },
  };
}
