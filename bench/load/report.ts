// fortio's text report (stderr), line for line with its format strings (fortio_main, periodic.go,
// fhttp/httprunner.go, stats.go), and which lines each -loglevel shows. Levels as fortio's log
// package numbers them: a line guarded by log.Log(Warning) shows at Debug..Warning.
import { goG, goF } from './gofmt.ts';
import { goDurationMs, goDurationNs } from './goflag.ts';
import type { Counter, Histogram, HistogramData } from './histogram.ts';
import type { FortioJson } from './json.ts';
import type { LoadResult } from './runner.ts';

export const LEVELS = ['Debug', 'Verbose', 'Info', 'Warning', 'Error', 'Critical', 'Fatal'] as const;
export const DEBUG = 0, VERBOSE = 1, INFO = 2, WARNING = 3, ERROR = 4;

/** stats.Counter.Print */
export function counterLine(msg: string, c: Counter): string {
  return `${msg} : count ${c.count} avg ${goG(c.avg(), 8)} +/- ${goG(c.stdDev(), 4)} min ${goG(c.min)} max ${goG(c.max)} sum ${goG(c.sum, 9)}`;
}

/** stats.HistogramData.Print: counter line, bucket table, # target lines (or "no data"). */
export function histogramLines(msg: string, h: Histogram, d: HistogramData): string[] {
  if (!d.Data || d.Data.length === 0) return [`${msg} : no data`];
  const out = [counterLine(msg, h.counter), '# range, mid point, percentile, count'];
  d.Data.forEach((b, i) => {
    out.push(`${i === 0 ? '>=' : '>'} ${goG(b.Start, 6)} <= ${goG(b.End, 6)} , ${goG((b.Start + b.End) / 2, 6)} , ${goF(b.Percent, 2)}, ${b.Count}`);
  });
  for (const p of d.Percentiles ?? []) out.push(`# target ${goG(p.Percentile)}% ${goG(p.Value, 6)}`);
  return out;
}

export interface BannerInput { version: string; qps: number; procs: number; exactly: number; durationMs: number; url: string }

/** fortio_main's first line (every level). */
export function banner(b: BannerInput): string {
  const what = b.exactly > 0 ? `, for ${b.exactly} calls: ${b.url}` : b.durationMs <= 0 ? `, until interrupted: ${b.url}` : `, for ${goDurationMs(b.durationMs)}: ${b.url}`;
  return `Fortio ${b.version} running at ${goG(b.qps)} queries per second, ${b.procs}->${b.procs} procs${what}\n`;
}

/** "Starting at …" (periodic.go, shown at Warning and more verbose). */
export function startLine(r: Pick<LoadResult, 'plan' | 'requestedDurationMs'>, gomax: number, level: number, extra = ''): string {
  // "until interrupted" is printed at every level (the user must know to press ^C).
  return level <= WARNING || r.plan.endless ? `${r.plan.startLine(gomax, goDurationMs(r.requestedDurationMs))}${extra}\n` : '';
}

export interface ReportInput { r: LoadResult; j: FortioJson; level: number; coNote: boolean; profile?: string }

/** fortio's Occurrence.AggregateAndToString: one address alone, else "[a (n), b (m)]". */
function resolvedTo(m: Map<string, number>): string {
  if (m.size === 1) return [...m.keys()][0];
  return `[${[...m].map(([k, n]) => `${k} (${n})`).join(', ')}]`;
}

/** Everything after the run: periodic.go's summary, then httprunner's, then "All done". */
export function report({ r, j, level, coNote, profile }: ReportInput): string {
  const requestedThreads = r.options.connections;
  const L: string[] = [];
  const warn = level <= WARNING;
  const count = r.duration.counter.count;
  if (warn) L.push(`Ended after ${goDurationNs(j.ActualDuration)} : ${count} calls. qps=${goG(j.ActualQPS, 5)}`);
  if (r.plan.useQPS && r.sleep.counter.count > 0) {
    const negative = (100 * r.sleep.hdata[0]) / r.sleep.counter.count;
    if (negative > 5) {
      L.push(...histogramLines('Aggregated Sleep Time', r.sleep, r.sleep.export([50])));
      L.push(`WARNING ${goF(negative, 2)}% of sleep were falling behind`);
    } else if (level <= VERBOSE) {
      L.push(...histogramLines('Aggregated Sleep Time', r.sleep, r.sleep.export([50])));
    } else if (warn) {
      L.push(counterLine('Sleep times', r.sleep.counter));
    }
  }
  if (coNote && r.behind > 0) {
    // The one line where meshlet measures differently from fortio (not a change to its lines).
    L.push(`meshlet: ${r.behind} calls started behind schedule (up to ${goG(r.maxLagMs / 1000, 4)} s late); their latency is measured from the intended start, fortio measures from the actual send`);
  }
  if (warn) L.push(...histogramLines('Aggregated Function Time', r.duration, j.DurationHistogram));
  else {
    L.push(counterLine('Aggregated Function Time', r.duration.counter));
    for (const p of j.DurationHistogram.Percentiles ?? []) L.push(`# target ${goG(p.Percentile)}% ${goG(p.Value, 6)}`);
  }
  if (warn) L.push(...histogramLines('Error cases', r.errors, j.ErrorsDurationHistogram));
  else L.push(counterLine('Error cases', r.errors.counter));
  // fhttp/httprunner.go from here on
  if (profile) L.push(`Wrote profile data to ${profile}.{cpu|mem}`);
  L.push('# Socket and IP used for each connection:');
  r.perConn.forEach((c, i) => {
    L.push(`[${i}] ${String(r.sockets[i]).padStart(3)} socket used, resolved to ${resolvedTo(r.connIps[i])}${counterLine(', connection timing', c)}`);
  });
  if (level <= INFO) L.push(...histogramLines('Connection time histogram (s)', r.connStats, j.ConnectionStats));
  else if (warn) L.push(counterLine('Connection time (s)', r.connStats.counter));
  L.push(`Sockets used: ${j.SocketCount} (for perfect keepalive, would be ${requestedThreads})`);
  L.push(`Uniform: ${j.Uniform}, Jitter: ${j.Jitter}, Catchup allowed: ${!j.NoCatchUp}`);
  L.push('IP addresses distribution:');
  for (const [ip, n] of Object.entries(j.IPCountMap).sort((a, b) => b[1] - a[1])) L.push(`${ip}: ${n}`);
  for (const [code, n] of Object.entries(j.RetCodes).sort((a, b) => Number(a[0]) - Number(b[0]))) {
    L.push(`Code ${code.padStart(3)} : ${n} (${goF((100 * n) / Math.max(1, count), 1)} %)`);
  }
  if (level <= VERBOSE) {
    L.push(...histogramLines('Response Header Sizes Histogram', r.headerSizes, j.HeaderSizes));
    L.push(...histogramLines('Response Body/Total Sizes Histogram', r.sizes, j.Sizes));
  } else if (warn) {
    L.push(counterLine('Response Header Sizes', r.headerSizes.counter));
    L.push(counterLine('Response Body/Total Sizes', r.sizes.counter));
  }
  // fortio_main: the warmup count printed is -c in -t mode (0 with -n), whatever the plan did.
  L.push(`All done ${count} calls (plus ${r.exactly > 0 ? 0 : requestedThreads} warmup) ${goF(1000 * (count ? r.duration.counter.avg() : 0), 3)} ms avg, ${goF(j.ActualQPS, 1)} qps`);
  return `${L.join('\n')}\n`;
}
