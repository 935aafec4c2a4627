// Where Canary resources come from. The controller takes lists per origin (`feed`): the config
// directory (YAML files, like every other kind, parsed here), the ops API (which writes a file into
// the directory, so it is the directory's too), and — at merge — Kubernetes (API-server watching
// lives with the k8s source; it calls `feed('kubernetes', …)` with what it parsed via parseCanary).
import { Compile } from 'typebox/compile';
import type { Static } from 'typebox';
import { parseAllDocuments } from 'yaml';
import { CANARY_SCHEMAS, type analysisSpec, type canarySpec, type metricTemplateSpec } from './schema.ts';
import type { DirFiles } from '../sources/dir.ts';

export type CanarySpec = Static<typeof canarySpec>;
export type AnalysisSpec = Static<typeof analysisSpec>;
export type MetricSpec = NonNullable<AnalysisSpec['metrics']>[number];
export type WebhookSpec = NonNullable<AnalysisSpec['webhooks']>[number];
export type MetricTemplateSpec = Static<typeof metricTemplateSpec>;

export interface CanaryDef { name: string; namespace: string; origin: string; file: string; spec: CanarySpec }
export interface TemplateDef { name: string; namespace: string; spec: MetricTemplateSpec }

/** What a source hands the controller: the canaries and templates it knows, and its errors. */
export interface CanaryFeed { canaries: CanaryDef[]; templates: TemplateDef[]; errors: string[] }

/** The small interface a source needs: replace everything from `origin` with `feed`. */
export interface CanarySink { feed(origin: string, feed: CanaryFeed): void }

let compiled: { canary: ReturnType<typeof Compile>; template: ReturnType<typeof Compile> } | null = null;
const checks = () => (compiled ??= { canary: Compile(CANARY_SCHEMAS.Canary), template: Compile(CANARY_SCHEMAS.MetricTemplate) });

const path = (p: string) => p.split('/').slice(1).map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`)).join('').replace(/^\./, '');

/** One parsed document (any origin) -> a Canary or MetricTemplate, or errors naming the field. */
export function parseCanary(where: string, v: Record<string, any>, origin: string, out: CanaryFeed): void {
  const kind = v.kind as string;
  const c = kind === 'Canary' ? checks().canary : checks().template;
  const label = `${where}: ${kind}/${v.metadata?.name ?? '<no name>'}`;
  if (!c.Check(v)) {
    const seen = new Set<string>();
    for (const e of c.Errors(v) as Iterable<{ instancePath: string; message: string; params?: { additionalProperties?: string[] } }>) {
      if (e.message === 'schema is false') continue; // the additionalProperties error below names it
      const extra = e.params?.additionalProperties;
      const msg = `${path(e.instancePath) || '(document)'}: ${extra ? `unknown field(s) ${extra.join(', ')}` : e.message}`;
      if (!seen.has(msg)) { seen.add(msg); out.errors.push(`${label}: ${msg}`); }
      if (seen.size >= 20) break;
    }
    return;
  }
  const ns = v.metadata.namespace ?? 'default';
  if (kind === 'Canary') {
    const a = v.spec.analysis ?? {};
    if (a.stepWeights && a.stepWeights.some((w: number, i: number) => i > 0 && w <= a.stepWeights[i - 1])) { out.errors.push(`${label}: spec.analysis.stepWeights: must increase`); return; }
    for (const [i, m] of (a.metrics ?? []).entries()) {
      if (!m.templateRef && m.name !== 'request-success-rate' && m.name !== 'request-duration') { out.errors.push(`${label}: spec.analysis.metrics[${i}].name: "${m.name}" is not built in (request-success-rate, request-duration): give a templateRef`); return; }
    }
    out.canaries.push({ name: v.metadata.name, namespace: ns, origin, file: where, spec: v.spec });
  } else out.templates.push({ name: v.metadata.name, namespace: ns, spec: v.spec });
}

/** The Canary and MetricTemplate documents of the directory's YAML files (other kinds are the build's). */
export function fromDirFiles(files: DirFiles): CanaryFeed {
  const out: CanaryFeed = { canaries: [], templates: [], errors: [] };
  for (const [file, text] of [...files].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (!/\bkind:\s*["']?(Canary|MetricTemplate)\b/.test(text)) continue; // cheap: most files hold none
    let docs;
    try { docs = parseAllDocuments(text); } catch { continue; } // YAML errors are reported by the build
    const list = Array.isArray(docs) ? docs : [docs];
    list.forEach((d, i) => {
      if (d.errors.length) return;
      const v = d.toJS();
      if (!v || typeof v !== 'object' || (v.kind !== 'Canary' && v.kind !== 'MetricTemplate')) return;
      parseCanary(list.length > 1 ? `${file} (document ${i + 1})` : file, v, 'directory', out);
    });
  }
  const seen = new Set<string>();
  out.canaries = out.canaries.filter((c) => {
    const k = `${c.namespace}/${c.name}`;
    if (seen.has(k)) { out.errors.push(`${c.file}: Canary/${c.name}: defined twice (the first one is used)`); return false; }
    seen.add(k);
    return true;
  });
  return out;
}
