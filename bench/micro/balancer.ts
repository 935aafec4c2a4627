// Micro-benchmark: one host pick per algorithm over 10 endpoints through Cluster.pick (the
// router's call), in ns/pick, and the heap allocated per pick — the claim "a pick allocates
// nothing" measured: bytes/pick is (heap used after − before) / picks with no GC in between
// (run with --expose-gc for a clean start; a figure near 0 is the claim holding).
// Run alone: `npx node --expose-gc bench/micro/balancer.ts`.
import { fileURLToPath } from 'node:url';
import { Cluster, type PickRequest } from '../../proxy/upstream/cluster.ts';
import type { ClusterSpec } from '../../proxy/config/schema.ts';
import { DEFAULT_CONNECTION_POOL } from '../../proxy/config/schema.ts';
import { observeRtt } from '../../proxy/upstream/balancer.ts';

const N = 10;
function spec(lb: ClusterSpec['lb'], extra: Partial<ClusterSpec> = {}): ClusterSpec {
  return {
    name: `bench|${lb}`, service: 'bench', subset: '', port: 80, lb, connectionPool: DEFAULT_CONNECTION_POOL,
    endpoints: Array.from({ length: N }, (_, i) => ({ address: `10.0.0.${i + 1}`, port: 8080, labels: {} })),
    ...extra,
  };
}

const req = (headers: string[]): PickRequest => ({ s: { headers, path: '/p?user=u123', req: { remoteAddress: '10.1.2.3', host: 'bench' } }, setCookie: null });

export function balancerMicro(picks = 2_000_000): string {
  const cases: Array<[string, Cluster, PickRequest | undefined]> = [
    ['ROUND_ROBIN', new Cluster(spec('ROUND_ROBIN')), undefined],
    ['ROUND_ROBIN weighted (smooth WRR)', new Cluster({ ...spec('ROUND_ROBIN'), endpoints: spec('ROUND_ROBIN').endpoints.map((e, i) => ({ ...e, weight: 1 + (i % 3) })) }), undefined],
    ['RANDOM', new Cluster(spec('RANDOM')), undefined],
    ['LEAST_REQUEST (P2C)', new Cluster(spec('LEAST_REQUEST')), undefined],
    ['PEAK_EWMA', new Cluster(spec('PEAK_EWMA')), undefined],
    ['RING_HASH by header', new Cluster(spec('RING_HASH', { hash: { header: 'x-user', minimumRingSize: 1024 } })), req(['x-user', 'alice'])],
    ['MAGLEV by cookie', new Cluster(spec('MAGLEV', { hash: { cookie: { name: 'sid' }, tableSize: 65537 } })), req(['cookie', 'a=1; sid=abcdef'])],
    ['MAGLEV by query parameter', new Cluster(spec('MAGLEV', { hash: { queryParameter: 'user', tableSize: 65537 } })), req([])],
  ];
  const gc = (globalThis as { gc?: () => void }).gc;
  let out = `Cluster.pick over ${N} endpoints, ${picks} picks each${gc ? '' : ' (run with --expose-gc for clean heap figures)'}\n\n| algorithm | ns/pick | heap bytes/pick |\n| --- | ---: | ---: |\n`;
  for (const [name, c, r] of cases) {
    for (const e of c.endpoints) observeRtt(e.lb, 1 + Math.random(), performance.now());
    for (let i = 0; i < 100_000; i++) c.pick(null, r); // warm-up (and the hash table build)
    gc?.();
    const h0 = process.memoryUsage().heapUsed;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < picks; i++) c.pick(null, r);
    const ns = Number(process.hrtime.bigint() - t0) / picks;
    const bytes = (process.memoryUsage().heapUsed - h0) / picks;
    out += `| ${name} | ${ns.toFixed(0)} | ${bytes < 0 ? '0 (GC ran)' : bytes.toFixed(2)} |\n`;
    c.drain();
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(balancerMicro());
