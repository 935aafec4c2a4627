// `npm run bench -- --lb` (or `npx node bench/lb.ts [--quick|--smoke]`): the balancers side by
// side under faults, in one run. Five upstream processes behind one meshlet proxy; scenarios:
// no fault (the baseline), one endpoint slowed by +200 ms, one endpoint answering 5 % 503. For each
// scenario and each of ROUND_ROBIN, LEAST_REQUEST and PEAK_EWMA a fresh proxy takes a 1 000 rps
// open loop (our runner, latency from each call's intended start: no coordinated omission) and
// the table shows p50 / p99 / p99.9, the error rate and p99 against the same balancer's no-fault
// run. No retries and no outlier detection: the balancer alone decides.
import { writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, meshlet, scratchDir } from './lib/arms.ts';
import { jsonPort, startProc, type Proc } from './lib/procs.ts';
import { runLoad, toFortioJson } from './load/runner.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const ALGORITHMS = ['ROUND_ROBIN', 'LEAST_REQUEST', 'PEAK_EWMA'] as const;
const SCENARIOS = [
  { name: 'no fault', args: [] as string[] },
  { name: 'one +200 ms', args: ['--delay-ms', '200'] },
  { name: 'one 5 % 503', args: ['--error-percent', '5'] },
];
/** Downstream connections of the open loop: enough that one stalled call does not block the rate. */
const CONNECTIONS = 64;

export interface LbPlan { seconds: number; warmS: number; qps: number }
export const LB_PLANS: Record<string, LbPlan> = {
  full: { seconds: 10, warmS: 2, qps: 1000 },
  quick: { seconds: 3, warmS: 1, qps: 1000 },
  smoke: { seconds: 0.5, warmS: 0.2, qps: 200 },
};

export interface LbRow { scenario: string; lb: string; p50: number; p99: number; p999: number; calls: number; errors: number; behind: number; faultyShare: number; vsBaseline?: number }

/** Requests per endpoint port so far, from the proxy's /clusters rq_total. */
async function shareOf(adminPort: number, _port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/clusters`, { signal: AbortSignal.timeout(3000) })).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/::127\.0\.0\.1:(\d+)::rq_total::(\d+)/g)) out.set(m[1], Number(m[2]));
  return out;
}

function yaml(ports: number[], lb: string): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: upstream }
spec:
  hosts: [${HOST}]
  ports: [{ number: 80, name: http }]
  endpoints: [${ports.map((p) => `{ address: 127.0.0.1, ports: { http: ${p} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: upstream }
spec:
  host: ${HOST}
  trafficPolicy: { loadBalancer: { simple: ${lb} } }
`;
}

async function openLoop(port: number, qps: number, seconds: number) {
  const r = await runLoad({ url: `http://127.0.0.1:${port}/`, connections: CONNECTIONS, qps, calls: 0, durationMs: seconds * 1000, headers: [['Host', HOST]], payload: null, timeoutMs: 5000, allowInitialErrors: true,
    // Spread the connections' calls evenly (fortio -uniform): fortio's default starts every
    // thread's call at the same instant, and 64 calls arriving at once queue behind each other in
    // the proxy: milliseconds of p50 that are the burst, not the balancer.
    uniform: true });
  const j = toFortioJson(r, [50, 99, 99.9]);
  const p = (q: number) => 1000 * (j.DurationHistogram.Percentiles?.find((x) => x.Percentile === q)?.Value ?? NaN);
  let errors = 0;
  for (const [code, n] of r.retCodes) if (code !== 200) errors += n;
  return { p50: p(50), p99: p(99), p999: p(99.9), calls: r.calls, errors, behind: r.behind };
}

export async function benchLb(plan: LbPlan, log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<LbRow[]> {
  const dir = scratchDir();
  const rows: LbRow[] = [];
  try {
    for (const sc of SCENARIOS) {
      // Endpoint 0 carries the fault; the others are plain.
      const ups: Proc[] = [];
      try {
        for (let i = 0; i < 5; i++) {
          ups.push(await startProc(`upstream-${i}`, process.execPath, [join(ROOT, 'bench/upstream.ts'), '--port', '0', ...(i === 0 ? sc.args : [])], { ready: jsonPort }));
        }
        // The first open loop in this process pays for the runner's JIT warm-up: spend it on an
        // upstream directly, unmeasured, so it does not land in the first row's tail.
        if (sc === SCENARIOS[0]) await openLoop(ups[1].port, plan.qps, Math.min(1, plan.seconds)).catch(() => undefined);
        for (const lb of ALGORITHMS) {
          const arm = meshlet(`lb-${lb}`, '', () => yaml(ups.map((u) => u.port), lb));
          const p = await arm.start({ a: 0, b: 0 }, dir);
          try {
            if (plan.warmS > 0) await openLoop(p.port, plan.qps, plan.warmS);
            const admin = (JSON.parse(p.readyLine) as { ports: { admin: number } }).ports.admin;
            const before = await shareOf(admin, ups[0].port);
            const r = await openLoop(p.port, plan.qps, plan.seconds);
            const after = await shareOf(admin, ups[0].port);
            let total = 0;
            for (const [k, v] of after) total += v - (before.get(k) ?? 0);
            const key = String(ups[0].port);
            const faultyShare = total > 0 ? ((after.get(key) ?? 0) - (before.get(key) ?? 0)) / total : 0;
            rows.push({ scenario: sc.name, lb, ...r, faultyShare });
            log(`${sc.name} ${lb}: p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} p99.9 ${r.p999.toFixed(2)} ms, errors ${r.errors}/${r.calls}, endpoint 0 took ${(100 * faultyShare).toFixed(1)} %`);
          } finally { await p.stop(); }
        }
      } finally { for (const u of ups) await u.stop(); }
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
  for (const r of rows) {
    const base = rows.find((b) => b.scenario === 'no fault' && b.lb === r.lb);
    if (base && r !== base) r.vsBaseline = r.p99 / base.p99;
  }
  return rows;
}

export function lbTable(rows: LbRow[], plan: LbPlan): string {
  const f = (x: number) => x.toFixed(2);
  let out = `Balancers under faults: 5 endpoints, ${plan.qps} rps open loop for ${plan.seconds} s per row, ${CONNECTIONS} connections, node ${process.version}, ${cpus().length} cores\n\n`;
  out += '| scenario | balancer | p50 ms | p99 ms | p99.9 ms | errors | endpoint 0 share | p99 / no-fault p99 |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n';
  for (const r of rows) {
    out += `| ${r.scenario} | ${r.lb} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.p999)} | ${(100 * r.errors / Math.max(1, r.calls)).toFixed(2)} % | ${(100 * r.faultyShare).toFixed(1)} % | ${r.vsBaseline === undefined ? '—' : `${r.vsBaseline.toFixed(2)}×`} |\n`;
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const mode = argv.includes('--smoke') ? 'smoke' : argv.includes('--quick') ? 'quick' : 'full';
  const plan = LB_PLANS[mode];
  const rows = await benchLb(plan);
  const table = lbTable(rows, plan);
  console.log(`\n${table}`);
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `lb-${mode}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ mode, plan, rows }, null, 2));
  console.error(`wrote ${file}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
