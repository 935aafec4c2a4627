// Bench output: the markdown table, JSON, and an SVG chart (no dependencies).
export interface ArmResult {
  arm: string;
  about: string;
  skipped?: string;
  failed?: string;
  rps?: number;
  ratio?: number;
  cpuUsPerReq?: number;
  closedErrors?: number;
  lat?: { p50: number; p90: number; p99: number; p999: number; errors: number; behind: number };
  added?: { p50: number; p99: number };
  rps64k?: number;
  peakRssMb?: number;
  rssIdle1000Mb?: number;
}

const f = (x: number | undefined, d = 0) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d));

export function table(results: ArmResult[], meta: { node: string; cores: number; tool: string; qps: number }): string {
  const lines = [
    `node ${meta.node} · ${meta.cores} cores · closed loop: ${meta.tool}, 1 KB bodies · fixed rate: ${meta.qps} rps open loop (meshlet load), 16 connections`,
    '',
    '| arm | rps | × direct | proxy CPU µs/req | p50 ms | p90 ms | p99 ms | p99.9 ms | +p50 | +p99 | 64 KB rps | peak RSS MB | RSS @1000 conns MB |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.skipped || r.failed) { lines.push(`| ${r.arm} | ${r.skipped ? `skipped: ${r.skipped}` : `failed: ${r.failed}`} |||||||||||| |`); continue; }
    lines.push(`| ${r.arm} | ${f(r.rps)} | ${f(r.ratio, 2)} | ${f(r.cpuUsPerReq, 1)} | ${f(r.lat?.p50, 2)} | ${f(r.lat?.p90, 2)} | ${f(r.lat?.p99, 2)} | ${f(r.lat?.p999, 2)} | ${f(r.added?.p50, 2)} | ${f(r.added?.p99, 2)} | ${f(r.rps64k)} | ${f(r.peakRssMb)} | ${f(r.rssIdle1000Mb)} |`);
  }
  return lines.join('\n');
}

export function svg(results: ArmResult[]): string {
  const ok = results.filter((r) => r.rps !== undefined);
  const W = 900, rowH = 26, top = 40, left = 190;
  const H = top + ok.length * rowH * 2 + 80;
  const maxRps = Math.max(1, ...ok.map((r) => r.rps!));
  const maxLat = Math.max(0.1, ...ok.map((r) => r.lat?.p99 ?? 0));
  const bar = (x: number, y: number, w: number, color: string, label: string) =>
    `<rect x="${x}" y="${y}" width="${Math.max(1, w).toFixed(1)}" height="${rowH - 8}" fill="${color}"/><text x="${(x + w + 6).toFixed(1)}" y="${y + rowH / 2}" font-size="11" dominant-baseline="middle">${label}</text>`;
  let body = `<text x="10" y="22" font-size="15" font-weight="600">rps (closed loop)</text>`;
  ok.forEach((r, i) => {
    const y = top + i * rowH;
    body += `<text x="${left - 8}" y="${y + rowH / 2}" font-size="12" text-anchor="end" dominant-baseline="middle">${r.arm}</text>`;
    body += bar(left, y, ((W - left - 90) * r.rps!) / maxRps, '#3e8ede', `${r.rps!.toFixed(0)}`);
  });
  const top2 = top + ok.length * rowH + 40;
  body += `<text x="10" y="${top2 - 12}" font-size="15" font-weight="600">latency at fixed rate (ms): p50 / p99</text>`;
  ok.forEach((r, i) => {
    const y = top2 + i * rowH;
    body += `<text x="${left - 8}" y="${y + rowH / 2}" font-size="12" text-anchor="end" dominant-baseline="middle">${r.arm}</text>`;
    if (!r.lat) return;
    const sc = (v: number) => ((W - left - 120) * v) / maxLat;
    body += `<rect x="${left}" y="${y}" width="${sc(r.lat.p99).toFixed(1)}" height="${rowH - 8}" fill="#f59f00" opacity="0.55"/>`;
    body += `<rect x="${left}" y="${y}" width="${sc(r.lat.p50).toFixed(1)}" height="${rowH - 8}" fill="#e8590c"/>`;
    body += `<text x="${(left + sc(r.lat.p99) + 6).toFixed(1)}" y="${y + rowH / 2}" font-size="11" dominant-baseline="middle">${r.lat.p50.toFixed(2)} / ${r.lat.p99.toFixed(2)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="#fff"/>${body}</svg>\n`;
}
