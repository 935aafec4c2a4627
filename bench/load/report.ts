// fortio-style text output for `meshlet load` (fortio prints its report on stderr).
import { cpus } from 'node:os';
import { goDuration, type FortioJson } from './runner.ts';

const fmt = (x: number) => Number(x.toPrecision(6)).toString();

export function banner(url: string, qps: number, connections: number, calls: number, durationMs: number): string {
  const what = calls > 0 ? `for ${calls} calls` : `for ${goDuration(durationMs)}`;
  const n = cpus().length;
  return `Fortio-compatible meshlet load running at ${qps > 0 ? qps : 'max'} queries per second, ${n}->${n} procs, ${what}: ${url}\n`
    + `Starting at ${qps > 0 ? qps : 'max'} qps with ${connections} thread(s) [gomax ${n}] ${calls > 0 ? `: ${Math.floor(calls / connections)} calls each (total ${calls})` : `for ${goDuration(durationMs)}`}\n`;
}

export function report(j: FortioJson, behindWarning: string | null, warmup = 0): string {
  const h = j.DurationHistogram;
  const secs = j.ActualDuration / 1e9;
  const lines: string[] = [];
  lines.push(`Ended after ${fmt(secs)}s : ${h.Count} calls. qps=${fmt(j.ActualQPS)}`);
  if (behindWarning) lines.push(behindWarning);
  lines.push(`Aggregated Function Time : count ${h.Count} avg ${fmt(h.Avg)} +/- ${fmt(h.StdDev)} min ${fmt(h.Min)} max ${fmt(h.Max)} sum ${fmt(h.Sum)}`);
  lines.push('# range, mid point, percentile, count');
  h.Data.forEach((d, i) => {
    lines.push(`${i === 0 ? '>=' : '>'} ${fmt(d.Start)} <= ${fmt(d.End)} , ${fmt((d.Start + d.End) / 2)} , ${d.Percent.toFixed(2)}, ${d.Count}`);
  });
  for (const p of h.Percentiles) lines.push(`# target ${p.Percentile}% ${fmt(p.Value)}`);
  lines.push(`Sockets used: ${j.SocketCount} (for perfect keepalive, would be ${j.NumThreads})`);
  for (const [code, n] of Object.entries(j.RetCodes)) {
    lines.push(`Code ${code.padStart(3)} : ${n} (${((100 * n) / Math.max(1, h.Count)).toFixed(1)} %)`);
  }
  lines.push(`All done ${h.Count} calls (plus ${warmup} warmup) ${(h.Avg * 1000).toFixed(3)} ms avg, ${j.ActualQPS.toFixed(1)} qps`);
  return `${lines.join('\n')}\n`;
}
