// Micro-benchmark: the router's per-request decision (host lookup + route match + weighted pick)
// on the realistic config, in ops/s. Run alone: `node bench/micro/router.ts`.
import { fileURLToPath } from 'node:url';
import { compile } from '../../proxy/config/compile.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import { Runtime } from '../../proxy/runtime.ts';
import { matchRoute, pickDestination, type RequestView } from '../../proxy/filters/route.ts';
import { realisticYaml } from '../lib/arms.ts';

function measure(name: string, fn: () => unknown, iterations = 2_000_000): string {
  for (let i = 0; i < 100_000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  const ns = Number(process.hrtime.bigint() - t0) / iterations;
  return `${name.padEnd(44)} ${(1e9 / ns / 1e6).toFixed(2).padStart(7)} M ops/s  ${ns.toFixed(0).padStart(5)} ns/op`;
}

export function routerMicro(): string {
  const errors: string[] = [];
  const snap = compile(parseResourceText('bench.yaml', realisticYaml(1, 2), errors), { version: '1', source: 'bench' });
  const rt = Runtime.build(snap, null, {});
  const headersOf = (h: Record<string, string>) => ({ header: (n: string) => h[n] });
  const plain: RequestView = { method: 'GET', path: '/', query: '', authority: 'upstream.bench', req: headersOf({ host: 'upstream.bench', 'user-agent': 'wrk' }) };
  const canary: RequestView = { ...plain, req: headersOf({ host: 'upstream.bench', 'user-agent': 'wrk', 'x-canary': 'always' }) };
  const out = [
    'router decision (host -> vhost -> first matching route -> weighted pick):',
    measure('  no header match (80/20 split)', () => { const vh = rt.routes.forHost('upstream.bench')!; return pickDestination(matchRoute(vh, plain)!); }),
    measure('  header match (x-canary)', () => { const vh = rt.routes.forHost('upstream.bench')!; return pickDestination(matchRoute(vh, canary)!); }),
  ];
  // The decision must be the real one: the 80/20 split and the header match land where configured.
  let v2 = 0;
  const n = 100_000;
  for (let i = 0; i < n; i++) if (pickDestination(matchRoute(rt.routes.forHost('upstream.bench')!, plain)!)!.subset === 'v2') v2++;
  const canaryDest = pickDestination(matchRoute(rt.routes.forHost('upstream.bench')!, canary)!)!.subset;
  out.push(`  check: ${((100 * v2) / n).toFixed(1)} % of plain requests to v2 (configured 20 %), x-canary -> ${canaryDest}`);
  rt.retire(null);
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(routerMicro());
