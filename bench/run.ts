// `npm run bench`: meshlet side by side with its peers, one arm after another on this machine,
// under the same loads, in one run. Prints a markdown table; writes JSON and an SVG chart to
// bench/results/. Flags: --quick (≤ 40 s), --smoke (a few seconds, for CI), --arms a,b,c.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { allArms, scratchDir, type Arm } from './lib/arms.ts';
import { FIXED_CONNECTIONS, closedLoop, compareLoadGens, fixedRate, idleConnections, type LoadGen } from './lib/measure.ts';
import { jsonPort, startProc, treeCpuMicros, treeMemKb, warmCompileCache, warmPeers, type Proc } from './lib/procs.ts';
import { loadGenTable, svg, table, type ArmResult } from './lib/output.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

// Seconds per load; `loadgen` = seconds × rounds of the meshlet-load-vs-autocannon comparison.
export interface Plan { closedS: number; fixedS: number; big: number; idle: number; warmS: number; qps: number; loadgen: [number, number] | null }
export const PLANS: Record<string, Plan> = {
  full: { closedS: 5, fixedS: 5, big: 2, idle: 1000, warmS: 1, qps: 1000, loadgen: [2, 2] },
  quick: { closedS: 1, fixedS: 1, big: 0, idle: 0, warmS: 0.2, qps: 1000, loadgen: [1, 1] },
  smoke: { closedS: 0.3, fixedS: 0.3, big: 0, idle: 50, warmS: 0.1, qps: 200, loadgen: null },
};

/** The two upstreams every single-proxy arm sends to (bench/upstream.ts, port 0). */
export async function startUpstreams(): Promise<{ a: Proc; b: Proc }> {
  const up = (n: string) => startProc(n, process.execPath, [join(ROOT, 'bench/upstream.ts'), '--port', '0'], { ready: jsonPort });
  const a = await up('upstream-a');
  try { return { a, b: await up('upstream-b') }; } catch (e) { await a.stop(); throw e; }
}

export async function benchArms(arms: Arm[], plan: Plan, log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<{ results: ArmResult[]; tool: string }> {
  const dir = scratchDir();
  warmCompileCache([ROOT, process.env.MESHLET_BEFORE], log);
  warmPeers(arms.flatMap((a) => a.peers ?? []), log);
  const ups = await startUpstreams();
  const results: ArmResult[] = [];
  let tool = '';
  try {
    // The first open-loop run in this process would pay for JIT warm-up in the direct arm's
    // latencies (the baseline of every "+" column): run the load engine once, unmeasured.
    await fixedRate(ups.a.port, plan.qps, Math.min(1, plan.fixedS)).catch(() => undefined);
    let direct: ArmResult | null = null;
    for (const arm of arms) {
      const skip = arm.skip();
      if (skip) { log(`${arm.name}: skipped (${skip})`); results.push({ arm: arm.name, about: arm.about, skipped: skip }); continue; }
      let p: Proc | null = null;
      try {
        log(`${arm.name}: starting`);
        p = await arm.start({ a: ups.a.port, b: ups.b.port }, dir);
        if (plan.warmS > 0) await closedLoop(p.port, plan.warmS).catch(() => undefined);
        const cpu0 = p.pid ? treeCpuMicros(p.pid) : 0;
        const t = await closedLoop(p.port, plan.closedS);
        tool = t.tool;
        const cpu1 = p.pid ? treeCpuMicros(p.pid) : 0;
        const lat = await fixedRate(p.port, plan.qps, plan.fixedS);
        const cpu2 = p.pid ? treeCpuMicros(p.pid) : 0;
        const r: ArmResult = { arm: arm.name, about: arm.about, rps: t.rps, closedErrors: t.errors, lat };
        if (p.pid) {
          r.cpuUsPerReq = (cpu1 - cpu0) / t.requests;
          r.fixedCpuUsPerReq = (cpu2 - cpu1) / Math.max(1, lat.calls);
          r.rssSteadyMb = treeMemKb(p.pid, 'VmRSS') / 1024;
          r.anonSteadyMb = treeMemKb(p.pid, 'RssAnon') / 1024;
        }
        if (plan.big > 0) r.rps64k = (await closedLoop(p.port, plan.big, '/64k')).rps;
        if (p.pid) r.peakRssMb = treeMemKb(p.pid, 'VmHWM') / 1024;
        if (plan.idle > 0 && p.pid) {
          const close = await idleConnections(p.port, plan.idle);
          r.rssIdle1000Mb = treeMemKb(p.pid, 'VmRSS') / 1024;
          close();
        }
        if (arm.name === 'direct') direct = r;
        if (direct) {
          r.ratio = r.rps! / direct.rps!;
          r.added = { p50: lat.p50 - direct.lat!.p50, p99: lat.p99 - direct.lat!.p99, p999: lat.p999 - direct.lat!.p999 };
        }
        results.push(r);
        log(`${arm.name}: ${t.rps.toFixed(0)} rps${r.cpuUsPerReq ? `, ${r.cpuUsPerReq.toFixed(1)} µs/req` : ''}, p99 ${lat.p99.toFixed(2)} ms`);
      } catch (e) {
        const msg = (e as Error).message.split('\n')[0].slice(0, 160);
        log(`${arm.name} arm failed: ${msg}`);
        results.push({ arm: arm.name, about: arm.about, failed: msg });
      } finally {
        await p?.stop();
      }
    }
  } finally {
    await ups.a.stop();
    await ups.b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { results, tool };
}

/** `meshlet load -qps 0` vs autocannon (and wrk) on the direct upstream, in the same run. */
export async function benchLoadGens(seconds: number, rounds: number): Promise<LoadGen[]> {
  const ups = await startUpstreams();
  try { return await compareLoadGens(ups.a.port, seconds, rounds); } finally { await ups.a.stop(); await ups.b.stop(); }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const known = ['--smoke', '--quick', '--arms', '--no-loadgen', '--hop', '--no-hop', '--lb'];
  const bad = argv.filter((a, i) => a.startsWith('--') && !known.includes(a.split('=')[0]) && argv[i - 1] !== '--arms');
  if (bad.length) { console.error(`bench: unknown flag(s) ${bad.join(' ')} (known: ${known.join(' ')})`); process.exit(2); }
  const mode = argv.includes('--smoke') ? 'smoke' : argv.includes('--quick') ? 'quick' : 'full';
  if (argv.includes('--lb')) {
    // The balancer comparison (bench/lb.ts) instead of the proxy arms.
    const { benchLb, lbTable, LB_PLANS } = await import('./lb.ts');
    console.log(`\n${lbTable(await benchLb(LB_PLANS[mode]), LB_PLANS[mode])}`);
    return;
  }
  const plan = PLANS[mode];
  const ai = argv.findIndex((a) => a === '--arms' || a.startsWith('--arms='));
  const want = ai >= 0 ? (argv[ai].includes('=') ? argv[ai].slice('--arms='.length) : argv[ai + 1] ?? '').split(',').filter(Boolean) : null;
  if (argv.includes('--hop')) {
    // The mesh hop alone (two proxies per arm); --arms picks among its arms.
    const { hopArms } = await import('./hop.ts');
    const names = hopArms().map((a) => a.name);
    const unknown = (want ?? []).filter((w) => !names.includes(w));
    if (unknown.length) { console.error(`unknown hop arm(s): ${unknown.join(', ')} (known: ${names.join(', ')})`); process.exit(2); }
    const t0 = Date.now();
    await runHop(mode, want);
    console.error(`bench --hop (${mode}) took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return;
  }
  let arms = allArms();
  if (want !== null) {
    const unknown = want.filter((w) => !arms.some((a) => a.name === w));
    if (unknown.length) { console.error(`unknown arm(s): ${unknown.join(', ')} (known: ${arms.map((a) => a.name).join(', ')})`); process.exit(2); }
    arms = arms.filter((a) => a.name === 'direct' || want.includes(a.name));
  } else if (mode === 'smoke') {
    arms = arms.filter((a) => ['direct', 'meshlet-minimal', 'meshlet-realistic', 'undici-dispatch', 'nginx', 'haproxy'].includes(a.name));
  }
  const started = Date.now();
  const { results, tool } = await benchArms(arms, plan);
  const meta = { node: process.version, cores: cpus().length, tool, qps: plan.qps, fixedConnections: FIXED_CONNECTIONS };
  console.log(`\n${table(results, meta)}\n`);
  let loadgens: LoadGen[] | null = null;
  if (plan.loadgen && !argv.includes('--no-loadgen')) {
    loadgens = await benchLoadGens(...plan.loadgen);
    console.log(`${loadGenTable(loadgens, plan.loadgen[0])}\n`);
  }
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const jsonFile = join(out, `bench-${mode}-${stamp}.json`);
  const svgFile = join(out, `bench-${mode}-${stamp}.svg`);
  writeFileSync(jsonFile, JSON.stringify({ meta, mode, plan, results, loadgens }, null, 2));
  writeFileSync(svgFile, svg(results));
  if (mode !== 'smoke') {
    const { routerMicro } = await import('./micro/router.ts');
    const { dtabMicro } = await import('./micro/dtab.ts');
    console.log(routerMicro());
    console.log(dtabMicro());
  }
  if (mode === 'full' && !argv.includes('--no-hop')) await runHop(mode, null);
  console.error(`bench (${mode}) took ${((Date.now() - started) / 1000).toFixed(0)} s; wrote ${jsonFile} and ${svgFile}`);
}

async function runHop(mode: string, only: string[] | null): Promise<void> {
  const { HOP_PLANS, benchHop, hopRatios, hopTable } = await import('./hop.ts');
  const { which } = await import('./lib/procs.ts');
  const plan = HOP_PLANS[mode];
  const results = await benchHop(plan, only);
  console.log(`\nthe mesh hop (client → outbound proxy → inbound proxy → upstream):\n\n${hopTable(results, plan, which('wrk') ? 'wrk -t1 -c50' : 'autocannon -c50')}\n`);
  const ratios = hopRatios(results);
  if (ratios) console.log(`ratios within this run:\n\n${ratios}\n`);
  const out = join(ROOT, 'bench/results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `hop-${mode}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ plan, results }, null, 2));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
