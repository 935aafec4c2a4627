// Micro-benchmark: the router's per-request decision (host lookup + route match + weighted pick)
// on the realistic config, and on a config of regex matchers (RE2: literal/prefix fast paths, a
// required-prefix prefilter, the full engine, and the ReDoS pattern of issue 13), in ops/s.
// Run alone: `node bench/micro/router.ts`. Uses only compile/Runtime/matchRoute, so the same file
// also measures an older build (copy it and timing.ts into a checkout of that build).
import { fileURLToPath } from 'node:url';
import { compile } from '../../proxy/config/compile.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import { Runtime } from '../../proxy/runtime.ts';
import { matchRoute, pickDestination, type RequestView } from '../../proxy/filters/route/table.ts';
import { realisticYaml } from '../lib/arms.ts';
import { nsPerOp } from './timing.ts';

/** ops/s of fn, measured for ~`ms` after a warm-up of the same length (at least one call each). */
function measure(name: string, fn: () => unknown, ms = 400): string {
  const ns = nsPerOp(fn, ms);
  const ops = ns < 1e6 ? `${(1e9 / ns / 1e6).toFixed(2).padStart(8)} M ops/s` : `${(1e9 / ns).toFixed(3).padStart(8)}   ops/s`;
  const per = ns < 1e6 ? `${ns.toFixed(0).padStart(9)} ns/op` : `${(ns / 1e6).toFixed(0).padStart(9)} ms/op`;
  return `${name.padEnd(52)} ${ops}  ${per}`;
}

const REGEX_HOST = 'regex.bench';
const regexYaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: regex }
spec:
  hosts: [${REGEX_HOST}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: regex }
spec:
  hosts: [${REGEX_HOST}]
  http:
    - name: redos
      match: [{ headers: { x-redos: { regex: "(a+)+b" } } }]
      route: [{ destination: { host: ${REGEX_HOST} } }]
    - name: cookie
      match: [{ headers: { cookie: { regex: "^(.*?; ?)?(user=tester)(;.*)?$" } } }]
      route: [{ destination: { host: ${REGEX_HOST} } }]
    - name: literal
      match: [{ uri: { regex: "/health" } }]
      route: [{ destination: { host: ${REGEX_HOST} } }]
    - name: prefix
      match: [{ uri: { regex: "/static/.*" } }]
      route: [{ destination: { host: ${REGEX_HOST} } }]
    - name: versioned
      match: [{ uri: { regex: "/api/v[0-9]+/users/[0-9]+" } }]
      route: [{ destination: { host: ${REGEX_HOST} } }]
    - name: fallback
      route: [{ destination: { host: ${REGEX_HOST} } }]
`;

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

  // Regex routes: 5 regex routes before the fallback; each case is the route it must land on.
  const rsnap = compile(parseResourceText('regex.yaml', regexYaml, errors), { version: '1', source: 'bench' });
  const rrt = Runtime.build(rsnap, null, {});
  const rv = (path: string, h: Record<string, string> = {}): RequestView => ({ method: 'GET', path, query: '', authority: REGEX_HOST, req: headersOf({ host: REGEX_HOST, ...h }) });
  const cookie = 'session=0123456789abcdef; theme=dark; lang=en; user=tester; tz=UTC';
  const cases: Array<[string, RequestView, string]> = [
    ['  regex: literal uri (/health)', rv('/health'), 'literal'],
    ['  regex: prefix uri (/static/.*)', rv('/static/css/site.css'), 'prefix'],
    ['  regex: full engine uri (/api/v[0-9]+/users/[0-9]+)', rv('/api/v2/users/12345'), 'versioned'],
    ['  regex: no regex route matches (5 regexes tried)', rv('/orders/17'), 'fallback'],
    ['  regex: cookie header ^(.*?; ?)?(user=tester)(;.*)?$', rv('/', { cookie }), 'cookie'],
    ['  regex: ReDoS (a+)+b vs 28 x "a" in a header', rv('/', { 'x-redos': 'a'.repeat(28) }), 'fallback'],
  ];
  out.push('router decision with regex matchers:');
  for (const [name, view, want] of cases) {
    const got = matchRoute(rrt.routes.forHost(REGEX_HOST)!, view)?.name;
    if (got !== want) throw new Error(`${name}: routed to ${got}, expected ${want}`);
    out.push(measure(name, () => matchRoute(rrt.routes.forHost(REGEX_HOST)!, view), want === 'fallback' && name.includes('ReDoS') ? 1 : 400));
  }
  rrt.retire(null);
  return out.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(routerMicro());
