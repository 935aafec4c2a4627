// The canary state machine (Flagger's phases and rules, pkg/controller/scheduler.go, read for
// docs/canary.md), run inside the control server. Each canary is ticked at its analysis
// interval; a tick runs the webhooks, then the metric checks on the proxies' reports
// (metrics.ts), then advances, halts, promotes or rolls back. Every weight change is an ops
// change (ControlState.applyOps with ops.ts canaryRouting: the validated path `meshlet ctl
// weights` takes, written to the ops file), and the status is persisted next to it after every
// change, so a restarted control server resumes a run where it was.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { durationMs, parseDuration } from '../../proxy/config/duration.ts';
import type { Snapshot } from '../../proxy/config/schema.ts';
import { canaryRouting, type CanaryRouting } from '../api/ops.ts';
import { HttpError } from '../http.ts';
import type { ControlState } from '../state.ts';
import { p99, successRate, VersionMetrics, type Window } from './metrics.ts';
import { prometheusQuery } from './prometheus.ts';
import { relativeCheck } from './sequential.ts';
import type { CanaryDef, CanaryFeed, CanarySink, MetricSpec, TemplateDef, WebhookSpec } from './source.ts';
import { callWebhook, LoadHook, type HookResult } from './webhooks.ts';

export const PHASES = ['Initializing', 'Initialized', 'Waiting', 'Progressing', 'WaitingPromotion', 'Promoting', 'Finalising', 'Succeeded', 'Failed'] as const;
export type Phase = (typeof PHASES)[number];

export interface CheckResult {
  metric: string; value: number | null; min: number | null; max: number | null;
  samples: number; needed: number; result: 'pass' | 'fail' | 'insufficient' | 'error'; message: string; at: string;
}

export interface CanaryStatus {
  phase: Phase;
  canaryWeight: number;
  failedChecks: number;
  iterations: number;
  lastTransitionTime: string;
  primary: string;
  canary: string;
  conditions: Array<{ type: 'Promoted'; status: 'True' | 'False' | 'Unknown'; reason: string; message: string; lastUpdateTime: string; lastTransitionTime: string }>;
  checksum: string;
  /** Versions already handled (the primary before a promotion, candidates that ended): not "new" again. */
  done: string[];
  startedAt: string | null;
  lastProgressTime: string | null;
  preRolloutPassed: boolean;
  mirrored: boolean;
  sessionAffinityCookie: string | null;
  primaryCookie: string | null;
  lastChecks: CheckResult[];
  paused: boolean;
}

export interface CanaryEvent { time: string; type: 'Normal' | 'Warning'; reason: string; message: string }

interface Run {
  def: CanaryDef;
  status: CanaryStatus;
  events: CanaryEvent[];
  weights: Array<{ time: string; weight: number }>;
  nextAt: number;
  chain: Promise<void>;
  approved: boolean;
  startVersion: string | null;
  load: LoadHook;
  warned: string | null;
}

const EVENTS_MAX = 100;
const WEIGHTS_MAX = 300;
export const STATUS_FILE = '.meshlet-canary-status.json';

const nowIso = () => new Date().toISOString();
const hash = (v: unknown) => createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 10);

/** Flagger's GetAnalysisInterval, but meshlet allows down to 1 s (Flagger clamps to 10 s). */
export function intervalMs(def: CanaryDef): number {
  const ms = parseDuration(def.spec.analysis?.interval ?? '60s') ?? 60_000;
  return Math.max(1000, ms);
}

/** Flagger's strategy choice (canary.go DeploymentStrategy). */
export function strategy(def: CanaryDef): 'canary' | 'ab' | 'bluegreen' {
  const a = def.spec.analysis ?? {};
  if ((a.iterations ?? 0) > 0) return a.match?.length ? 'ab' : 'bluegreen';
  return 'canary';
}

/** Flagger's maxWeight: the last stepWeights entry, else maxWeight, else 100. */
export function maxWeight(def: CanaryDef): number {
  const a = def.spec.analysis ?? {};
  if (a.stepWeights?.length) return a.stepWeights[a.stepWeights.length - 1];
  return a.maxWeight ?? 100;
}

/** Flagger's nextStepWeight: stepWeight linearly, else the next stepWeights entry; capped at maxWeight. */
export function nextWeight(def: CanaryDef, cur: number): number {
  const a = def.spec.analysis ?? {};
  const max = maxWeight(def);
  if ((a.stepWeight ?? 0) > 0) return Math.min(max, cur + a.stepWeight!);
  const next = (a.stepWeights ?? []).find((w) => w > cur);
  return Math.min(max, next ?? max);
}

export class CanaryController implements CanarySink {
  readonly metrics: VersionMetrics;
  private readonly state: ControlState;
  private readonly log: Logger;
  private readonly statusPath: string;
  private readonly runs = new Map<string, Run>();
  private readonly feeds = new Map<string, CanaryFeed>();
  private templates = new Map<string, TemplateDef>();
  private saved: Record<string, { status: CanaryStatus; events: CanaryEvent[]; weights: Run['weights'] }> = {};
  private timer: NodeJS.Timeout | null = null;
  errors: string[] = [];
  /** Hooks for gauges and the mesh page. */
  onChange: (() => void) | null = null;

  constructor(opts: { state: ControlState; metrics: VersionMetrics; log: Logger; dir: string }) {
    this.state = opts.state;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.statusPath = join(opts.dir, STATUS_FILE);
    try { this.saved = JSON.parse(readFileSync(this.statusPath, 'utf8')); } catch { this.saved = {}; }
    this.metrics.onReport = (keys) => this.onReport(keys);
  }

  start(): void {
    // One coarse timer for every canary: each is stepped when its interval is due, one step at a time.
    this.timer = setInterval(() => {
      // With several control replicas only the writer Lease's holder runs canaries (its weight
      // changes are ops writes); the others keep their definitions and take over with the Lease.
      if (!this.state.canWrite()) return;
      const now = Date.now();
      for (const run of this.runs.values()) {
        if (run.nextAt > now) continue;
        run.nextAt = now + intervalMs(run.def);
        this.enqueue(run, () => this.step(run));
      }
    }, 100);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const r of this.runs.values()) r.load.stop();
  }

  /** Settle every queued step (tests and shutdown). */
  async idle(): Promise<void> { await Promise.all([...this.runs.values()].map((r) => r.chain)); }

  private enqueue(run: Run, fn: () => Promise<void>): Promise<void> {
    run.chain = run.chain.then(fn).catch((e) => { this.log.error({ canary: run.def.name, err: (e as Error).message }, 'canary step failed'); this.event(run, 'Warning', 'Error', (e as Error).message); });
    return run.chain;
  }

  // ---- sources ----------------------------------------------------------------------------

  feed(origin: string, f: CanaryFeed): void {
    this.feeds.set(origin, f);
    const defs = new Map<string, CanaryDef>();
    const templates = new Map<string, TemplateDef>();
    this.errors = [];
    for (const feed of this.feeds.values()) {
      this.errors.push(...feed.errors);
      for (const t of feed.templates) templates.set(`${t.namespace}/${t.name}`, t);
      for (const c of feed.canaries) if (!defs.has(`${c.namespace}/${c.name}`)) defs.set(`${c.namespace}/${c.name}`, c);
    }
    for (const e of f.errors) this.log.error({ origin }, e);
    this.templates = templates;
    let removed = false;
    for (const [k, run] of this.runs) {
      if (defs.has(k)) continue;
      run.load.stop();
      this.runs.delete(k);
      // Its status goes with it (as Flagger's goes with the object): a new Canary of that name starts afresh.
      delete this.saved[k];
      removed = true;
      this.log.info({ canary: k }, 'canary removed');
    }
    if (removed) this.persist();
    for (const [k, def] of defs) {
      const run = this.runs.get(k);
      if (run) {
        const changed = hash(run.def.spec) !== hash(def.spec);
        run.def = def;
        if (changed) { run.nextAt = Math.min(run.nextAt, Date.now() + 200); }
        continue;
      }
      const saved = this.saved[k];
      const fresh: CanaryStatus = {
        phase: 'Initializing', canaryWeight: 0, failedChecks: 0, iterations: 0, lastTransitionTime: nowIso(), primary: '', canary: '',
        conditions: [], checksum: '', done: [], startedAt: null, lastProgressTime: null, preRolloutPassed: false, mirrored: false,
        sessionAffinityCookie: null, primaryCookie: null, lastChecks: [], paused: false,
      };
      const r: Run = {
        def, status: saved ? { ...fresh, ...saved.status } : fresh, events: saved?.events ?? [], weights: saved?.weights ?? [],
        nextAt: Date.now() + 50, chain: Promise.resolve(), approved: false, startVersion: null, load: new LoadHook(), warned: null,
      };
      this.runs.set(k, r);
      if (saved) {
        this.event(r, 'Normal', 'Resumed', `Resuming ${this.label(r)} from its status: phase ${r.status.phase}, canary weight ${r.status.canaryWeight}, failed checks ${r.status.failedChecks}`);
        // The routes in the ops file already carry the weight; re-applying makes sure of it.
        if (this.running(r)) this.enqueue(r, () => this.route(r, r.status.canaryWeight, 'resume'));
      }
    }
    this.onChange?.();
  }

  // ---- API --------------------------------------------------------------------------------

  list(): ReturnType<CanaryController['view']>[] { return [...this.runs.values()].map((r) => this.view(r)); }

  get(name: string): ReturnType<CanaryController['view']> { return this.view(this.find(name)); }

  private find(name: string): Run {
    const [ns, n] = name.includes('/') ? name.split('/', 2) : [null, name];
    const run = [...this.runs.values()].find((r) => r.def.name === n && (ns === null || r.def.namespace === ns));
    if (!run) throw new HttpError(404, `no canary "${name}" (known: ${[...this.runs.values()].map((r) => r.def.name).join(', ') || 'none'})`);
    return run;
  }

  view(r: Run) {
    const s = r.status;
    return {
      name: r.def.name, namespace: r.def.namespace, origin: r.def.origin, file: r.def.file, spec: r.def.spec,
      strategy: strategy(r.def), interval_ms: intervalMs(r.def), threshold: this.threshold(r), maxWeight: maxWeight(r.def),
      status: {
        phase: s.phase, canaryWeight: s.canaryWeight, failedChecks: s.failedChecks, iterations: s.iterations,
        lastTransitionTime: s.lastTransitionTime, primary: s.primary, canary: s.canary, conditions: s.conditions,
        checks: s.lastChecks, paused: s.paused, sessionAffinityCookie: s.sessionAffinityCookie,
      },
      weights: r.weights, events: r.events,
    };
  }

  /** approve | pause | resume | abort | start [version] (`meshlet ctl canary …`). */
  async action(name: string, what: string, version?: string): Promise<unknown> {
    const run = this.find(name);
    switch (what) {
      case 'approve':
        run.approved = true;
        this.event(run, 'Normal', 'Approved', `Approved ${this.label(run)} (the next confirm gate passes)`);
        run.nextAt = Date.now();
        break;
      case 'pause':
        run.status.paused = true;
        this.event(run, 'Normal', 'Paused', `Paused ${this.label(run)}: no analysis and no weight change until resume`);
        break;
      case 'resume':
        run.status.paused = false;
        this.event(run, 'Normal', 'Resumed', `Resumed ${this.label(run)}`);
        run.nextAt = Date.now();
        break;
      case 'abort':
        if (!this.running(run)) throw new HttpError(409, `canary ${run.def.name} is ${run.status.phase}: nothing to abort`);
        await this.enqueue(run, () => this.rollback(run, 'aborted by the operator'));
        break;
      case 'start': {
        const snap = this.snapshot();
        const svc = snap && this.service(run, snap);
        if (version && svc && !svc.subsets.includes(version)) throw new HttpError(400, `service ${svc.host} has no subset "${version}" (subsets: ${svc.subsets.join(', ')})`);
        if (!version && !run.def.spec.canary?.subset) throw new HttpError(400, 'give --version <subset> (the Canary names no canary subset)');
        run.startVersion = version ?? run.def.spec.canary!.subset;
        this.event(run, 'Normal', 'Start', `Start requested for ${this.label(run)} with ${run.startVersion}`);
        run.nextAt = Date.now();
        break;
      }
      default:
        throw new HttpError(400, `unknown action "${what}" (approve, pause, resume, abort, start)`);
    }
    this.persist();
    return this.view(run);
  }

  // ---- the state machine ------------------------------------------------------------------

  private label(r: Run): string { return `${r.def.name}.${r.def.namespace}`; }
  private threshold(r: Run): number { const t = r.def.spec.analysis?.threshold ?? 1; return t > 0 ? t : 1; }
  private running(r: Run): boolean { return ['Waiting', 'Progressing', 'WaitingPromotion', 'Promoting', 'Finalising'].includes(r.status.phase); }
  private snapshot(): Snapshot | null { return this.state.current()?.snapshot ?? null; }

  private service(r: Run, snap: Snapshot): Snapshot['services'][number] | undefined {
    const n = r.def.spec.targetRef.name.toLowerCase();
    return snap.services.find((s) => s.aliases.includes(n) || s.aliases.includes(`${n}.${r.def.namespace}.svc.cluster.local`));
  }

  /** Subsets of the service with at least one endpoint now. */
  private versions(snap: Snapshot, host: string): string[] {
    return [...new Set(snap.clusters.filter((c) => c.service === host && c.subset && c.endpoints.length > 0).map((c) => c.subset))].sort();
  }

  /** The subset taking most of the host's catch-all traffic now. */
  private currentPrimary(snap: Snapshot, host: string): string {
    const vh = snap.virtualHosts.find((v) => v.service === host);
    const w = new Map<string, number>();
    for (const r of vh?.routes ?? []) for (const d of r.destinations) if (d.host === host && d.subset) w.set(d.subset, (w.get(d.subset) ?? 0) + d.weight);
    return [...w].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
  }

  private event(r: Run, type: CanaryEvent['type'], reason: string, message: string): void {
    const last = r.events[r.events.length - 1];
    // Repeated halts (thin traffic every interval) are one event, as Kubernetes aggregates them.
    if (last && last.message === message && last.reason === reason) { last.time = nowIso(); return; }
    r.events.push({ time: nowIso(), type, reason, message });
    if (r.events.length > EVENTS_MAX) r.events.splice(0, r.events.length - EVENTS_MAX);
    this.log[type === 'Warning' ? 'warn' : 'info']({ canary: this.label(r), reason }, message);
    for (const h of this.hooks(r, 'event')) void this.hook(r, h, { eventMessage: message, eventType: type });
  }

  private setPhase(r: Run, phase: Phase, reason?: string): void {
    const s = r.status;
    if (s.phase !== phase) { s.phase = phase; s.lastTransitionTime = nowIso(); }
    const promoted = phase === 'Succeeded' ? 'True' : phase === 'Failed' ? 'False' : 'Unknown';
    const prev = s.conditions[0];
    const message = phase === 'Succeeded' ? 'Canary analysis completed successfully, promotion finished.'
      : phase === 'Failed' ? `Canary analysis failed${reason ? `: ${reason}` : ''}.` : phase === 'Initialized' ? 'Initialization done.'
      : phase === 'WaitingPromotion' ? 'Waiting for approval.' : 'New revision detected, progressing canary analysis.';
    s.conditions = [{ type: 'Promoted', status: promoted, reason: phase, message, lastUpdateTime: nowIso(), lastTransitionTime: prev?.status === promoted ? prev.lastTransitionTime : nowIso() }];
  }

  private persist(): void {
    const out: typeof this.saved = { ...this.saved };
    for (const [k, r] of this.runs) out[k] = { status: r.status, events: r.events, weights: r.weights };
    this.saved = out;
    const tmp = `${this.statusPath}.${process.pid}.tmp`;
    try { writeFileSync(tmp, `${JSON.stringify(out, null, 1)}\n`); renameSync(tmp, this.statusPath); } catch (e) { this.log.error({ err: (e as Error).message, file: this.statusPath }, 'cannot write the canary status'); }
    this.onChange?.();
  }

  private hooks(r: Run, type: WebhookSpec['type']): WebhookSpec[] {
    return (r.def.spec.analysis?.webhooks ?? []).filter((h) => (h.type ?? 'rollout') === type);
  }

  private async hook(r: Run, h: WebhookSpec, extra: Record<string, string> = {}): Promise<HookResult> {
    if (h.url === 'meshlet:gate') return r.approved ? { ok: true, detail: 'approved' } : { ok: false, detail: 'waiting for `meshlet ctl canary approve`' };
    if (h.url === 'meshlet:load') {
      const snap = this.snapshot();
      const svc = snap && this.service(r, snap);
      if (!svc) return { ok: false, detail: 'service not found' };
      return r.load.run(svc.host, r.status.canary, h.metadata ?? {});
    }
    const res = await callWebhook(h, { name: r.def.name, namespace: r.def.namespace, phase: r.status.phase, checksum: r.status.checksum, metadata: extra });
    // A confirm gate given by hand passes whatever its URL says.
    if (!res.ok && r.approved && (h.type ?? '').startsWith('confirm-')) return { ok: true, detail: `approved (${res.detail})` };
    return res;
  }

  /** Run the hooks of a type; the first failure is returned (with its hook's name). */
  private async gate(r: Run, type: WebhookSpec['type']): Promise<{ name: string; detail: string } | null> {
    for (const h of this.hooks(r, type)) {
      const res = await this.hook(r, h);
      if (!res.ok) return { name: h.name, detail: res.detail };
    }
    return null;
  }

  private async route(r: Run, weight: number, why: string, final = false): Promise<void> {
    const snap = this.snapshot();
    const svc = snap && this.service(r, snap);
    if (!svc) throw new Error(`service ${r.def.spec.targetRef.name} not found`);
    const s = r.status;
    const a = r.def.spec.analysis ?? {};
    const st = strategy(r.def);
    const routing: CanaryRouting = { primary: s.primary, canary: s.canary, weight, managedPrefix: `canary-${r.def.name}-` };
    if (!final) {
      if (st === 'ab') routing.match = a.match as CanaryRouting['match'];
      const mirroring = a.mirror && ((st === 'canary' && weight === 0 && !s.mirrored) || st === 'bluegreen');
      if (mirroring) routing.mirrorPercent = a.mirrorWeight ?? 100;
      if (a.sessionAffinity && st === 'canary') {
        s.sessionAffinityCookie ??= `${a.sessionAffinity.cookieName}-${hash([Date.now(), Math.random()])}`;
        routing.cookie = { name: a.sessionAffinity.cookieName, value: s.sessionAffinityCookie.slice(a.sessionAffinity.cookieName.length + 1), maxAge: a.sessionAffinity.maxAge ?? 86400 };
        if (a.sessionAffinity.primaryCookieName) {
          s.primaryCookie ??= hash([Date.now(), Math.random(), 'p']);
          Object.assign(routing.cookie, { primaryName: a.sessionAffinity.primaryCookieName, primaryValue: s.primaryCookie });
        }
      }
    }
    await this.state.applyOps(svc.host, `canary ${r.def.name} ${why}`, (ctx) => canaryRouting(ctx, svc.host, routing));
    s.canaryWeight = final ? 0 : weight;
    // The line on the mesh page: a promotion ends at 100 (all traffic on the new version), a rollback at 0.
    r.weights.push({ time: nowIso(), weight });
    if (r.weights.length > WEIGHTS_MAX) r.weights.splice(0, r.weights.length - WEIGHTS_MAX);
  }

  private async step(r: Run): Promise<void> {
    const s = r.status;
    const spec = r.def.spec;
    const snap = this.snapshot();
    if (!snap) return;
    const svc = this.service(r, snap);
    if (!svc) {
      const msg = `Target ${spec.targetRef.name} not found: no ServiceEntry defines it (services: ${snap.services.map((x) => x.host).join(', ')})`;
      if (r.warned !== msg) { r.warned = msg; this.event(r, 'Warning', 'Synced', msg); this.persist(); }
      return;
    }
    r.warned = null;
    if (spec.suspend || s.paused) return;
    const versions = this.versions(snap, svc.host);
    if (s.phase === 'Initializing') {
      s.primary = spec.primary?.subset ?? this.currentPrimary(snap, svc.host);
      if (!s.primary || !svc.subsets.includes(s.primary)) {
        const msg = `No primary for ${this.label(r)}: set spec.primary.subset (subsets: ${svc.subsets.join(', ') || 'none'})`;
        if (r.warned !== msg) { r.warned = msg; this.event(r, 'Warning', 'Synced', msg); this.persist(); }
        return;
      }
      // Versions running now are not new revisions, except the canary the spec names.
      s.done = versions.filter((v) => v !== s.primary && v !== spec.canary?.subset);
      this.setPhase(r, 'Initialized');
      this.event(r, 'Normal', 'Synced', `Initialization done! ${this.label(r)} (primary ${s.primary})`);
      this.persist();
    }
    const known = new Set([s.primary, s.canary, ...s.done].filter(Boolean));
    const fresh = versions.filter((v) => !known.has(v));
    if (!this.running(r)) {
      const cand = r.startVersion ?? (spec.canary?.subset && !known.has(spec.canary.subset) && versions.includes(spec.canary.subset) ? spec.canary.subset : null) ?? (spec.canary?.subset ? null : fresh[0] ?? null);
      if (!cand) return;
      r.startVersion = null;
      if (cand === s.primary) { this.event(r, 'Warning', 'Synced', `${cand} is the primary of ${this.label(r)}: nothing to roll out`); this.persist(); return; }
      await this.begin(r, cand, 'New revision detected!');
      return;
    }
    if (r.startVersion && r.startVersion !== s.canary) {
      const v = r.startVersion;
      r.startVersion = null;
      s.done = [...new Set([...s.done, s.canary])];
      await this.begin(r, v, 'Restarting analysis: new candidate');
      return;
    }
    r.startVersion = null;
    if (!spec.canary?.subset && fresh.length > 0) {
      // A newer revision during the run restarts it (Flagger: a new revision while Progressing).
      s.done = [...new Set([...s.done, s.canary])];
      await this.begin(r, fresh[0], 'New revision detected! Restarting analysis');
      return;
    }
    await this.advance(r, svc.host);
    this.persist();
  }

  private async begin(r: Run, candidate: string, why: string): Promise<void> {
    const s = r.status;
    const spec = r.def.spec;
    s.canary = candidate;
    s.failedChecks = 0; s.iterations = 0; s.mirrored = false; s.preRolloutPassed = false; s.lastChecks = [];
    s.sessionAffinityCookie = null; s.primaryCookie = null;
    s.checksum = hash([spec, candidate]);
    s.startedAt = nowIso(); s.lastProgressTime = nowIso();
    r.approved = false;
    this.event(r, 'Normal', 'Synced', `${why} Starting canary analysis for ${this.label(r)}: primary ${s.primary}, canary ${candidate}`);
    this.setPhase(r, 'Progressing');
    await this.route(r, 0, `start ${candidate}`);
    const wait = await this.gate(r, 'confirm-rollout');
    if (wait) {
      this.setPhase(r, 'Waiting');
      this.event(r, 'Normal', 'Synced', `Halt advancement ${this.label(r)} waiting for rollout approval ${wait.name} (${wait.detail})`);
    }
    this.persist();
  }

  private async fail(r: Run, message: string): Promise<boolean> {
    const s = r.status;
    s.failedChecks++;
    this.event(r, 'Warning', 'Synced', message);
    if (s.failedChecks >= this.threshold(r)) { await this.rollback(r, `failed checks threshold reached ${s.failedChecks}`); return true; }
    return false;
  }

  private async advance(r: Run, host: string): Promise<void> {
    const s = r.status;
    const spec = r.def.spec;
    const a = spec.analysis ?? {};
    const st = strategy(r.def);
    if (s.phase === 'Waiting') {
      const wait = await this.gate(r, 'confirm-rollout');
      if (wait) { this.event(r, 'Normal', 'Synced', `Halt advancement ${this.label(r)} waiting for rollout approval ${wait.name} (${wait.detail})`); return; }
      r.approved = false;
      this.event(r, 'Normal', 'Synced', `Confirm-rollout check passed for ${this.label(r)}`);
      this.setPhase(r, 'Progressing');
      s.lastProgressTime = nowIso();
    }
    if (s.phase === 'Finalising') {
      const old = s.primary;
      s.primary = s.canary;
      s.done = [...new Set([...s.done, old, s.canary])].filter((v) => v !== s.primary);
      s.canary = '';
      this.setPhase(r, 'Succeeded');
      this.event(r, 'Normal', 'Synced', `Promotion completed! ${this.label(r)}: ${s.primary} is the primary`);
      r.load.stop();
      for (const h of this.hooks(r, 'post-rollout')) { const res = await this.hook(r, h); if (!res.ok) this.event(r, 'Warning', 'Synced', `Post-rollout hook ${h.name} failed: ${res.detail}`); }
      return;
    }
    if (s.phase === 'Promoting') {
      const w = Math.min(100, s.canaryWeight + (r.def.spec.analysis?.stepWeightPromotion ?? 100));
      if (w < 100) {
        await this.route(r, w, `promotion weight ${w}`);
        this.event(r, 'Normal', 'Synced', `Advance ${this.label(r)} promotion: canary weight ${w}`);
        return;
      }
      this.setPhase(r, 'Promoting');
      this.event(r, 'Normal', 'Synced', `Promoting ${this.label(r)}: all routes of the service send to ${s.canary}`);
      await this.route(r, 100, `promote ${s.canary}`, true);
      this.setPhase(r, 'Finalising');
      return;
    }
    // The deadline and the rollback hooks apply to every running phase.
    const deadlineMs = (spec.progressDeadlineSeconds ?? 600) * 1000;
    if (s.lastProgressTime && Date.now() - Date.parse(s.lastProgressTime) > deadlineMs) {
      this.event(r, 'Warning', 'Synced', `Canary ${this.label(r)} progress deadline exceeded (${spec.progressDeadlineSeconds ?? 600}s without progress)`);
      await this.rollback(r, 'progress deadline exceeded');
      return;
    }
    for (const h of this.hooks(r, 'rollback')) {
      const res = await this.hook(r, h);
      if (res.ok) { await this.rollback(r, `rollback hook ${h.name} answered ${res.detail}`); return; }
    }
    if (s.phase === 'Waiting') return;
    if (spec.skipAnalysis) { await this.promote(r, 'analysis skipped'); return; }
    if (!s.preRolloutPassed) {
      const bad = await this.gate(r, 'pre-rollout');
      if (bad) { await this.fail(r, `Halt advancement ${this.label(r)} pre-rollout check ${bad.name} failed: ${bad.detail}`); return; }
      s.preRolloutPassed = true;
      if (this.hooks(r, 'pre-rollout').length) this.event(r, 'Normal', 'Synced', `Pre-rollout check passed for ${this.label(r)}`);
    }
    const badRollout = await this.gate(r, 'rollout');
    if (badRollout) { await this.fail(r, `Halt advancement ${this.label(r)} rollout check ${badRollout.name} failed: ${badRollout.detail}`); return; }

    // Canary with mirror: the first interval mirrors (weight 0) and is checked like a step.
    if (st === 'canary' && a.mirror && !s.mirrored && s.canaryWeight === 0) {
      s.mirrored = true;
      this.event(r, 'Normal', 'Synced', `Starting mirroring of ${this.label(r)}: ${a.mirrorWeight ?? 100}% of requests copied to ${s.canary} for one interval (copies are not in the callers' reports: the checks start with the first weighted step)`);
      return;
    }

    // Flagger: no analysis while nothing is routed to the canary (the first step). Flagger also
    // analyses the mirrored interval, from the canary's own (reporter=destination) metrics; the
    // edge reports here are the callers', and a mirrored copy is not a caller's request, so the
    // checks start with the first weighted step (docs/canary.md).
    const noTraffic = st === 'canary' && s.canaryWeight === 0;
    const checks = noTraffic ? [] : await this.checks(r, host);
    if (!noTraffic) s.lastChecks = checks;
    const failed = checks.filter((c) => c.result === 'fail' || c.result === 'error');
    if (failed.length > 0) {
      for (const c of failed.slice(0, -1)) this.event(r, 'Warning', 'Synced', c.message);
      await this.fail(r, failed[failed.length - 1].message);
      return;
    }
    const thin = checks.find((c) => c.result === 'insufficient');
    if (thin) { this.event(r, 'Warning', 'Synced', thin.message); return; }

    s.lastProgressTime = nowIso();
    if (s.phase === 'WaitingPromotion') { await this.confirmPromotion(r); return; }
    if (st === 'canary') {
      const max = maxWeight(r.def);
      if (s.canaryWeight < max) {
        const wait = await this.gate(r, 'confirm-traffic-increase');
        if (wait) { this.event(r, 'Normal', 'Synced', `Halt advancement ${this.label(r)} waiting for traffic increase approval ${wait.name} (${wait.detail})`); return; }
        if (this.hooks(r, 'confirm-traffic-increase').length) r.approved = false; // an approval allows one step
        const w = nextWeight(r.def, s.canaryWeight);
        await this.route(r, w, `weight ${w}`);
        this.event(r, 'Normal', 'Synced', `Advance ${this.label(r)} canary weight ${w}`);
        return;
      }
    } else {
      if (s.iterations === 0) await this.route(r, 0, st === 'ab' ? 'match' : 'iterations');
      s.iterations++;
      this.event(r, 'Normal', 'Synced', `Advance ${this.label(r)} canary iteration ${s.iterations}/${a.iterations}`);
      if (s.iterations < (a.iterations ?? 0)) return;
    }
    await this.confirmPromotion(r);
  }

  private async confirmPromotion(r: Run): Promise<void> {
    const wait = await this.gate(r, 'confirm-promotion');
    if (wait) {
      this.setPhase(r, 'WaitingPromotion');
      this.event(r, 'Normal', 'Synced', `Halt advancement ${this.label(r)} waiting for promotion approval ${wait.name} (${wait.detail})`);
      return;
    }
    if (this.hooks(r, 'confirm-promotion').length) this.event(r, 'Normal', 'Synced', `Confirm-promotion check passed for ${this.label(r)}`);
    await this.promote(r, 'analysis passed');
  }

  private async promote(r: Run, why: string): Promise<void> {
    const s = r.status;
    const step = r.def.spec.analysis?.stepWeightPromotion ?? 0;
    if (step > 0 && strategy(r.def) === 'canary' && s.canaryWeight < 100 && !r.def.spec.skipAnalysis) {
      // Flagger's runPromotionTrafficShift: the rest of the traffic moves by stepWeightPromotion per interval.
      this.setPhase(r, 'Promoting');
      this.event(r, 'Normal', 'Synced', `Promoting ${this.label(r)} (${why}): moving the rest of the traffic to ${s.canary} by ${step}% per interval`);
      return;
    }
    this.setPhase(r, 'Promoting');
    this.event(r, 'Normal', 'Synced', `Promoting ${this.label(r)} (${why}): all routes of the service send to ${s.canary}`);
    await this.route(r, 100, `promote ${s.canary}`, true);
    r.approved = false;
    this.setPhase(r, 'Finalising');
  }

  private async rollback(r: Run, why: string): Promise<void> {
    const s = r.status;
    if (!this.running(r)) return;
    this.event(r, 'Warning', 'Synced', `Rolling back ${this.label(r)} ${why}`);
    await this.route(r, 0, `rollback ${s.canary}`, true);
    const failedVersion = s.canary;
    s.done = [...new Set([...s.done, failedVersion])];
    this.setPhase(r, 'Failed', why);
    this.event(r, 'Warning', 'Synced', `Canary failed! ${this.label(r)}: all traffic to ${s.primary}, ${failedVersion} gets none`);
    r.load.stop();
    r.approved = false;
    for (const h of this.hooks(r, 'post-rollout')) { const res = await this.hook(r, h); if (!res.ok) this.event(r, 'Warning', 'Synced', `Post-rollout hook ${h.name} failed: ${res.detail}`); }
    this.persist();
  }

  // ---- metrics ----------------------------------------------------------------------------

  private async checks(r: Run, host: string): Promise<CheckResult[]> {
    const s = r.status;
    const since = s.startedAt ? Date.parse(s.startedAt) : 0;
    const out: CheckResult[] = [];
    for (const m of r.def.spec.analysis?.metrics ?? []) out.push(await this.check(r, host, m, since));
    return out;
  }

  private async check(r: Run, host: string, m: MetricSpec, since: number): Promise<CheckResult> {
    const s = r.status;
    const ms = durationMs(m.interval ?? '1m');
    const min = m.thresholdRange?.min ?? null;
    const max = m.thresholdRange?.max ?? null;
    const base = { metric: m.name, min, max, at: nowIso() };
    const L = this.label(r);
    if (m.templateRef) {
      const t = this.templates.get(`${m.templateRef.namespace ?? r.def.namespace}/${m.templateRef.name}`);
      if (!t) return { ...base, value: null, samples: 0, needed: 0, result: 'error', message: `Metric template ${m.templateRef.name} not found for ${L}` };
      try {
        const v = await prometheusQuery(t.spec, { name: r.def.name, namespace: r.def.namespace, target: host, canary: s.canary, primary: s.primary, interval: m.interval ?? '1m' });
        if (v === null) return { ...base, value: null, samples: 0, needed: 1, result: 'insufficient', message: `Halt advancement no values found for custom metric: ${m.name} (${L} is probably not receiving traffic)` };
        const bad = (min !== null && v < min) || (max !== null && v > max);
        return { ...base, value: v, samples: 1, needed: 1, result: bad ? 'fail' : 'pass', message: bad ? `Halt ${L} advancement ${m.name} ${v} ${min !== null && v < min ? `< ${min}` : `> ${max}`}` : `${m.name} ${v}` };
      } catch (e) {
        return { ...base, value: null, samples: 0, needed: 1, result: 'error', message: `Metric query failed for ${m.name}: ${(e as Error).message}` };
      }
    }
    const needed = m.minSamples ?? 20;
    const w: Window = this.metrics.window(host, s.canary, ms, since);
    if (w.requests < needed) {
      return { ...base, value: null, samples: w.requests, needed, result: 'insufficient',
        message: `Halt advancement ${L}: insufficient samples for ${m.name}: ${w.requests} request(s) to ${s.canary} in the last ${m.interval ?? '1m'}, ${needed} needed (not receiving enough traffic; a meshlet:load rollout webhook can supply it)` };
    }
    const isRate = m.name === 'request-success-rate';
    const v = isRate ? Math.round(successRate(w) * 100) / 100 : p99(w);
    if (m.relative && (m.relative.maxDecrease !== undefined || m.relative.maxIncreasePercent !== undefined)) {
      // The sequential test reads everything since the run started (its looks are accounted for).
      const rel = relativeCheck(m, this.metrics.window(host, s.canary, Infinity, since), this.metrics.window(host, s.primary, Infinity, since));
      if (rel.result !== 'pass') return { ...base, value: v, samples: w.requests, needed, result: rel.result, message: `${rel.result === 'fail' ? `Halt ${L} advancement` : `Halt advancement ${L}: undecided`} ${rel.message}` };
    }
    const low = min !== null && v < min;
    const high = max !== null && v > max;
    const unit = isRate ? '%' : 'ms';
    const what = isRate ? 'success rate' : 'request duration (p99)';
    if (low || high) return { ...base, value: v, samples: w.requests, needed, result: 'fail', message: `Halt ${L} advancement ${what} ${v}${unit} ${low ? `< ${min}` : `> ${max}`}${unit} (${w.requests} requests)` };
    return { ...base, value: v, samples: w.requests, needed, result: 'pass', message: `${what} ${v}${unit} (${w.requests} requests)` };
  }

  // ---- fast rollback ----------------------------------------------------------------------

  private onReport(keys: string[]): void {
    if (!this.state.canWrite()) return;
    const snap = this.snapshot();
    if (!snap) return;
    for (const r of this.runs.values()) {
      const s = r.status;
      if (!(s.phase === 'Progressing' || s.phase === 'WaitingPromotion') || !s.canary) continue;
      const svc = this.service(r, snap);
      if (!svc || !keys.includes(VersionMetrics.key(svc.host, s.canary))) continue;
      const fr = r.def.spec.analysis?.fastRollback ?? {};
      const below = fr.successRateBelow ?? 50;
      // The last few seconds since the latest weight change: the reports that just came in.
      const lastChange = Date.parse(r.weights[r.weights.length - 1]?.time ?? s.startedAt ?? nowIso());
      const w = this.metrics.window(svc.host, s.canary, 3000, lastChange);
      let why: string | null = null;
      if ((fr.onEjection ?? true) && w.ejected) why = `fast rollback: every endpoint of ${s.canary} is ejected by outlier detection`;
      else if (below > 0 && w.requests >= (fr.minRequests ?? 10) && successRate(w) < below) {
        why = `fast rollback: success rate of ${s.canary} ${Math.round(successRate(w) * 10) / 10}% < ${below}% over the last ${w.requests} requests`;
      }
      if (why) { const reason = why; this.enqueue(r, async () => { if (this.running(r)) await this.rollback(r, reason); }); }
    }
  }
}
