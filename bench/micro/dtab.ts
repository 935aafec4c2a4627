// Micro-benchmark: naming a request through a 10-entry base dtab, as the proxy does per request:
//   (a) no override: the cached interpreter path (key build + one Map lookup) + branch pick;
//   (b) a one-line l5d-dtab override parsed per request, then bound (cache keyed by its show form);
// plus, for scale, an uncached bind and a cold parse of the 10-entry dtab.
// Run alone with Node 24: `node bench/micro/dtab.ts` (or `npx node bench/micro/dtab.ts`).
import { fileURLToPath } from 'node:url';
import {
  Dtab, Interpreter, MESHLET_NAMER_PREFIX, meshletNamer, parseDtabHeaders, pickBranch,
} from '../../proxy/dtab/index.ts';

const BASE = [
  '/srv => /#/meshlet', '/svc => /srv', '/svc/legacy => /srv/old', '/svc/api => /srv/api-v1',
  '/svc/users => 3 * /srv/users-a & 1 * /srv/users-b', '/svc/billing => /srv/billing | /srv/billing-fallback',
  '/svc/search => /srv/search', '/svc/web => /srv/web', '/svc/admin => !', '/svc/static => /$/inet/127.0.0.1/8080',
].join(';');

const SERVICES: Record<string, string[]> = {
  world: ['v1', 'v2'], 'world-v2': [], 'api-v1': [], 'users-a': [], 'users-b': [], web: [], search: [], billing: [],
};
const HOSTS = ['world', 'web', 'users', 'search', 'api', 'billing', 'static', 'world'];

let sink = 0; // consumed results, so the JIT cannot drop the work

/** Warm up, then run bounded batches until ~minMs has passed; report ops/s and ns/op. */
function measure(name: string, fn: (i: number) => unknown, minMs = 400, maxIters = 20_000_000): string {
  for (let i = 0; i < 20_000; i++) if (fn(i)) sink++;
  let iters = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0n;
  const budget = BigInt(minMs) * 1_000_000n;
  while (elapsed < budget && iters < maxIters) {
    for (let i = 0; i < 10_000; i++) if (fn(iters + i)) sink++;
    iters += 10_000;
    elapsed = process.hrtime.bigint() - t0;
  }
  const ns = Number(elapsed) / iters;
  const ops = 1e9 / ns;
  return `${name.padEnd(48)} ${ops >= 1e6 ? `${(ops / 1e6).toFixed(2)} M` : `${(ops / 1e3).toFixed(1)} k`} ops/s ${ns.toFixed(0).padStart(8)} ns/op`;
}

export function dtabMicro(): string {
  const namer = meshletNamer((h) => (SERVICES[h] ? { subsets: SERVICES[h] } : undefined));
  const base = Dtab.parse(BASE);
  const it = new Interpreter(base, [{ prefix: MESHLET_NAMER_PREFIX, namer }]);
  const header = ['/svc/world => /srv/world-v2'];
  const none: string[] = [];
  const lines = [
    'dtab naming (10-entry base dtab, meshlet namer):',
    measure('  (a) no override: bind (cached) + pick', (i) => pickBranch(it.bind(['svc', HOSTS[i & 7]]))),
    measure('  (b) l5d-dtab override: parse + bind + pick', (i) => {
      const h = parseDtabHeaders(none, header);
      return h.ok && pickBranch(it.bind(['svc', HOSTS[i & 7]], h.local));
    }),
    measure('  uncached bind (fresh interpreter path)', (i) => it.bindWith(base, ['svc', HOSTS[i & 7]])),
    measure('  parse the 10-entry dtab', () => Dtab.parse(BASE).size),
  ];
  return lines.join('\n') + (sink < 0 ? '' : '');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(dtabMicro());
