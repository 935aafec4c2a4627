// Bench output: the markdown table, JSON, and an SVG chart (hand-written, no dependencies).
import type { LoadGen } from './measure.ts';

export interface ArmResult {
  arm: string;
  about: string;
  skipped?: string;
  failed?: string;
  rps?: number;
  ratio?: number;
  cpuUsPerReq?: number;
  /** Proxy CPU µs per request over the fixed-rate window (nothing batches at a fixed rate). */
  fixedCpuUsPerReq?: number;
  /** VmRSS and its private part (RssAnon) at the end of the fixed-rate window. */
  rssSteadyMb?: number;
  anonSteadyMb?: number;
  closedErrors?: number;
  lat?: { p50: number; p90: number; p99: number; p999: number; errors: number; behind: number };
  added?: { p50: number; p99: number; p999: number };
  rps64k?: number;
  peakRssMb?: number;
  rssIdle1000Mb?: number;
}

export interface Meta { node: string; cores: number; tool: string; qps: number; fixedConnections: number }

const f = (x: number | undefined, d = 0) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d));
const signed = (x: number | undefined, d = 2) => (x === undefined || Number.isNaN(x) ? '–' : `${x >= 0 ? '+' : ''}${x.toFixed(d)}`);

export function table(results: ArmResult[], meta: Meta): string {
  const lines = [
    `node ${meta.node} · ${meta.cores} cores · closed loop: ${meta.tool || 'n/a'}, 1 KB bodies · fixed rate: ${meta.qps} rps open loop (meshlet load), ${meta.fixedConnections} connections`,
    '',
    '| arm | rps | × direct | proxy CPU µs/req | CPU µs/req @fixed | p50 ms | p90 ms | p99 ms | p99.9 ms | +p50 | +p99 | +p99.9 | 64 KB rps | RSS MB @fixed (private) | peak RSS MB | RSS @1000 conns MB | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.skipped || r.failed) { lines.push(`| ${r.arm} | ${r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.failed!.replaceAll('|', '/')}`} ||||||||||||||||`); continue; }
    // Errors under load make a fast rps meaningless: count them in the row (non-2xx/3xx and socket errors).
    const errs = (r.closedErrors ?? 0) + (r.lat?.errors ?? 0);
    lines.push(`| ${r.arm} | ${f(r.rps)} | ${f(r.ratio, 2)} | ${f(r.cpuUsPerReq, 1)} | ${f(r.fixedCpuUsPerReq, 1)} | ${f(r.lat?.p50, 2)} | ${f(r.lat?.p90, 2)} | ${f(r.lat?.p99, 2)} | ${f(r.lat?.p999, 2)} | ${signed(r.added?.p50)} | ${signed(r.added?.p99)} | ${signed(r.added?.p999)} | ${f(r.rps64k)} | ${r.rssSteadyMb === undefined ? '–' : `${f(r.rssSteadyMb)} (${f(r.anonSteadyMb)})`} | ${f(r.peakRssMb)} | ${f(r.rssIdle1000Mb)} | ${errs} |`);
  }
  return lines.join('\n');
}

export function loadGenTable(gens: LoadGen[], seconds: number): string {
  return [
    `load generators, closed loop on the direct upstream (${seconds} s per round, best round):`,
    '',
    '| tool | rps | tool CPU µs/req |',
    '|---|---:|---:|',
    ...gens.map((g) => `| ${g.tool} | ${g.rps.toFixed(0)} | ${g.cpuUsPerReq === null ? '–' : g.cpuUsPerReq.toFixed(1)} |`),
  ].join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** Two panels: closed-loop rps per arm (bars), fixed-rate latency percentiles per arm (log-scale dots). */
export function svg(results: ArmResult[]): string {
  const ok = results.filter((r) => r.rps !== undefined);
  const W = 960, rowH = 24, left = 200, right = 110, top = 44;
  const plotW = W - left - right;
  const top2 = top + ok.length * rowH + 70;
  const H = top2 + ok.length * rowH + 60;
  const maxRps = Math.max(1, ...ok.map((r) => r.rps!));
  const label = (y: number, text: string) => `<text x="${left - 8}" y="${y + rowH / 2}" font-size="12" text-anchor="end" dominant-baseline="middle">${esc(text)}</text>`;
  let body = `<text x="10" y="24" font-size="15" font-weight="600">rps, closed loop (higher is better)</text>`;
  ok.forEach((r, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, (plotW * r.rps!) / maxRps);
    body += label(y, r.arm);
    body += `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${r.arm === 'direct' ? '#868e96' : r.arm.startsWith('meshlet') ? '#1c7ed6' : '#74c0fc'}"/>`;
    body += `<text x="${(left + w + 6).toFixed(1)}" y="${y + rowH / 2}" font-size="11" dominant-baseline="middle">${r.rps!.toFixed(0)}${r.ratio !== undefined && r.arm !== 'direct' ? ` (×${r.ratio.toFixed(2)})` : ''}</text>`;
  });
  // Latency: percentiles span decades (0.1 ms … 20 ms), so a log axis keeps p50 readable.
  const withLat = ok.filter((r) => r.lat);
  const all = withLat.flatMap((r) => [r.lat!.p50, r.lat!.p999]).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(0.1, ...all))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(1, ...all))));
  const x = (ms: number) => left + (plotW * (Math.log10(Math.max(ms, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
  const series: Array<[keyof NonNullable<ArmResult['lat']>, string, string]> = [['p50', '#2b8a3e', 'p50'], ['p90', '#f59f00', 'p90'], ['p99', '#e8590c', 'p99'], ['p999', '#c92a2a', 'p99.9']];
  body += `<text x="10" y="${top2 - 36}" font-size="15" font-weight="600">latency at a fixed rate, open loop (ms, log scale; lower is better)</text>`;
  series.forEach(([, color, name], i) => {
    body += `<circle cx="${left + i * 80 + 6}" cy="${top2 - 14}" r="5" fill="${color}"/><text x="${left + i * 80 + 16}" y="${top2 - 14}" font-size="11" dominant-baseline="middle">${name}</text>`;
  });
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    const gx = x(d).toFixed(1);
    body += `<line x1="${gx}" x2="${gx}" y1="${top2}" y2="${top2 + ok.length * rowH}" stroke="#dee2e6"/><text x="${gx}" y="${top2 + ok.length * rowH + 14}" font-size="10" text-anchor="middle">${d >= 1 ? d.toFixed(0) : d.toString()}</text>`;
  }
  ok.forEach((r, i) => {
    const y = top2 + i * rowH;
    body += label(y, r.arm);
    if (!r.lat) return;
    body += `<line x1="${x(r.lat.p50).toFixed(1)}" x2="${x(r.lat.p999).toFixed(1)}" y1="${y + rowH / 2}" y2="${y + rowH / 2}" stroke="#adb5bd"/>`;
    for (const [key, color] of series) body += `<circle cx="${x(r.lat[key] as number).toFixed(1)}" cy="${y + rowH / 2}" r="5" fill="${color}"/>`;
    body += `<text x="${W - right + 8}" y="${y + rowH / 2}" font-size="10" dominant-baseline="middle">${r.lat.p50.toFixed(2)} / ${r.lat.p99.toFixed(2)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="#fff"/>${body}</svg>\n`;
}
