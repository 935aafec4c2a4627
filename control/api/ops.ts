// Ops API edits (weights, promote, remove-version, rollback) expressed as VirtualService overrides
// in the ops file. Each function returns the new set of overrides; the caller renders the file,
// runs it through the full build (the same validation as any edit) and only then writes it.
import type { Resource } from '../../proxy/config/resources.ts';
import type { Snapshot } from '../../proxy/config/schema.ts';
import { ANN, rawDocs, resKey, specHash, type Override, type Raw } from '../build.ts';
import type { DirFiles } from '../sources/dir.ts';
import { HttpError } from '../http.ts';

const HISTORY_MAX = 20;

export interface OpsContext {
  snapshot: Snapshot;
  resources: Resource[];               // effective resources of the last good build
  overrides: Map<string, Override>;
  files: DirFiles;                     // texts of the last good build
  warnings?: string[];                 // things the change did not do that the operator should know
}

function clone<T>(v: T): T { return structuredClone(v); }

/** The canonical host for any of its names, or a 404 naming the known hosts. */
export function canonicalHost(ctx: OpsContext, host: string): Snapshot['services'][number] {
  const h = host.toLowerCase();
  const s = ctx.snapshot.services.find((x) => x.aliases.includes(h));
  if (!s) throw new HttpError(404, `unknown host "${host}" (known: ${ctx.snapshot.services.map((x) => x.host).join(', ') || 'none'})`);
  return s;
}

/** The override for `host`, creating one from the directory's VirtualService (or a new one). */
function overrideFor(ctx: OpsContext, svc: Snapshot['services'][number]): Override {
  const existing = ctx.overrides.get(svc.host);
  if (existing) return { ...existing, raw: clone(existing.raw), history: [...existing.history], removed: [...existing.removed] };
  const base = ctx.resources.find((r): r is Extract<Resource, { kind: 'VirtualService' }> =>
    r.kind === 'VirtualService' && r.spec.hosts!.some((h) => svc.aliases.includes(h.toLowerCase())));
  if (base) {
    const file = base.file.replace(/ \(document \d+\)$/, '');
    const text = ctx.files.get(file);
    const raw = text === undefined ? undefined : rawDocs(text).find((d) =>
      d.kind === 'VirtualService' && d.metadata?.name === base.name && (d.metadata?.namespace ?? 'default') === base.namespace);
    if (!raw) throw new HttpError(500, `cannot find VirtualService ${resKey(base)} in ${file}`);
    const copy = clone(raw);
    copy.metadata = { ...copy.metadata, annotations: { ...(copy.metadata.annotations ?? {}) } };
    return { host: svc.host, overrides: resKey(base), baseHash: specHash(base.spec), removed: [], history: [], raw: copy };
  }
  // No VirtualService routes the host yet: start from what default routing does (all to the
  // subset-less cluster), so the first rollback returns to exactly that.
  const raw: Raw = {
    apiVersion: 'networking.istio.io/v1', kind: 'VirtualService',
    metadata: { name: `ops-${svc.host.replace(/[^a-z0-9-]/g, '-')}`, namespace: 'default', annotations: {} },
    spec: { hosts: [svc.host], http: [{ name: 'default', route: [{ destination: { host: svc.host } }] }] },
  };
  return { host: svc.host, overrides: '', baseHash: '', removed: [], history: [], raw };
}

function routesOf(o: Override): Raw[] {
  const http = o.raw.spec?.http;
  if (!Array.isArray(http)) throw new HttpError(409, `VirtualService ${o.raw.metadata?.name} has no spec.http routes`);
  return http;
}

function goesTo(route: Raw, aliases: string[]): boolean {
  const dests = route.route;
  return Array.isArray(dests) && dests.length > 0 && dests.every((d: Raw) => aliases.includes(String(d?.destination?.host ?? '').toLowerCase()));
}

/** The routes a weight change applies to: the catch-all routes to the host, else all its routes. */
function weightedRoutes(o: Override, svc: Snapshot['services'][number]): Raw[] {
  const mine = routesOf(o).filter((r) => goesTo(r, svc.aliases));
  const catchAll = mine.filter((r) => !Array.isArray(r.match) || r.match.length === 0);
  const out = catchAll.length > 0 ? catchAll : mine;
  if (out.length === 0) throw new HttpError(409, `VirtualService ${o.raw.metadata?.name} has no route that sends only to ${svc.host}`);
  return out;
}

function remember(o: Override): void {
  o.history.push({ http: clone(routesOf(o)), removed: [...o.removed] });
  if (o.history.length > HISTORY_MAX) o.history.splice(0, o.history.length - HISTORY_MAX);
}

function stamp(o: Override): Override {
  o.raw.metadata.annotations = { ...(o.raw.metadata.annotations ?? {}), [ANN.updated]: new Date().toISOString() };
  return o;
}

export function setWeights(ctx: OpsContext, host: string, weights: Record<string, number>): Override {
  const svc = canonicalHost(ctx, host);
  const entries = Object.entries(weights);
  if (entries.length === 0) throw new HttpError(400, 'give at least one <subset>=<weight>');
  for (const [s, w] of entries) {
    if (!svc.subsets.includes(s)) throw new HttpError(400, `host ${svc.host} has no subset "${s}" (subsets: ${svc.subsets.join(', ') || 'none; define them in a DestinationRule'})`);
    if (!Number.isInteger(w) || w < 0 || w > 100) throw new HttpError(400, `weight of ${s} must be an integer 0..100, got ${w}`);
  }
  const o = overrideFor(ctx, svc);
  remember(o);
  for (const route of weightedRoutes(o, svc)) {
    const port = route.route.find((d: Raw) => d?.destination?.port)?.destination?.port;
    route.route = entries.map(([subset, weight]) => ({
      destination: { host: route.route[0].destination.host, subset, ...(port ? { port: clone(port) } : {}) }, weight,
    }));
  }
  // Sending traffic to a subset again undoes its removal.
  o.removed = o.removed.filter((s) => !(s in weights));
  return stamp(o);
}

const destHost = (d: Raw): string => String(d?.destination?.host ?? '').toLowerCase();
const weightOf = (d: Raw, n: number): number => (typeof d.weight === 'number' ? d.weight : n === 1 ? 100 : 0);

/**
 * End a canary: `subset` takes over all of the host's traffic. Every route of the host's
 * VirtualService that sends to the host — catch-all or matched ("end-user: jason -> v3") — sends
 * that share to `subset` (as Flagger's promotion routes everything to the primary); shares of
 * other hosts in a mixed route keep their weights. Mirrors stay when they copy traffic elsewhere
 * (another host, a shadow subset) and go when they would copy it onto the host's serving
 * versions: the promoted subset itself, the whole host, or a subset this route served before.
 * Routes in other hosts' VirtualServices that still pick another subset of this host are not
 * changed (they belong to that host's owner) but are named in `warnings`.
 */
export function promote(ctx: OpsContext, host: string, subset: string): Override {
  const svc = canonicalHost(ctx, host);
  if (!svc.subsets.includes(subset)) throw new HttpError(400, `host ${svc.host} has no subset "${subset}" (subsets: ${svc.subsets.join(', ') || 'none; define them in a DestinationRule'})`);
  const o = overrideFor(ctx, svc);
  remember(o);
  let moved = 0;
  for (const route of routesOf(o)) {
    const dests: Raw[] = route.route;
    const mine = dests.filter((d) => svc.aliases.includes(destHost(d)));
    if (mine.length === 0) continue;
    moved++;
    const served = new Set(mine.map((d) => String(d.destination.subset ?? '')));
    const share = mine.reduce((a, d) => a + weightOf(d, dests.length), 0);
    const first = mine[0];
    const port = mine.find((d) => d.destination.port)?.destination.port;
    const promoted: Raw = { ...clone(first), destination: { host: first.destination.host, subset, ...(port ? { port: clone(port) } : {}) } };
    delete promoted.weight;
    const others = dests.filter((d) => !mine.includes(d));
    // Alone, the destination takes 100 % (no weight); beside other hosts it keeps their share.
    route.route = others.length === 0 ? [promoted] : dests.flatMap((d) => (d === first ? [{ ...promoted, weight: share }] : mine.includes(d) ? [] : [d]));
    const duplicates = (m: Raw): boolean => svc.aliases.includes(destHost(m)) && [subset, '', ...served].includes(String(m.destination?.subset ?? ''));
    if (route.mirror && duplicates({ destination: route.mirror })) { delete route.mirror; delete route.mirrorPercentage; }
    if (Array.isArray(route.mirrors)) {
      route.mirrors = route.mirrors.filter((m: Raw) => !duplicates(m));
      if (route.mirrors.length === 0) delete route.mirrors;
    }
  }
  if (moved === 0) throw new HttpError(409, `VirtualService ${o.raw.metadata?.name} has no route that sends to ${svc.host}`);
  // Sending traffic to a subset again undoes its removal.
  o.removed = o.removed.filter((s) => s !== subset);

  const own = resKey({ namespace: o.raw.metadata?.namespace ?? 'default', name: o.raw.metadata?.name });
  for (const r of ctx.resources) {
    if (r.kind !== 'VirtualService' || resKey(r) === own || resKey(r) === o.overrides) continue;
    (r.spec.http ?? []).forEach((h, i) => {
      const left = [...new Set((h.route ?? []).filter((d) => svc.aliases.includes(String(d.destination?.host).toLowerCase()) && (d.destination?.subset ?? '') !== subset).map((d) => d.destination?.subset || '(all)'))];
      if (left.length) (ctx.warnings ??= []).push(`${r.file}: VirtualService/${r.name} spec.http[${i}]${h.name ? ` (${h.name})` : ''} still sends to ${svc.host} ${left.join(', ')}: promote changed only the VirtualService of ${svc.host} (edit that route if it should move too)`);
    });
  }
  return stamp(o);
}

/** Largest-remainder rounding of weights scaled to sum to 100. */
function rescale(ws: number[]): number[] {
  const sum = ws.reduce((a, b) => a + b, 0);
  const exact = sum === 0 ? ws.map(() => 100 / ws.length) : ws.map((w) => (w * 100) / sum);
  const out = exact.map(Math.floor);
  let left = 100 - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) { if (left <= 0) break; out[i]++; left--; }
  return out;
}

export function removeVersion(ctx: OpsContext, host: string, subset: string): Override {
  const svc = canonicalHost(ctx, host);
  if (!svc.subsets.includes(subset)) throw new HttpError(400, `host ${svc.host} has no subset "${subset}"`);
  const o = overrideFor(ctx, svc);
  if (o.removed.includes(subset)) throw new HttpError(409, `subset ${subset} of ${svc.host} is already removed`);
  remember(o);
  routesOf(o).forEach((route, i) => {
    if (!Array.isArray(route.route)) return;
    const n = route.route.length;
    const keep = route.route.filter((d: Raw) => !(svc.aliases.includes(String(d?.destination?.host ?? '').toLowerCase()) && d.destination.subset === subset));
    if (keep.length === n) return;
    if (keep.length === 0) throw new HttpError(409, `route ${route.name ?? `spec.http[${i}]`} sends only to ${svc.host} subset ${subset}; promote another subset first`);
    const ws = rescale(keep.map((d: Raw) => (typeof d.weight === 'number' ? d.weight : n === 1 ? 100 : 0)));
    keep.forEach((d: Raw, k: number) => { d.weight = ws[k]; });
    route.route = keep;
  });
  o.removed = [...o.removed, subset];
  return stamp(o);
}

/** Back to the state before the last change; null = the override is gone (the file's routes again). */
export function rollback(ctx: OpsContext, host: string): Override | null {
  const svc = canonicalHost(ctx, host);
  const cur = ctx.overrides.get(svc.host);
  if (!cur || cur.history.length === 0) throw new HttpError(409, `no previous weights for ${svc.host}: the ops API has not changed it (or the file replaced the change)`);
  const o: Override = { ...cur, raw: clone(cur.raw), history: [...cur.history], removed: [...cur.removed] };
  const prev = o.history.pop()!;
  o.raw.spec.http = prev.http;
  o.removed = prev.removed;
  if (o.history.length === 0) return null;
  return stamp(o);
}


/** What a canary run wants the host's routes to be (control/canary/controller.ts). */
export interface CanaryRouting {
  primary: string;
  canary: string;
  weight: number;                       // percent to the canary on the routes of the two versions
  managedPrefix: string;                // routes the run inserted are named <prefix>…; replaced on each call
  match?: Raw[];                        // A/B: these requests go to the canary (a route in front)
  mirrorPercent?: number;               // mirror this share of the primary's traffic onto the canary
  cookie?: { name: string; value: string; maxAge: number; primaryName?: string; primaryValue?: string };
}

/**
 * A canary step: every route of the host's VirtualService that sends only to the primary and/or
 * the canary (a catch-all or a header-matched one, or to all endpoints) gets the split
 * primary = 100 - weight, canary = weight (one destination at 0 or 100); the run's own routes
 * (A/B match, sticky cookies) go in front, named with `managedPrefix`, and are dropped when the
 * call gives none (the end of the run). Routes to other subsets or other hosts are kept.
 */
export function canaryRouting(ctx: OpsContext, host: string, r: CanaryRouting): Override {
  const svc = canonicalHost(ctx, host);
  for (const s of [r.primary, r.canary]) {
    if (!svc.subsets.includes(s)) throw new HttpError(400, `host ${svc.host} has no subset "${s}" (subsets: ${svc.subsets.join(', ') || 'none; define them in a DestinationRule'})`);
  }
  if (!Number.isInteger(r.weight) || r.weight < 0 || r.weight > 100) throw new HttpError(400, `canary weight must be an integer 0..100, got ${r.weight}`);
  const o = overrideFor(ctx, svc);
  remember(o);
  const ours = new Set(['', r.primary, r.canary]);
  const kept = routesOf(o).filter((route) => !String(route.name ?? '').startsWith(r.managedPrefix));
  let moved = 0;
  const dest = (subset: string, port: unknown, extra: Raw = {}): Raw => ({ destination: { host: svc.host, subset, ...(port ? { port: clone(port) } : {}) }, ...extra });
  const cookieHeader = (name: string, value: string) => ({ response: { add: { 'set-cookie': `${name}=${value}; Max-Age=${r.cookie!.maxAge}; Path=/` } } });
  for (const route of kept) {
    const dests: Raw[] = Array.isArray(route.route) ? route.route : [];
    if (dests.length === 0 || !dests.every((d) => svc.aliases.includes(destHost(d)) && ours.has(String(d.destination.subset ?? '')))) continue;
    moved++;
    const port = dests.find((d) => d.destination.port)?.destination.port;
    const p = dest(r.primary, port, r.cookie?.primaryName ? { headers: cookieHeader(r.cookie.primaryName, r.cookie.primaryValue!) } : {});
    const c = dest(r.canary, port, r.cookie ? { headers: cookieHeader(r.cookie.name, r.cookie.value) } : {});
    // Cookies are handed out only while traffic is split: pinning everyone to the primary at 0 % would starve the canary.
    route.route = r.weight === 0 ? [dest(r.primary, port)] : r.weight === 100 ? [c] : [{ ...p, weight: 100 - r.weight }, { ...c, weight: r.weight }];
    const onCanary = (m: Raw | undefined) => m && svc.aliases.includes(String(m.host ?? '').toLowerCase()) && ours.has(String(m.subset ?? ''));
    if (onCanary(route.mirror)) { delete route.mirror; delete route.mirrorPercentage; }
    if (r.mirrorPercent && r.weight < 100 && !route.mirror && !route.mirrors) {
      route.mirror = { host: svc.host, subset: r.canary };
      route.mirrorPercentage = { value: r.mirrorPercent };
    }
  }
  if (moved === 0) throw new HttpError(409, `VirtualService ${o.raw.metadata?.name} has no route that sends only to ${svc.host} ${r.primary}/${r.canary}`);
  const front: Raw[] = [];
  const only = (subset: string): Raw[] => [dest(subset, undefined)];
  const cookieMatch = (name: string, value: string) => [{ headers: { cookie: { regex: `.*\\b${name}=${value}\\b.*` } } }];
  if (r.cookie) {
    front.push({ name: `${r.managedPrefix}sticky-canary`, match: cookieMatch(r.cookie.name, r.cookie.value), route: only(r.canary) });
    if (r.cookie.primaryName) front.push({ name: `${r.managedPrefix}sticky-primary`, match: cookieMatch(r.cookie.primaryName, r.cookie.primaryValue!), route: only(r.primary) });
  }
  if (r.match?.length) front.push({ name: `${r.managedPrefix}match`, match: clone(r.match), route: only(r.canary) });
  o.raw.spec.http = [...front, ...kept];
  o.removed = o.removed.filter((s) => s !== r.primary && s !== r.canary);
  return stamp(o);
}
