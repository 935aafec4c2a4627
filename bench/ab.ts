// `npm run bench:ab`: a paired A/B of one meshlet sidecar, for differences smaller than the
// machine's noise. On a shared 2-vCPU VM the same code moves ±20-50 % between runs, more than most
// levers are worth, and two arms measured minutes apart in `npm run bench` see different
// machines. Here each pair runs A and B back to back, in alternating order (AB, BA, AB, ...), each
// in a fresh process after the same warm-up, so slow drift cancels within a pair. It prints every
// pair, the median of B/A, and in how many pairs B was cheaper, with a two-sided sign test: a
// p-value well under 0.05 over 10+ pairs is a difference; anything else is noise.
//
//   npx node bench/ab.ts --a <checkout> [--b <checkout>]      two builds (A defaults to $MESHLET_BEFORE, B to this checkout)
//   npx node bench/ab.ts --b-node "--max-semi-space-size=4"   one build, two sets of node flags (--a-node for A)
//   options: --pairs N (10) --seconds S (3) --rate R (0: closed loop, wrk -c50 when installed; R: fixed R rps)
//            --config realistic|minimal (realistic) --smoke (2 pairs of 0.3 s, for the test suite)
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { meshlet, minimalYaml, realisticYaml, scratchDir } from './lib/arms.ts';
import { closedLoop, fixedRate } from './lib/measure.ts';
import { treeCpuMicros, treeMemKb, warmCompileCache } from './lib/procs.ts';
import { startUpstreams } from './run.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

export interface AbSide { label: string; root: string; nodeFlags: string[] }
export interface AbOptions { a: AbSide; b: AbSide; pairs: number; seconds: number; warmS: number; rate: number; config: 'realistic' | 'minimal' }
export interface AbRun { cpuUsPerReq: number; rps: number; privateMb: number; errors: number; tool: string }
export interface AbPair { pair: number; order: 'AB' | 'BA'; a: AbRun; b: AbRun }
export interface AbSummary { pairs: number; meanA: number; meanB: number; medianRatio: number; bCheaper: number; p: number }

/** Two-sided sign test: the probability of a split at least this uneven when A and B are the same. */
export function signTestP(wins: number, n: number): number {
  if (n === 0) return 1;
  const k = Math.min(wins, n - wins);
  let tail = 0;
  let c = 1; // C(n, 0)
  for (let i = 0; i <= k; i++) {
    tail += c;
    c = (c * (n - i)) / (i + 1);
  }
  return Math.min(1, (2 * tail) / 2 ** n);
}

export function summarize(pairs: AbPair[]): AbSummary {
  const n = pairs.length;
  const ratios = pairs.map((p) => p.b.cpuUsPerReq / p.a.cpuUsPerReq).sort((x, y) => x - y);
  const median = n === 0 ? NaN : n % 2 ? ratios[(n - 1) / 2] : (ratios[n / 2 - 1] + ratios[n / 2]) / 2;
  const bCheaper = pairs.filter((p) => p.b.cpuUsPerReq < p.a.cpuUsPerReq).length;
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  return { pairs: n, meanA: mean(pairs.map((p) => p.a.cpuUsPerReq)), meanB: mean(pairs.map((p) => p.b.cpuUsPerReq)), medianRatio: median, bCheaper, p: signTestP(bCheaper, n) };
}

async function once(side: AbSide, name: string, ups: { a: number; b: number }, dir: string, o: AbOptions): Promise<AbRun> {
  const yaml = o.config === 'realistic' ? realisticYaml : (a: number) => minimalYaml(a);
  const proc = await meshlet(name, side.label, yaml, [], () => side.root, side.nodeFlags).start(ups, dir);
  try {
    if (o.warmS > 0) await closedLoop(proc.port, o.warmS).catch(() => undefined);
    const c0 = treeCpuMicros(proc.pid);
    let calls: number, rps: number, errors: number, tool: string;
    if (o.rate > 0) {
      const l = await fixedRate(proc.port, o.rate, o.seconds);
      calls = l.calls; rps = l.calls / o.seconds; errors = l.errors; tool = `meshlet load, ${o.rate} rps open loop`;
    } else {
      const t = await closedLoop(proc.port, o.seconds);
      calls = t.requests; rps = t.rps; errors = t.errors; tool = `${t.tool}, closed loop`;
    }
    const cpu = treeCpuMicros(proc.pid) - c0;
    return { cpuUsPerReq: cpu / Math.max(1, calls), rps, privateMb: treeMemKb(proc.pid, 'RssAnon') / 1024, errors, tool };
  } finally {
    await proc.stop();
  }
}

export async function runAb(o: AbOptions, log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<AbPair[]> {
  warmCompileCache([o.a.root, o.b.root], log);
  const dir = scratchDir();
  const ups = await startUpstreams();
  const out: AbPair[] = [];
  try {
    const ports = { a: ups.a.port, b: ups.b.port };
    for (let i = 1; i <= o.pairs; i++) {
      const order = i % 2 === 1 ? 'AB' : 'BA';
      const first = order === 'AB' ? o.a : o.b;
      const second = order === 'AB' ? o.b : o.a;
      const r1 = await once(first, `ab-${order[0]}`, ports, dir, o);
      const r2 = await once(second, `ab-${order[1]}`, ports, dir, o);
      const pair: AbPair = { pair: i, order, a: order === 'AB' ? r1 : r2, b: order === 'AB' ? r2 : r1 };
      out.push(pair);
      log(`pair ${i} (${order}): A ${pair.a.cpuUsPerReq.toFixed(1)} µs/req, B ${pair.b.cpuUsPerReq.toFixed(1)} µs/req`);
    }
  } finally {
    await ups.a.stop();
    await ups.b.stop();
  }
  return out;
}

export function abTable(o: AbOptions, pairs: AbPair[]): string {
  const s = summarize(pairs);
  const load = pairs[0]?.a.tool ?? (o.rate > 0 ? `${o.rate} rps open loop` : 'closed loop');
  const lines = [
    `node ${process.version} · ${o.config} config · ${load} · ${o.seconds} s per run after ${o.warmS} s warm-up · a fresh process per run`,
    `A: ${o.a.label}`,
    `B: ${o.b.label}`,
    '',
    '| pair | order | A CPU µs/req | B CPU µs/req | B/A | A rps | B rps | A private MB | B private MB | errors |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of pairs) {
    lines.push(`| ${p.pair} | ${p.order} | ${p.a.cpuUsPerReq.toFixed(1)} | ${p.b.cpuUsPerReq.toFixed(1)} | ${(p.b.cpuUsPerReq / p.a.cpuUsPerReq).toFixed(3)} | ${p.a.rps.toFixed(0)} | ${p.b.rps.toFixed(0)} | ${p.a.privateMb.toFixed(0)} | ${p.b.privateMb.toFixed(0)} | ${p.a.errors + p.b.errors} |`);
  }
  lines.push('', `B/A median ${s.medianRatio.toFixed(3)} (mean A ${s.meanA.toFixed(1)}, mean B ${s.meanB.toFixed(1)} µs/req); B cheaper in ${s.bCheaper} of ${s.pairs} pairs, sign test p = ${s.p.toFixed(3)}${s.p < 0.05 ? '' : ' (not a difference at this many pairs)'}`);
  return lines.join('\n');
}

/** Command-line options to AbOptions; throws with a message on anything it does not know. */
export function parseAbArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): AbOptions {
  const known = new Set(['--a', '--b', '--a-node', '--b-node', '--pairs', '--seconds', '--rate', '--config', '--smoke']);
  const v: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split(/=(.*)/s, 2);
    if (!known.has(k)) throw new Error(`unknown option ${argv[i]} (known: ${[...known].join(' ')})`);
    if (k === '--smoke') { v[k] = '1'; continue; }
    const val = inline ?? argv[++i];
    if (val === undefined) throw new Error(`${k} needs a value`);
    v[k] = val;
  }
  const smoke = v['--smoke'] === '1';
  const num = (k: string, d: number, min: number) => {
    if (v[k] === undefined) return d;
    const n = Number(v[k]);
    if (!Number.isFinite(n) || n < min) throw new Error(`${k} must be a number ≥ ${min}, got ${v[k]}`);
    return n;
  };
  const root = (p: string | undefined, d: string | undefined, which: string): string => {
    const r = p ?? d;
    if (r === undefined) throw new Error(`${which}: give --${which.toLowerCase()} <checkout> or set MESHLET_BEFORE`);
    const abs = resolve(r);
    if (!existsSync(join(abs, 'bin/meshlet.js'))) throw new Error(`${which}: ${abs} is not a meshlet checkout (no bin/meshlet.js)`);
    return abs;
  };
  const aFlags = (v['--a-node'] ?? '').split(/\s+/).filter(Boolean);
  const bFlags = (v['--b-node'] ?? '').split(/\s+/).filter(Boolean);
  // One build with two flag sets needs no second checkout: A is then this one too.
  const before = env.MESHLET_BEFORE || undefined;
  const sameBuild = v['--a'] === undefined && before === undefined && (aFlags.length > 0 || bFlags.length > 0);
  const a = root(v['--a'], sameBuild ? ROOT : before, 'A');
  const b = root(v['--b'], ROOT, 'B');
  if (a === b && aFlags.join(' ') === bFlags.join(' ')) throw new Error('A and B are the same build with the same flags: nothing to compare');
  const config = v['--config'] ?? 'realistic';
  if (config !== 'realistic' && config !== 'minimal') throw new Error(`--config is realistic or minimal, got ${config}`);
  const label = (r: string, f: string[]) => `${r}${f.length ? ` with node ${f.join(' ')}` : ''}`;
  return {
    a: { label: label(a, aFlags), root: a, nodeFlags: aFlags },
    b: { label: label(b, bFlags), root: b, nodeFlags: bFlags },
    pairs: num('--pairs', smoke ? 2 : 10, 1),
    seconds: num('--seconds', smoke ? 0.3 : 3, 0.1),
    warmS: smoke ? 0.1 : 1,
    rate: num('--rate', 0, 0),
    config,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let o: AbOptions;
  try { o = parseAbArgs(process.argv.slice(2)); } catch (e) { console.error(`bench/ab: ${(e as Error).message}`); process.exit(2); }
  const pairs = await runAb(o);
  console.log(`\n${abTable(o, pairs)}\n`);
}
