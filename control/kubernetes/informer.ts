// One informer per watched kind, on @kubernetes/client-node's ListWatch: list, then watch from the
// list's resourceVersion; a 410 Gone (the ERROR event or the HTTP status) clears the version and
// the next round relists (ListWatch reconciles the cache: objects missing from the new list are
// reported deleted, so a relist loses nothing and keeps nothing stale). Two things are added here:
//  - allowWatchBookmarks=true on every watch, so a quiet kind's resourceVersion stays fresh and a
//    reconnect after a timeout resumes instead of relisting;
//  - restart with capped exponential backoff after an error (ListWatch stops on any error other
//    than 410 and a timeout). Never a poll loop: between errors the watch stream is the source.
import { KubeConfig, ListWatch, Watch, type KubernetesObject, type KubernetesListObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface KindSpec {
  /** For logs and errors: "networking.istio.io/v1 VirtualService". */
  label: string;
  kind: string;
  /** The watch path for all namespaces, e.g. /apis/discovery.k8s.io/v1/endpointslices. */
  path: string;
  /** The matching list call (client-node's typed or custom-objects API). */
  list: (kc: KubeConfig) => Promise<KubernetesListObject<KubernetesObject>>;
  /** Custom resources: a 404 (CRD not installed) is an empty kind, retried slowly, not an outage. */
  optional?: boolean;
}

export interface InformerHandle {
  readonly spec: KindSpec;
  /** True once the first list has been applied (or, for an optional kind, found absent). */
  synced(): boolean;
  objects(): readonly KubernetesObject[];
  stop(): Promise<void>;
}

const BACKOFF = { firstMs: 250, maxMs: 30_000 };

export function startInformer(kc: KubeConfig, spec: KindSpec, onChange: (why: string) => void, log: Logger, opts: { backoffMs?: number } = {}): InformerHandle {
  const inner = new Watch(kc);
  const watch = {
    watch: (path: string, query: Record<string, unknown>, cb: (phase: string, obj: unknown, w: unknown) => void, done: (err: unknown) => void) =>
      inner.watch(path, { ...query, allowWatchBookmarks: true }, cb, done),
  } as unknown as Watch;
  let synced = false;
  let absent = false;
  let stopped = false;
  let delay = opts.backoffMs ?? BACKOFF.firstMs;
  let timer: NodeJS.Timeout | null = null;
  let lists = 0;
  const list = async () => {
    const l = await spec.list(kc);
    lists++;
    if (lists > 1) log.info({ kind: spec.label, items: l.items.length }, 'relisted');
    // ListWatch applies the items right after this resolves; the change callback is debounced
    // by the source, so it sees them.
    if (!synced) { synced = true; onChange(`${spec.label}: listed`); }
    if (absent) { absent = false; log.info({ kind: spec.label }, 'kind is served now; watching it'); }
    delay = opts.backoffMs ?? BACKOFF.firstMs;
    return l;
  };
  const lw = new ListWatch<KubernetesObject>(spec.path, watch, list, false);
  const changed = (verb: string) => (o: KubernetesObject) => onChange(`${spec.label} ${verb} ${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`);
  lw.on('add', changed('added'));
  lw.on('update', changed('updated'));
  lw.on('delete', changed('deleted'));
  lw.on('error', (err: any) => {
    if (stopped) return;
    const code = err?.code ?? err?.statusCode;
    if (code === 404 && spec.optional) {
      // The CRD is not installed: nothing of this kind exists. Look again later, quietly.
      if (!absent) log.warn({ kind: spec.label }, 'kind not served by the API server (CRD not installed?); treated as empty, checked again every 30 s');
      absent = true;
      if (!synced) { synced = true; onChange(`${spec.label}: absent`); }
      timer = setTimeout(() => { timer = null; void lw.start(); }, BACKOFF.maxMs);
    } else {
      log.warn({ kind: spec.label, err: err?.message ?? String(err), code, retryInMs: delay }, 'list/watch failed; retrying with backoff');
      timer = setTimeout(() => { timer = null; void lw.start(); }, delay);
      delay = Math.min(delay * 2, BACKOFF.maxMs);
    }
    timer.unref();
  });
  void lw.start();
  return {
    spec,
    synced: () => synced,
    objects: () => lw.list(),
    async stop() { stopped = true; if (timer) clearTimeout(timer); await lw.stop(); },
  };
}
