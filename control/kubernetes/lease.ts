// Single-writer work across control replicas (ops API writes now, the canary controller later)
// behind a coordination.k8s.io/v1 Lease, with client-go's leader-election rules
// (tools/leaderelection): get the Lease; create it if missing; take it over when its holder has
// not renewed it within leaseDurationSeconds *as observed on our own clock* (the time we last saw
// the record change, so clocks need not agree); renew our own every retry period. Every write is
// an update carrying the resourceVersion we read, so two replicas racing for it cannot both win:
// the loser gets 409 Conflict (or AlreadyExists on create) and stays a follower. A leader that
// cannot renew within renewDeadline steps down before anyone else may take over. stop() releases
// the Lease (holder emptied, as ReleaseOnCancel) so a rolling update hands over at once.
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export const LEASE_NAME = 'meshlet-control-leader';

export interface LeaseOptions {
  namespace: string;
  name?: string;
  identity: string;
  leaseDurationMs?: number;   // client-go default 15 s
  renewDeadlineMs?: number;   // 10 s
  retryPeriodMs?: number;     // 2 s
  log?: Logger;
  onChange?: (leader: boolean, holder: string | null) => void;
}

const code = (e: unknown) => (e as { code?: number; statusCode?: number }).code ?? (e as { statusCode?: number }).statusCode;

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly o: Required<Omit<LeaseOptions, 'log' | 'onChange'>> & Pick<LeaseOptions, 'log' | 'onChange'>;
  private leader = false;
  private holder: string | null = null;
  private observed: { json: string; at: number } | null = null;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();

  constructor(kc: KubeConfig, opts: LeaseOptions) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.o = { name: LEASE_NAME, leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...opts };
    if (this.o.renewDeadlineMs >= this.o.leaseDurationMs) throw new Error('lease: renewDeadline must be shorter than leaseDuration');
  }

  isLeader(): boolean { return this.leader; }
  currentHolder(): string | null { return this.holder; }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.tryAcquireOrRenew().then(() => {}).finally(() => { if (!this.stopped) { this.timer = setTimeout(tick, this.o.retryPeriodMs); this.timer.unref(); } });
    };
    tick();
  }

  private set(leader: boolean, holder: string | null): void {
    const changed = leader !== this.leader || holder !== this.holder;
    this.leader = leader;
    this.holder = holder;
    if (changed) {
      this.o.log?.info({ lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity, leader, holder }, leader ? 'became the leader' : 'following');
      this.o.onChange?.(leader, holder);
    }
  }

  private body(prev: V1Lease | null, now: Date): V1Lease {
    const mine = prev?.spec?.holderIdentity === this.o.identity;
    return {
      apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
      metadata: { name: this.o.name, namespace: this.o.namespace, ...(prev?.metadata?.resourceVersion ? { resourceVersion: prev.metadata.resourceVersion } : {}) },
      spec: {
        holderIdentity: this.o.identity, leaseDurationSeconds: Math.max(1, Math.round(this.o.leaseDurationMs / 1000)),
        acquireTime: mine && prev?.spec?.acquireTime ? prev.spec.acquireTime : now, renewTime: now,
        leaseTransitions: (prev?.spec?.leaseTransitions ?? 0) + (prev && !mine ? 1 : 0),
      },
    };
  }

  /** One round: true when we hold the Lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const now = Date.now();
    let cur: V1Lease | null = null;
    try {
      cur = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
    } catch (e) {
      if (code(e) !== 404) return this.failed(e, now);
    }
    if (!cur) {
      try {
        await this.api.createNamespacedLease({ namespace: this.o.namespace, body: this.body(null, new Date(now)) });
        this.lastRenew = now;
        this.set(true, this.o.identity);
        return true;
      } catch (e) {
        if (code(e) === 409) { this.set(false, null); return false; }   // someone created it first
        return this.failed(e, now);
      }
    }
    const spec = cur.spec ?? {};
    const json = JSON.stringify(spec);
    if (!this.observed || this.observed.json !== json) this.observed = { json, at: now };
    const holder = spec.holderIdentity || null;
    const durMs = (spec.leaseDurationSeconds ?? 0) * 1000;
    const expired = !holder || now - this.observed.at > durMs;
    if (holder !== this.o.identity && !expired) { this.set(false, holder); return false; }
    try {
      await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: this.body(cur, new Date(now)) });
      this.lastRenew = now;
      this.set(true, this.o.identity);
      return true;
    } catch (e) {
      if (code(e) === 409) { this.set(false, holder); return false; }   // lost the race: the resourceVersion moved
      return this.failed(e, now);
    }
  }

  private failed(e: unknown, now: number): false {
    this.o.log?.warn({ lease: `${this.o.namespace}/${this.o.name}`, err: (e as Error).message }, 'lease: API call failed');
    // A leader that cannot renew steps down before its Lease can expire for the others.
    if (this.leader && now - this.lastRenew > this.o.renewDeadlineMs) this.set(false, null);
    return false;
  }

  /** Stop; with `release` (default) hand the Lease back at once. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running.catch(() => {});
    if (this.leader && opts.release !== false) {
      try {
        const cur = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
        if (cur.spec?.holderIdentity === this.o.identity) {
          await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: { ...cur, spec: { ...cur.spec, holderIdentity: '', leaseDurationSeconds: 1 } } });
        }
      } catch (e) { this.o.log?.warn({ err: (e as Error).message }, 'lease: release failed; it expires on its own'); }
    }
    this.set(false, null);
  }
}
