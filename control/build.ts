// Directory files + ops overrides + registered endpoints -> one Snapshot, through the proxy's own
// parser and compiler (proxy/config), so control and proxy accept exactly the same resources.
//
// The ops overrides file (OPS_FILE) holds VirtualServices written by the ops API. An override
// replaces the directory's VirtualService of the same namespace/name, but only while that
// VirtualService is unchanged since the override was made (its spec hash is recorded in an
// annotation). When the directory changes underneath, the file wins: the override is dropped,
// a notice says so, and the caller rewrites the ops file without it.
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { parseAllDocuments, stringify as yamlStringify } from 'yaml';
import { compile, hostAliases } from '../proxy/config/compile.ts';
import { ConfigError, parseResourceText, type Resource } from '../proxy/config/resources.ts';
import type { Snapshot } from '../proxy/config/schema.ts';
import type { RegisteredEndpoint } from './registry.ts';
import type { DirFiles } from './sources/dir.ts';

export const OPS_FILE = 'zz-meshlet-ops.yaml';

export const ANN = {
  managed: 'meshlet.io/ops-managed',          // "true": written by the ops API
  host: 'meshlet.io/ops-host',                // canonical host the override is about
  overrides: 'meshlet.io/ops-overrides',      // "<namespace>/<name>" of the directory's VirtualService, or ""
  baseHash: 'meshlet.io/ops-base-hash',       // spec hash of that VirtualService when overridden
  removed: 'meshlet.io/ops-removed-subsets',  // comma-separated subsets whose endpoints are drained
  history: 'meshlet.io/ops-history',          // JSON: previous [{http, removed}] states for rollback
  updated: 'meshlet.io/ops-updated-at',
} as const;

/** A raw (as written, not validated) resource object. */
export type Raw = Record<string, any>;

export interface Override {
  host: string;
  overrides: string;                   // "" when the API created the VirtualService
  baseHash: string;
  removed: string[];
  history: Array<{ http: unknown[]; removed: string[] }>;
  raw: Raw;                            // the full VirtualService as it is written to the file
}

export interface Notice { at: string; host: string; message: string }

export interface BuildResult {
  snapshot: Snapshot;                  // version '' until the caller assigns one
  resources: Resource[];               // the effective resources (after overrides)
  overrides: Map<string, Override>;    // canonical host -> override in force
  notices: Notice[];                   // overrides dropped because the directory changed
  opsText: string | null;              // new ops file text when overrides were dropped, else null
}

export function specHash(spec: unknown): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
}

// Parsing is the expensive part and most rebuilds (registrations, heartbeats) see the same texts.
const parseCache = new Map<string, { text: string; resources: Resource[]; errors: string[] }>();
function parseCached(file: string, text: string): { resources: Resource[]; errors: string[] } {
  const hit = parseCache.get(file);
  if (hit && hit.text === text) return hit;
  const errors: string[] = [];
  const resources = parseResourceText(file, text, errors);
  const entry = { text, resources, errors };
  if (parseCache.size > 1000) parseCache.clear();
  parseCache.set(file, entry);
  return entry;
}

export function isOpsFile(path: string): boolean { return basename(path) === OPS_FILE; }

/** The raw documents of a YAML text (used to copy a VirtualService exactly as written). */
export function rawDocs(text: string): Raw[] {
  return parseAllDocuments(text).map((d) => d.toJS() as Raw).filter((d) => d !== null && typeof d === 'object');
}

export function readOverrides(opsPath: string, text: string, errors: string[]): Override[] {
  const out: Override[] = [];
  let docs: Raw[];
  try { docs = rawDocs(text); } catch { return out; } // YAML errors were reported by parseResourceText
  docs.forEach((raw, i) => {
    const where = `${opsPath}${docs.length > 1 ? ` (document ${i + 1})` : ''}: ${raw.kind}/${raw.metadata?.name}`;
    const ann = (raw.metadata?.annotations ?? {}) as Record<string, string>;
    if (raw.kind !== 'VirtualService' || ann[ANN.managed] !== 'true') {
      errors.push(`${where}: only VirtualServices written by the ops API (annotation ${ANN.managed}: "true") belong in ${OPS_FILE}; put other resources in another file`);
      return;
    }
    if (!ann[ANN.host]) { errors.push(`${where}: metadata.annotations.${ANN.host}: is required in ${OPS_FILE}`); return; }
    let history: Override['history'] = [];
    if (ann[ANN.history]) {
      try {
        const h = JSON.parse(ann[ANN.history]);
        if (!Array.isArray(h) || h.some((x) => !x || !Array.isArray(x.http) || !Array.isArray(x.removed))) throw new Error('expected a list of {http, removed}');
        history = h;
      } catch (e) {
        errors.push(`${where}: metadata.annotations.${ANN.history}: invalid: ${(e as Error).message}`);
        return;
      }
    }
    out.push({
      host: ann[ANN.host].toLowerCase(), overrides: ann[ANN.overrides] ?? '', baseHash: ann[ANN.baseHash] ?? '',
      removed: (ann[ANN.removed] ?? '').split(',').map((s) => s.trim()).filter(Boolean), history, raw,
    });
  });
  return out;
}

export function renderOpsFile(overrides: Iterable<Override>): string {
  const docs = [...overrides].sort((a, b) => a.host.localeCompare(b.host)).map((o) => {
    const ann = o.raw.metadata.annotations as Record<string, string>;
    ann[ANN.managed] = 'true';
    ann[ANN.host] = o.host;
    ann[ANN.overrides] = o.overrides;
    ann[ANN.baseHash] = o.baseHash;
    if (o.removed.length) ann[ANN.removed] = o.removed.join(','); else delete ann[ANN.removed];
    if (o.history.length) ann[ANN.history] = JSON.stringify(o.history); else delete ann[ANN.history];
    return o.raw;
  });
  const head = '# Written by `meshlet control` for ops API changes (meshlet ctl weights/promote/remove-version/rollback).\n'
    + '# Each VirtualService here replaces the one of the same namespace/name in the other files while that one\n'
    + '# is unchanged; edit the other file and it wins. Safe to commit, edit or delete. See docs/control.md.\n';
  if (docs.length === 0) return `${head}# (no overrides in force)\n`;
  return head + docs.map((d) => stringifyYaml(d)).join('---\n');
}

function stringifyYaml(v: unknown): string { return yamlStringify(v, { lineWidth: 0 }); }

export function resKey(r: { namespace: string; name: string }): string { return `${r.namespace}/${r.name}`; }

/** `external`: resources from another source (Kubernetes), combined with the directory's. */
export function build(files: DirFiles, endpoints: RegisteredEndpoint[], source: string, now = new Date(), external: Resource[] = []): BuildResult {
  const errors: string[] = [];
  const user: Resource[] = [];
  let opsPath: string | null = null;
  let overrides: Override[] = [];
  const opsResources = new Map<string, Resource>();
  // Sorted like listConfigFiles, so the same files always give the same hash whatever the map order.
  for (const [file, text] of [...files].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const parsed = parseCached(file, text);
    errors.push(...parsed.errors);
    if (isOpsFile(file)) {
      opsPath = file;
      for (const r of parsed.resources) opsResources.set(resKey(r), r);
      overrides = readOverrides(file, text, errors);
    } else user.push(...parsed.resources);
  }
  if (errors.length > 0) throw new ConfigError(errors);
  user.push(...external);

  // Which host each user VirtualService routes, to find overrides the directory has overtaken.
  const userVs = user.filter((r): r is Extract<Resource, { kind: 'VirtualService' }> => r.kind === 'VirtualService');
  const aliasesOf = (host: string): string[] => {
    for (const r of user) {
      if (r.kind !== 'ServiceEntry') continue;
      for (const h of r.spec.hosts!) { const a = hostAliases(h); if (a.includes(host)) return a; }
    }
    return [host];
  };
  const notices: Notice[] = [];
  const inForce = new Map<string, Override>();
  const replaced = new Set<string>();
  const effective: Resource[] = [];
  for (const o of overrides) {
    const key = resKey({ namespace: o.raw.metadata?.namespace ?? 'default', name: o.raw.metadata?.name });
    const r = opsResources.get(key);
    if (!r) continue;
    let stale: string | null = null;
    if (o.overrides) {
      const base = userVs.find((v) => resKey(v) === o.overrides);
      if (!base) stale = `VirtualService ${o.overrides} is no longer in the directory`;
      else if (specHash(base.spec) !== o.baseHash) stale = `${base.file} changed VirtualService ${o.overrides} after the ops API overrode it`;
    } else {
      const aliases = aliasesOf(o.host);
      const claim = userVs.find((v) => v.spec.hosts!.some((h) => aliases.includes(h.toLowerCase())));
      if (claim) stale = `${claim.file} now defines VirtualService ${resKey(claim)} for host ${o.host}`;
    }
    if (stale) {
      notices.push({ at: now.toISOString(), host: o.host, message: `${stale}; the file wins: the ops override for ${o.host} was dropped` });
      continue;
    }
    if (o.overrides) replaced.add(o.overrides);
    inForce.set(o.host, o);
    effective.push(r);
  }
  for (const r of user) if (!(r.kind === 'VirtualService' && replaced.has(resKey(r)))) effective.push(r);

  const withEndpoints = addEndpoints(effective, endpoints, inForce);
  const snapshot = compile(withEndpoints, { version: '', source });
  const opsText = notices.length > 0 && opsPath ? renderOpsFile(inForce.values()) : null;
  return { snapshot, resources: effective, overrides: inForce, notices, opsText };
}

/**
 * ServiceEntries with registered sidecar endpoints added and the endpoints of removed subsets
 * (ops `remove-version`) taken out. Resources are copied, never mutated (they are cached).
 */
function addEndpoints(resources: Resource[], endpoints: RegisteredEndpoint[], overrides: Map<string, Override>): Resource[] {
  const subsetLabels = new Map<string, Record<string, string>>(); // "<alias>|<subset>" -> labels
  for (const r of resources) {
    if (r.kind !== 'DestinationRule') continue;
    for (const s of r.spec.subsets ?? []) subsetLabels.set(`${r.spec.host!.toLowerCase()}|${s.name}`, s.labels ?? {});
  }
  if (endpoints.length === 0 && [...overrides.values()].every((o) => o.removed.length === 0)) return resources;
  return resources.map((r) => {
    if (r.kind !== 'ServiceEntry') return r;
    const aliases = r.spec.hosts!.flatMap((h) => hostAliases(h));
    const mine = endpoints.filter((e) => aliases.includes(e.service.toLowerCase()));
    const removedLabels: Array<Record<string, string>> = [];
    for (const a of aliases) {
      const o = overrides.get(a);
      for (const s of o?.removed ?? []) {
        const labels = aliases.map((x) => subsetLabels.get(`${x}|${s}`)).find((l) => l !== undefined);
        if (labels && Object.keys(labels).length > 0) removedLabels.push(labels);
      }
    }
    if (mine.length === 0 && removedLabels.length === 0) return r;
    const portNames = r.spec.ports!.map((p) => p.name!);
    const all = [
      ...(r.spec.endpoints ?? []),
      // A sidecar's inbound listener serves every port of its service.
      // A sidecar with an identity is an mTLS endpoint (Istio's security.istio.io/tlsMode label on its pod).
      ...mine.map((e) => ({
        address: e.address, ports: Object.fromEntries(portNames.map((n) => [n, e.port])),
        labels: e.serviceAccount ? { ...e.labels, 'security.istio.io/tlsMode': 'istio' } : e.labels,
        ...(e.serviceAccount ? { serviceAccount: e.serviceAccount } : {}),
      })),
    ];
    const kept = all.filter((e) => !removedLabels.some((l) => Object.entries(l).every(([k, v]) => (e.labels ?? {})[k] === v)));
    return { ...r, spec: { ...r.spec, endpoints: kept } };
  });
}
