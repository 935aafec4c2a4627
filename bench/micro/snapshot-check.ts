// Micro-benchmark: the check a proxy runs on every snapshot a control server pushes
// (proxy/xds/validate-snapshot.ts: the Snapshot schema, then references, weights and the
// self-loop check), on a large snapshot: 500 clusters, 500 routes with matches, retries, faults
// and header ops. Also the YAML -> resources parse of the same config (file-fed proxies, control).
// Run: `node bench/micro/snapshot-check.ts`; with MESHLET_BEFORE=<checkout of an earlier meshlet>
// the same snapshot is also checked by that checkout's validator, in the same run.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { compile } from '../../proxy/config/compile.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import type { Snapshot } from '../../proxy/config/schema.ts';

/** ns per call of fn: ~`ms` after a warm-up of the same length. */
function nsPerOp(fn: () => unknown, ms = 600): number {
  const run = (budgetMs: number) => {
    let n = 0;
    const t0 = process.hrtime.bigint();
    let el = 0;
    while (el < budgetMs * 1e6 || n < 3) { fn(); n++; el = Number(process.hrtime.bigint() - t0); }
    return el / n;
  };
  run(ms);
  return run(ms);
}

/** 500 services (one port, two endpoints, a v1 subset: 1000 clusters would be 2 per service; we keep 1) and 50 VirtualServices of 10 routes. */
export function largeYaml(services = 500, routesPerVs = 10): string {
  const docs: string[] = [];
  for (let i = 0; i < services; i++) {
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i} }
spec:
  hosts: [svc-${i}.default.svc.cluster.local]
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 127.0.${i >> 8}.${i & 255}, labels: { version: v1 } }, { address: 127.1.${i >> 8}.${i & 255}, labels: { version: v2 } }]`);
  }
  for (let v = 0; v < services / routesPerVs; v++) {
    const routes: string[] = [];
    for (let r = 0; r < routesPerVs; r++) {
      const host = `svc-${v * routesPerVs + r}`;
      routes.push(`    - name: r${r}
      match: [{ uri: { prefix: /api/${r} }, headers: { x-user: { regex: "^u[0-9]+$" } } }, { queryParams: { v: { exact: "${r}" } } }]
      route: [{ destination: { host: ${host} }, headers: { request: { set: { x-route: r${r} } } } }]
      timeout: 2s
      retries: { attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,reset,503" }
      fault: { delay: { fixedDelay: 10ms, percentage: { value: 0.1 } } }`);
    }
    docs.push(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: vs-${v} }
spec:
  hosts: [vs-${v}.example]
  http:
${routes.join('\n')}`);
  }
  return docs.join('\n---\n') + '\n';
}

type Problems = (v: unknown) => string[];

export async function snapshotCheckMicro(): Promise<string> {
  const yaml = largeYaml();
  const errors: string[] = [];
  const resources = parseResourceText('large.yaml', yaml, errors);
  if (errors.length) throw new Error(errors.join('\n'));
  const snap: Snapshot = compile(resources, { version: '1', source: 'bench' });
  const wire = JSON.stringify(snap);
  const routes = snap.virtualHosts.reduce((a, v) => a + v.routes.length, 0);
  const lines = [`snapshot: ${snap.clusters.length} clusters, ${routes} routes, ${(wire.length / 1024).toFixed(0)} KiB of JSON`];
  const value = JSON.parse(wire) as unknown; // what the control client hands the check
  const arms: Array<[string, string]> = [['after', join(fileURLToPath(import.meta.url), '../../..')]];
  if (process.env.MESHLET_BEFORE) arms.unshift(['before', process.env.MESHLET_BEFORE]);
  for (const [name, root] of arms) {
    const mod = await import(pathToFileURL(join(root, 'proxy/xds/validate-snapshot.ts')).href) as { snapshotProblems: Problems };
    const problems = mod.snapshotProblems(value);
    if (problems.length) throw new Error(`${name}: ${problems.join('\n')}`);
    const ns = nsPerOp(() => mod.snapshotProblems(value));
    lines.push(`${`snapshotProblems (${name}, ${root})`.padEnd(70)} ${(ns / 1e6).toFixed(3).padStart(8)} ms/check`);
  }
  const parseNs = nsPerOp(() => parseResourceText('large.yaml', yaml, []), 1500);
  lines.push(`${'parseResourceText (YAML + schema, this checkout)'.padEnd(70)} ${(parseNs / 1e6).toFixed(1).padStart(8)} ms/parse`);
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(await snapshotCheckMicro());
