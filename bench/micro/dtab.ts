// Micro-benchmark: naming a request through a 10-entry base dtab, (a) no override (the cached
// interpreter path every request takes), (b) a one-line l5d-dtab override parsed per request.
// Run alone: `node bench/micro/dtab.ts`.
import { fileURLToPath } from 'node:url';
import { Dtab, Interpreter, parseDtabHeaders, pickBranch, type Namer } from '../../proxy/dtab/index.ts';
import { NEG, leaf } from '../../proxy/dtab/tree.ts';

const BASE = [
  '/srv => /#/meshlet', '/svc => /srv', '/svc/legacy => /srv/old', '/svc/api => /srv/api-v1', '/svc/users => 3 * /srv/users-a & 1 * /srv/users-b',
  '/svc/billing => /srv/billing | /srv/billing-fallback', '/svc/search => /srv/search', '/svc/web => /srv/web', '/svc/admin => !', '/svc/static => /$/inet/127.0.0.1/8080',
].join(';');

function measure(name: string, fn: () => unknown, iterations = 500_000): string {
  for (let i = 0; i < 50_000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  const ns = Number(process.hrtime.bigint() - t0) / iterations;
  return `${name.padEnd(44)} ${(1e9 / ns / 1e6).toFixed(3).padStart(7)} M ops/s  ${ns.toFixed(0).padStart(6)} ns/op`;
}

export function dtabMicro(): string {
  const known = new Set(['world', 'world-v2', 'api-v1', 'users-a', 'users-b', 'web', 'search']);
  const namer: Namer = { lookup: (rest) => (rest.length && known.has(rest[0]) ? leaf({ id: ['#', 'meshlet', rest[0]], residual: rest.slice(1) }) : NEG) };
  const it = new Interpreter(Dtab.parse(BASE), [{ prefix: ['#', 'meshlet'], namer }]);
  const name = ['svc', 'world'];
  const header = ['/svc/world => /srv/world-v2'];
  return [
    'dtab naming (10-entry base dtab):',
    measure('  no override: bind (cached) + pick', () => pickBranch(it.bind(name))),
    measure('  l5d-dtab override: parse + bind + pick', () => { const h = parseDtabHeaders([], header); return h.ok && pickBranch(it.bind(name, h.local)); }),
    measure('  parse the 10-entry dtab', () => Dtab.parse(BASE), 50_000),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(dtabMicro());
