// The control server's Kubernetes side, wired in one place so control/main.ts only calls it:
// the source (informers -> resources -> ControlState).
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ControlState } from '../state.ts';
import type { ConfigKind } from './kinds.ts';
import { KubernetesSource, loadKubeConfig } from './source.ts';
import { tokenReviewAuthenticator, type Authenticator } from './token-review.ts';
import { LeaderElector, type LeaseOptions } from './lease.ts';

export interface KubernetesControlOptions {
  kubeconfig?: string;            // --kubeconfig FILE; else in-cluster
  kc?: KubeConfig;                // embedding and tests
  clusterDomain?: string;
  debounceMs?: number;
  configKinds?: ConfigKind[];
  syncTimeoutMs?: number;         // startup wait for the first lists (default 30 s)
  /** Authenticate sidecars on the discovery port by TokenReview of their projected token (default true). */
  tokenReview?: boolean;
  /** Single-writer work behind a Lease in this namespace (e.g. meshlet-system); absent = this replica writes. */
  lease?: Omit<LeaseOptions, 'log'>;
}

export interface RunningKubernetes {
  source: KubernetesSource;
  kc: KubeConfig;
  authenticate: Authenticator | null;
  leader: LeaderElector | null;
  started(): void;
  close(): Promise<void>;
}

export async function startKubernetes(opts: KubernetesControlOptions, state: ControlState, log: Logger): Promise<RunningKubernetes> {
  const kc = opts.kc ?? loadKubeConfig(opts.kubeconfig);
  let started = false;
  const source = new KubernetesSource(kc, { log, clusterDomain: opts.clusterDomain, debounceMs: opts.debounceMs, configKinds: opts.configKinds }, (resources, why) => {
    if (started) state.fromKubernetes(resources, `kubernetes: ${why}`);
    else state.useKubernetes(resources);
  });
  let t: NodeJS.Timeout | undefined;
  const timeoutMs = opts.syncTimeoutMs ?? 30_000;
  const ok = await Promise.race([source.synced.then(() => true), new Promise<boolean>((r) => { t = setTimeout(() => r(false), timeoutMs); })]);
  clearTimeout(t);
  if (!ok) log.error({ server: kc.getCurrentCluster()?.server, waitedMs: timeoutMs }, 'Kubernetes API server: no complete first list yet; serving the directory alone until it answers');
  else log.info({ server: kc.getCurrentCluster()?.server }, 'Kubernetes API server listed; watching');
  state.setExternalRejections(() => source.rejections());
  let leader: LeaderElector | null = null;
  if (opts.lease) {
    leader = new LeaderElector(kc, { ...opts.lease, log });
    const l = leader;
    state.setWriterGate(() => ({ ok: l.isLeader(), holder: l.currentHolder() }));
    leader.start();
  }
  return {
    source, kc, leader,
    authenticate: opts.tokenReview === false ? null : tokenReviewAuthenticator(kc, { log }),
    started() { started = true; },
    async close() { await leader?.stop(); await source.close(); },
  };
}
