// The control server's state: the last good build, its version, what was rejected and why,
// ops overrides and the notices about them. Every input (directory change, registration,
// ops API call) ends in `commit`, which bumps the version only when the content hash changed.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, type Resource } from '../proxy/config/resources.ts';
import type { Snapshot } from '../proxy/config/schema.ts';
import { build, OPS_FILE, renderOpsFile, type BuildResult, type Notice, type Override } from './build.ts';
import { HttpError } from './http.ts';
import { Registry } from './registry.ts';
import type { DirFiles } from './sources/dir.ts';
import type { OpsContext } from './api/ops.ts';

export interface Rejection { at: string; trigger: string; errors: string[] }

const keep = <T>(list: T[], item: T, max: number) => { list.push(item); if (list.length > max) list.splice(0, list.length - max); };

export class ControlState {
  readonly dir: string;
  readonly opsPath: string;
  readonly registry: Registry;
  private readonly log: Logger;
  private readonly onSnapshot: (s: Snapshot) => void;
  private files: DirFiles = new Map();
  private cur: (BuildResult & { appliedAt: Date }) | null = null;
  private lastError: Rejection | null = null;
  private readonly rejected: Rejection[] = [];
  private readonly notices: Notice[] = [];
  private seq = 0;
  private registryTimer: NodeJS.Timeout | null = null;
  // Resources from the Kubernetes source (control/kubernetes), combined with the directory's.
  private external: Resource[] = [];
  private kubernetes = false;
  private get source(): string { return `dir:${this.dir}${this.kubernetes ? '+kubernetes' : ''}`; }

  constructor(opts: { dir: string; log: Logger; endpointTtlMs: number; onSnapshot: (s: Snapshot) => void }) {
    this.dir = opts.dir;
    this.opsPath = join(opts.dir, OPS_FILE);
    this.log = opts.log;
    this.onSnapshot = opts.onSnapshot;
    // Registrations arrive in bursts (a rollout); coalesce them into one version.
    this.registry = new Registry(opts.endpointTtlMs, (why) => {
      this.log.info({ why }, 'endpoints changed');
      if (this.registryTimer) return;
      this.registryTimer = setTimeout(() => { this.registryTimer = null; this.rebuild('endpoints'); }, 25);
    });
  }

  current(): (BuildResult & { appliedAt: Date }) | null { return this.cur; }

  /** The rejection of the latest directory read, or null when it was valid. */
  lastRejection(): Rejection | null { return this.lastError; }

  /** Version strings are decimal and increase across restarts too (seeded from the clock). */
  private nextVersion(): string {
    this.seq = Math.max(this.seq + 1, Date.now());
    return String(this.seq);
  }

  private commit(result: BuildResult, files: DirFiles, trigger: string): void {
    this.files = files;
    for (const n of result.notices) { keep(this.notices, n, 50); this.log.warn({ host: n.host }, n.message); }
    if (result.opsText !== null) this.writeOps(result.opsText);
    const prev = this.cur;
    if (prev && prev.snapshot.hash === result.snapshot.hash) {
      this.cur = { ...result, snapshot: prev.snapshot, appliedAt: prev.appliedAt };
      // Every directory read leaves a line, also when it changes nothing (a comment, a revert).
      if (trigger === 'directory') this.log.info({ version: prev.snapshot.version, hash: prev.snapshot.hash, trigger }, 'config read: unchanged');
      return;
    }
    const snapshot = { ...result.snapshot, version: this.nextVersion() };
    this.cur = { ...result, snapshot, appliedAt: new Date() };
    this.log.info({ version: snapshot.version, hash: snapshot.hash, trigger, clusters: snapshot.clusters.length }, 'snapshot published');
    this.onSnapshot(snapshot);
  }

  private reject(trigger: string, e: unknown): Rejection {
    const errors = e instanceof ConfigError ? e.errors : [(e as Error).message];
    const r = { at: new Date().toISOString(), trigger, errors };
    keep(this.rejected, r, 20);
    // Say what is served instead: after a restart with an invalid directory there is no last good
    // snapshot here (proxies keep running their own last good config, but a new proxy gets none).
    if (this.cur) this.log.error({ trigger, errors, serving: this.cur.snapshot.version }, 'config rejected; the last good snapshot stays served');
    else this.log.error({ trigger, errors }, 'config rejected; no valid config yet: nothing is served (connected proxies keep their own last good config, new ones stay not ready)');
    return r;
  }

  /** A new read of the config directory. */
  fromDir(files: DirFiles, trigger = 'directory'): void {
    try {
      const result = build(files, this.registry.list(), this.source, new Date(), this.external);
      if (this.lastError) this.log.info({ trigger, rejected_at: this.lastError.at }, 'config valid again; the rejection is cleared');
      this.lastError = null;
      if (result.opsText !== null) files = new Map(files).set(this.opsPath, result.opsText);
      this.commit(result, files, trigger);
    } catch (e) {
      this.lastError = this.reject(trigger, e);
    }
  }

  /**
   * The Kubernetes source's resources changed (Services/EndpointSlices/Pods, custom resources):
   * rebuild with the last good directory contents. Built even before the directory is valid, so
   * endpoints are served whatever state the git directory is in.
   */
  /** Set the Kubernetes resources without building (the startup directory read builds them). */
  useKubernetes(resources: Resource[]): void { this.kubernetes = true; this.external = resources; }

  fromKubernetes(resources: Resource[], trigger = 'kubernetes'): void {
    this.kubernetes = true;
    this.external = resources;
    try {
      this.commit(build(this.files, this.registry.list(), this.source, new Date(), this.external), this.files, trigger);
    } catch (e) {
      this.reject(trigger, e);
    }
  }

  /** Endpoints changed: rebuild from the last good directory contents. */
  rebuild(trigger: string): void {
    if (!this.cur) return;
    try {
      this.commit(build(this.files, this.registry.list(), this.source, new Date(), this.external), this.files, trigger);
    } catch (e) {
      this.reject(trigger, e);
    }
  }

  private writeOps(text: string): void {
    // Write-then-rename: the watcher (ours, or a proxy's --watch) never sees half a file. The
    // temporary name is hidden, which config readers skip.
    const tmp = join(this.dir, `.${OPS_FILE}.${process.pid}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, this.opsPath);
  }

  // Several control replicas (Kubernetes): only the Lease holder writes ops changes.
  private writerGate: (() => { ok: boolean; holder: string | null }) | null = null;
  setWriterGate(gate: () => { ok: boolean; holder: string | null }): void { this.writerGate = gate; }
  /** Whether this replica may write ops changes now (no gate = a single replica: yes). */
  canWrite(): boolean { const g = this.writerGate?.(); return !g || g.ok; }
  // Custom resources the Kubernetes source rejected (shown by /v1/config and `ctl get config`).
  private externalRejections: (() => unknown[]) | null = null;
  setExternalRejections(fn: () => unknown[]): void { this.externalRejections = fn; }

  /** Run an ops edit: validate the resulting ops file with the full build, then write it. */
  async applyOps(host: string, what: string, edit: (ctx: OpsContext) => Override | null): Promise<unknown> {
    const g = this.writerGate?.();
    if (g && !g.ok) throw new HttpError(503, `this replica does not hold the writer Lease (holder: ${g.holder ?? 'none yet'}); ops changes are made by the holder only: retry, or reach that replica`);
    const cur = this.cur;
    if (!cur) throw new HttpError(409, `no valid config yet: ${this.lastError?.errors.join('; ') ?? 'directory not read'}`);
    const ctx: OpsContext = { snapshot: cur.snapshot, resources: cur.resources, overrides: cur.overrides, files: this.files };
    const next = edit(ctx);
    const canonical = ctx.snapshot.services.find((s) => s.aliases.includes(host.toLowerCase()))!.host;
    const overrides = new Map(cur.overrides);
    if (next) overrides.set(canonical, next); else overrides.delete(canonical);
    const text = renderOpsFile(overrides.values());
    const files = new Map(this.files).set(this.opsPath, text);
    let result: BuildResult;
    try {
      result = build(files, this.registry.list(), this.source, new Date(), this.external);
    } catch (e) {
      const r = this.reject(`api: ${what}`, e);
      throw Object.assign(new HttpError(400, `rejected: ${r.errors.join('; ')}`), { errors: r.errors });
    }
    this.writeOps(text);
    this.commit(result, files, `api: ${what}`);
    this.log.info({ change: what, file: this.opsPath, version: this.cur!.snapshot.version }, 'ops change written');
    return {
      change: what, version: this.cur!.snapshot.version, hash: this.cur!.snapshot.hash, file: this.opsPath, routing: routing(this.cur!.snapshot, canonical),
      ...(ctx.warnings?.length ? { warnings: ctx.warnings } : {}),
    };
  }

  /** What the server serves, in words (shared by /v1/config, /ready and `ctl get config`). */
  serving(): { serving: boolean; status: string } {
    const c = this.cur;
    if (!c) {
      return { serving: false, status: this.lastError
        ? 'NO VALID CONFIG: the directory was rejected and there is no last good snapshot to serve; connected proxies keep their own last good config, new proxies stay not ready'
        : 'NO CONFIG: the directory has not been read yet' };
    }
    return { serving: true, status: this.lastError
      ? `SERVING LAST GOOD ${c.snapshot.version}: the latest edit was rejected`
      : `SERVING ${c.snapshot.version}` };
  }

  describe(withSnapshot: boolean): unknown {
    const c = this.cur;
    return {
      ...this.serving(),
      dir: this.dir, ops_file: this.opsPath,
      version: c?.snapshot.version ?? null, hash: c?.snapshot.hash ?? null, source: c?.snapshot.source ?? null,
      applied_at: c?.appliedAt.toISOString() ?? null,
      last_error: this.lastError, rejected: this.rejected, notices: this.notices,
      overrides: [...(c?.overrides.values() ?? [])].map((o) => ({ host: o.host, overrides: o.overrides || null, removed_subsets: o.removed, rollback_depth: o.history.length })),
      routing: c ? routing(c.snapshot) : [],
      endpoints: this.registry.list().length,
      ...(this.externalRejections ? { kubernetes_rejected: this.externalRejections() } : {}),
      ...(withSnapshot ? { snapshot: c?.snapshot ?? null } : {}),
    };
  }

  close(): void {
    this.registry.close();
    if (this.registryTimer) clearTimeout(this.registryTimer);
  }
}

/** Per host: each route's split, e.g. {route: 'default', split: {v1: 20, v2: 80}}. */
export function routing(s: Snapshot, only?: string): Array<{ host: string; vhost: string; routes: Array<{ route: string; split: Record<string, number> }> }> {
  return s.virtualHosts.filter((v) => !only || v.service === only).map((v) => ({
    host: v.service, vhost: v.name,
    routes: v.routes.map((r) => ({ route: r.name, split: Object.fromEntries(r.destinations.map((d) => [`${d.host === v.service ? '' : `${d.host}/`}${d.subset || '(all)'}`, d.weight])) })),
  }));
}
