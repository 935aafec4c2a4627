// One schema, one validator: the definitions (proxy/config/*.schema.ts) generate the published
// JSON Schemas and the compiled checks a proxy runs; both must be current, agree with TypeBox's
// own compiler, accept the configs we ship, and leave TypeBox unloaded on the happy path.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { Compile } from 'typebox/compile';
import { generate } from '../../scripts/gen-schema.ts';
import { checks } from '../../proxy/config/checks.generated.ts';
import { Snapshot as SnapshotSchema } from '../../proxy/config/snapshot.schema.ts';
import { RESOURCE_SCHEMAS } from '../../proxy/config/resources.schema.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import { snapshotProblems } from '../../proxy/xds/validate-snapshot.ts';
import { serviceYaml, snapshotFromYaml, writeConfig } from '../helpers.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const KINDS = Object.keys(RESOURCE_SCHEMAS) as Array<keyof typeof RESOURCE_SCHEMAS>;

function exampleDocs(): Array<{ file: string; doc: Record<string, unknown> }> {
  const out: Array<{ file: string; doc: Record<string, unknown> }> = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) {
        for (const d of parseAllDocuments(readFileSync(p, 'utf8'))) {
          const doc = d.toJS() as Record<string, unknown> | null;
          if (doc) out.push({ file: p, doc });
        }
      }
    }
  };
  walk(join(ROOT, 'examples'));
  return out;
}

const SE = serviceYaml('reviews', [9080]);
const vs = (http: string) => `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
${http}`;

function errorsOf(yaml: string): string[] {
  const errors: string[] = [];
  parseResourceText('m.yaml', yaml, errors);
  return errors;
}

describe('generated from the definitions', () => {
  it('docs/schema/*.json and proxy/config/checks.generated.ts are what `npm run schema` writes', () => {
    const files = generate();
    expect([...files.keys()].sort()).toEqual([
      'docs/schema/AuthorizationPolicy.json', 'docs/schema/Canary.json', 'docs/schema/DestinationRule.json', 'docs/schema/Dtab.json',
      'docs/schema/MetricTemplate.json', 'docs/schema/PeerAuthentication.json', 'docs/schema/RequestAuthentication.json', 'docs/schema/ServiceEntry.json',
      'docs/schema/VirtualService.json', 'docs/schema/resource.json', 'docs/schema/snapshot.json',
      'proxy/config/checks.generated.ts',
    ]);
    for (const [path, content] of files) {
      expect(readFileSync(join(ROOT, path), 'utf8'), `${path} is stale: run npm run schema`).toBe(content);
    }
  });

  it('the ahead-of-time checks decide exactly as TypeBox\'s own compiler does', () => {
    const good = snapshotFromYaml(vs('    - match: [{ uri: { regex: "^/r[0-9]+" }, headers: { x-a: { exact: b } } }]\n      route: [{ destination: { host: reviews } }]\n      timeout: 2s\n      retries: { attempts: 2, perTryTimeout: 100ms, retryOn: "5xx,503" }\n      fault: { abort: { httpStatus: 503, percentage: { value: 1 } } }\n      mirror: { host: reviews }\n'));
    const j = () => JSON.parse(JSON.stringify(good));
    const snapshots: unknown[] = [good, null, [], { ...j(), extra: 1 }, { ...j(), clusters: 'x' }];
    const mut = (f: (s: any) => void) => { const s = j(); f(s); snapshots.push(s); };
    mut((s) => { s.clusters[0].lb = 'LEAST_CONN'; });
    mut((s) => { s.clusters[0].port = 70000; });
    mut((s) => { s.clusters[0].outlier = {}; });
    mut((s) => { s.clusters[0].resolution = 'DNS'; });
    mut((s) => { s.clusters[0].endpoints[0].hostname = 'x'; });
    mut((s) => { s.virtualHosts[0].routes[0].retries.retriableStatusCodes = [99]; });
    mut((s) => { s.virtualHosts[0].routes[0].match[0].uri.suffix = 'x'; });
    mut((s) => { s.virtualHosts[0].routes[0].fault.abort.percent = 100.5; });
    mut((s) => { s.services[0].ports[0].number = 1.5; });
    const jit = Compile(SnapshotSchema);
    const verdicts = snapshots.map((s) => checks.Snapshot(s));
    expect(verdicts).toEqual(snapshots.map((s) => jit.Check(s)));
    // good, null, [], extra, clusters, LEAST_CONN, port, outlier {}, DNS, hostname, 99, suffix, 100.5, 1.5
    expect(verdicts).toEqual([true, false, false, false, false, false, false, false, true, false, false, false, false, false]);

    const docs = exampleDocs().map((d) => d.doc);
    const vsDoc = docs.find((d) => d.kind === 'VirtualService')!;
    const bad = (f: (d: any) => void) => { const d = JSON.parse(JSON.stringify(vsDoc)); f(d); return d; };
    const resources = [
      ...docs,
      bad((d) => { d.spec.http[0].retires = {}; }),
      bad((d) => { d.spec.http[0].timeout = '5 seconds'; }),
      bad((d) => { d.spec.http[0].timeout = ' 1m30s '; }),
      bad((d) => { d.spec.http[0].match = [{ uri: { regex: '(' } }]; }),
      bad((d) => { d.spec.http[0].match = [{ uri: { regex: '(?P<v>a)' } }]; }),
      bad((d) => { d.spec.http[0].match = [{ uri: { exact: '/', prefix: '/' } }]; }),
      bad((d) => { d.spec.http[0].match = [{ uri: {} }]; }),
      bad((d) => { d.metadata.name = ''; }),
      bad((d) => { d.metadata.name = '\u{1F600}'; }),
      bad((d) => { d.apiVersion = 'networking.istio.io/v2'; }),
    ];
    const got = resources.map((d) => {
      const kind = d.kind as (typeof KINDS)[number];
      const aot = checks[kind](d);
      expect(aot, JSON.stringify(d).slice(0, 200)).toBe(Compile(RESOURCE_SCHEMAS[kind]).Check(d));
      return aot;
    });
    // every example passes; then: retires, "5 seconds", " 1m30s " (ok), "(", (?P<v>a) (ok: RE2), exact+prefix, {}, "", an emoji name (ok), v2
    expect(got).toEqual([...docs.map(() => true), false, false, true, false, true, false, false, false, true, false]);
  });
});

describe('the published JSON Schemas', () => {
  const load = (name: string) => Compile(JSON.parse(readFileSync(join(ROOT, 'docs/schema', name), 'utf8')));

  it('accept every example config: by kind, and through resource.json for mixed files', () => {
    const any = load('resource.json');
    const byKind = Object.fromEntries(KINDS.map((k) => [k, load(`${k}.json`)]));
    const docs = exampleDocs();
    expect(new Set(docs.map((d) => d.doc.kind))).toEqual(new Set(['ServiceEntry', 'VirtualService', 'DestinationRule', 'AuthorizationPolicy', 'PeerAuthentication']));
    for (const { file, doc } of docs) {
      expect(byKind[doc.kind as string].Check(doc), `${file}: ${JSON.stringify(byKind[doc.kind as string].Errors(doc))}`).toBe(true);
      expect(any.Check(doc), file).toBe(true);
    }
  });

  it('refuse what meshlet refuses, at the same place', () => {
    const any = load('resource.json');
    const doc = { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'r' }, spec: { hosts: ['r'], http: [{ route: [{ destination: { host: 'r' } }], retires: {} }] } };
    expect(any.Check(doc)).toBe(false);
    const errs = load('VirtualService.json').Errors(doc);
    expect(errs.some((e) => e.keyword === 'additionalProperties' && e.instancePath === '/spec/http/0')).toBe(true);
    expect(any.Check({ ...doc, kind: 'Gateway' })).toBe(false);
    expect(load('Dtab.json').Check({ apiVersion: 'meshlet.io/v1alpha1', kind: 'Dtab', metadata: { name: 'd' }, spec: { dtab: '/svc=>/x;' } })).toBe(true);
    const snap = load('snapshot.json');
    expect(snap.Check(snapshotFromYaml(SE))).toBe(true);
    expect(snap.Check({ ...snapshotFromYaml(SE), extra: 1 })).toBe(false);
  });
});

describe('resource checks', () => {
  it('a kind that names an Object.prototype member is an unknown kind, not a crash', () => {
    for (const kind of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      expect(errorsOf(`apiVersion: v1\nkind: ${kind}\nmetadata: { name: x }\nspec: {}\n`)).toEqual([
        `m.yaml: ${kind}/x: kind: unknown kind "${kind}" (known: ServiceEntry, VirtualService, DestinationRule, Dtab, AuthorizationPolicy, PeerAuthentication, RequestAuthentication)`,
      ]);
    }
  });

  it('YAML `field:` with no value is unset; an unknown field is an error whatever its value; a null list item or map value is not "unset"', () => {
    expect(errorsOf(vs('    - route: [{ destination: { host: reviews, subset: } }]\n      timeout:\n      retries:\n'))).toEqual([]);
    expect(errorsOf(vs('    - route: [{ destination: { host: reviews } }]\n      retires:\n'))).toEqual([
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].retires: unknown field (known: name, match, route, rewrite, timeout, retries, fault, mirror, mirrorPercentage, mirrors, headers, upgradeConfigs, idleTimeout)',
    ]);
    expect(errorsOf(vs('    - route: [{ destination: { host: } }]\n      headers: { request: { set: { x-a: } } }\n'))).toEqual([
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].route[0].destination.host: is required',
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].headers.request.set.x-a: must be a string, got null',
    ]);
    expect(errorsOf(vs('    - route: [{ destination: { host: reviews } }]\n      constructor:\n'))).toEqual([
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].constructor: unknown field (known: name, match, route, rewrite, timeout, retries, fault, mirror, mirrorPercentage, mirrors, headers, upgradeConfigs, idleTimeout)',
    ]);
    expect(errorsOf(vs('    - route: [{ destination: { host: reviews } }]\n      match: [~]\n'))).toEqual([
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].match[0]: must be an object, got null',
    ]);
  });

  it('a misspelt required field is reported as both: the unknown name (with the known ones) and the missing one', () => {
    expect(errorsOf(vs('    - route: [{ destination: { hots: reviews } }]\n'))).toEqual([
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].route[0].destination.host: is required',
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].route[0].destination.hots: unknown field (known: host, subset, port)',
    ]);
  });

  it('every error of a file is reported, not the first 8 (TypeBox\'s default)', () => {
    const routes = Array.from({ length: 30 }, () => '    - route: [{ destination: { host: reviews }, weight: "x" }]\n').join('');
    expect(errorsOf(vs(routes))).toHaveLength(30);
  });

  it('durations: Go syntax, blanks around allowed, the hint names the syntax', () => {
    const snap = snapshotFromYaml(vs('    - route: [{ destination: { host: reviews } }]\n      timeout: " 1m30s "\n      retries: { attempts: 1, perTryTimeout: .5s }\n'));
    const route = snap.virtualHosts.find((v) => v.name === 'default/reviews')!.routes[0];
    expect(route.timeoutMs).toBe(90_000);
    expect(route.retries?.perTryTimeoutMs).toBe(500);
    expect(errorsOf(vs('    - route: [{ destination: { host: reviews } }]\n      timeout: 1.s\n'))).toEqual([
      'm.yaml (document 2): VirtualService/reviews: spec.http[0].timeout: invalid duration "1.s" (use e.g. "1s", "250ms", "1m30s")',
    ]);
  });
});

describe('snapshot checks', () => {
  it('a NACK keeps its wording and caps at 20 problems', () => {
    const s = JSON.parse(JSON.stringify(snapshotFromYaml(SE)));
    s.clusters[0].endpoints[0].hostname = 'db.internal'; // run-time only: never on the wire
    s.virtualHosts[0].routes[0].destinations[0].weight = '100';
    expect(snapshotProblems(s)).toEqual([
      'snapshot.clusters[0].endpoints[0].hostname: unknown field (this proxy does not understand it)',
      'snapshot.virtualHosts[0].routes[0].destinations[0].weight: must be an integer 0..100, got "100"',
    ]);
    const many = JSON.parse(JSON.stringify(snapshotFromYaml(SE)));
    for (let i = 0; i < 40; i++) many.clusters.push({ ...many.clusters[0], port: 0 });
    const p = snapshotProblems(many);
    expect(p).toHaveLength(20);
    expect(p[0]).toBe('snapshot.clusters[1].port: must be an integer 1..65535, got 0');
  });
});

describe('run time', () => {
  it('a proxy loading a valid config and snapshot never loads TypeBox; a bad one loads it once, to say why', () => {
    const file = writeConfig(vs('    - route: [{ destination: { host: reviews } }]\n      timeout: 1s\n'));
    const script = `
      import { registerHooks } from 'node:module';
      const loaded = new Set();
      registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); if (r.url.includes('/node_modules/typebox/')) loaded.add(r.url); return r; } });
      const { loadSnapshot } = await import(${JSON.stringify(join(ROOT, 'proxy/config/load.ts'))});
      const { snapshotProblems } = await import(${JSON.stringify(join(ROOT, 'proxy/xds/validate-snapshot.ts'))});
      await import(${JSON.stringify(join(ROOT, 'proxy/main.ts'))});
      const s = JSON.parse(JSON.stringify(loadSnapshot(${JSON.stringify(file)}, '1')));
      const good = snapshotProblems(s);
      const before = loaded.size;
      const bad = snapshotProblems({ ...s, extra: 1 });
      console.log(JSON.stringify({ good, before, bad, after: loaded.size }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 }));
    expect(out.good).toEqual([]);
    expect(out.before).toBe(0);
    expect(out.bad).toEqual(['snapshot.extra: unknown field (this proxy does not understand it)']);
    expect(out.after).toBeGreaterThan(0);
  });
});
