// The mesh page: one self-contained HTML document (no CDN, no build), drawing the topology as
// SVG and the live split and proxies as tables, refreshed by polling the JSON API.
export function meshPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meshlet — mesh</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --fg: #1f2933; --muted: #7b8794; --ok: #2f9e44; --bad: #9aa5b1; --warn: #e8590c; --bg: #fbfcfd; }
  body { font: 14px/1.4 system-ui, -apple-system, Segoe UI, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
  header { padding: 12px 20px; border-bottom: 1px solid #e4e7eb; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: var(--muted); }
  main { padding: 12px 20px; display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 20px; }
  section h2 { font-size: 15px; margin: 8px 0; }
  #graph { width: 100%; min-height: 420px; border: 1px solid #e4e7eb; background: #fff; border-radius: 6px; }
  .node rect { fill: #fff; stroke: #3e4c59; stroke-width: 1.2; rx: 6; }
  .node text { font-size: 12px; text-anchor: middle; dominant-baseline: middle; }
  .edge { stroke: var(--ok); stroke-width: 1.6; fill: none; }
  .edge.broken { stroke: var(--bad); stroke-dasharray: 6 4; }
  .elabel { font-size: 10px; fill: #323f4b; text-anchor: middle; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
  .elabel.broken { fill: var(--warn); font-weight: 600; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 14px; background: #fff; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e4e7eb; font-size: 12.5px; }
  th { color: var(--muted); font-weight: 600; }
  .bar { height: 8px; background: #cbd2d9; border-radius: 4px; position: relative; min-width: 80px; }
  .bar span { position: absolute; left: 0; top: 0; bottom: 0; background: #3e8ede; border-radius: 4px; }
  .nack { color: #c92a2a; }
  .empty { color: var(--muted); font-style: italic; }
</style>
</head>
<body>
<header><h1>meshlet mesh</h1><span class="meta" id="status">loading…</span></header>
<main>
  <section>
    <h2>Topology <span class="meta" id="window"></span></h2>
    <svg id="graph" role="img" aria-label="service topology"></svg>
  </section>
  <section>
    <h2>Traffic split</h2>
    <div id="splits"><p class="empty">no routes yet</p></div>
    <h2>Proxies</h2>
    <div id="proxies"><p class="empty">no proxies yet</p></div>
  </section>
</main>
<script>
'use strict';
const NS = 'http://www.w3.org/2000/svg';
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
// Layered layout: a node's column is its longest distance from a source (cycles cut).
function layout(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let changed = false;
    for (const e of edges) {
      const d = (depth.get(e.source) || 0) + 1;
      if (depth.has(e.destination) && d > depth.get(e.destination) && d < nodes.length) { depth.set(e.destination, d); changed = true; }
    }
    if (!changed) break;
  }
  const cols = new Map();
  for (const n of nodes) { const d = depth.get(n.id) || 0; if (!cols.has(d)) cols.set(d, []); cols.get(d).push(n); }
  const pos = new Map();
  const colW = 350, rowH = 80;
  let maxRows = 1;
  for (const [d, list] of cols) { list.sort((a, b) => (a.id < b.id ? -1 : 1)); maxRows = Math.max(maxRows, list.length); list.forEach((n, i) => pos.set(n.id, { x: 90 + d * colW, y: 45 + i * rowH })); }
  return { pos, width: 180 + (cols.size - 1) * colW, height: Math.max(420, 90 + maxRows * rowH) };
}
function drawGraph(t) {
  const svg = document.getElementById('graph');
  svg.replaceChildren();
  if (t.nodes.length === 0) { svg.appendChild(el('text', { x: 20, y: 30, class: 'elabel' }, 'no traffic reported yet')); return; }
  const { pos, width, height } = layout(t.nodes, t.edges);
  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  svg.style.height = height + 'px';
  const defs = el('defs');
  for (const [id, color] of [['arrow', '#2f9e44'], ['arrow-broken', '#9aa5b1']]) {
    const m = el('marker', { id, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
    m.appendChild(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: color }));
    defs.appendChild(m);
  }
  svg.appendChild(defs);
  for (const e of t.edges) {
    const a = pos.get(e.source), b = pos.get(e.destination);
    if (!a || !b) continue;
    const x1 = a.x + 70, y1 = a.y, x2 = b.x - 70, y2 = b.y;
    const mx = (x1 + x2) / 2;
    const g = el('g', { class: 'edge-group', 'data-source': e.source, 'data-destination': e.destination });
    g.appendChild(el('path', { class: 'edge' + (e.broken ? ' broken' : ''), d: 'M' + x1 + ',' + y1 + ' C' + mx + ',' + y1 + ' ' + mx + ',' + y2 + ' ' + x2 + ',' + y2, 'marker-end': 'url(#' + (e.broken ? 'arrow-broken' : 'arrow') + ')' }));
    const label = e.broken ? e.reason + ' · ' + e.rps + ' rps' : e.rps + ' rps · ' + +(e.successRate * 100).toFixed(1) + '% · p99 ' + e.p99Ms + 'ms';
    g.appendChild(el('text', { class: 'elabel' + (e.broken ? ' broken' : ''), x: mx, y: (y1 + y2) / 2 - 7 }, label));
    svg.appendChild(g);
  }
  for (const n of t.nodes) {
    const p = pos.get(n.id);
    const g = el('g', { class: 'node', 'data-id': n.id, transform: 'translate(' + (p.x - 70) + ',' + (p.y - 20) + ')' });
    g.appendChild(el('rect', { width: 140, height: 40 }));
    g.appendChild(el('text', { x: 70, y: 20 }, n.id));
    svg.appendChild(g);
  }
}
function drawSplits(splits) {
  const box = document.getElementById('splits');
  if (!splits.length) { box.innerHTML = '<p class="empty">no weighted routes</p>'; return; }
  box.innerHTML = splits.map((s) => '<table class="split" data-service="' + esc(s.service) + '"><tr><th>' + esc(s.service) + ' · ' + esc(s.route) + '</th><th>configured</th><th>observed</th><th></th></tr>' +
    s.versions.map((v) => '<tr data-version="' + esc(v.version) + '"><td>' + esc(v.version || '(all)') + '</td><td>' + v.weight + '%</td><td>' + (v.observed === null ? '–' : v.observed.toFixed(1) + '%') + '</td><td><div class="bar"><span style="width:' + (v.observed || 0) + '%"></span></div></td></tr>').join('') + '</table>').join('');
}
function drawProxies(p) {
  const box = document.getElementById('proxies');
  const list = p.proxies || [];
  if (!list.length) { box.innerHTML = '<p class="empty">no proxies connected</p>'; return; }
  box.innerHTML = '<table><tr><th>node</th><th>service</th><th>config</th><th>status</th><th>last seen</th></tr>' + list.map((x) =>
    '<tr class="proxy" data-node="' + esc(x.node) + '"><td>' + esc(x.node) + '</td><td>' + esc(x.service) + (x.labels && x.labels.version ? ':' + esc(x.labels.version) : '') + '</td><td>' + esc(x.acked ? x.acked.version : '–') + '</td><td' +
    (x.status === 'NACKED' ? ' class="nack">NACK: ' + esc(x.nacked ? x.nacked.error : '') : '>' + esc(x.status)) + '</td><td>' + esc(x.last_seen ? new Date(x.last_seen).toLocaleTimeString() : '') + '</td></tr>').join('') + '</table>';
}
// With --token-file, open the page as http://host:15014/#token=<token>: the fragment never leaves the browser.
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const headers = token ? { authorization: 'Bearer ' + token } : {};
async function refresh() {
  try {
    const [t, s, p] = await Promise.all(['topology', 'splits', 'proxies'].map((x) => fetch('api/v1/' + x, { headers }).then((r) => { if (!r.ok) throw new Error(x + ': HTTP ' + r.status); return r.json(); })));
    drawGraph(t); drawSplits(s.splits || []); drawProxies(p);
    document.getElementById('window').textContent = '(last ' + t.window_s + ' s)';
    document.getElementById('status').textContent = 'updated ' + new Date().toLocaleTimeString() + ' · snapshot ' + (p.version ?? '–');
  } catch (e) {
    document.getElementById('status').textContent = 'control server unreachable: ' + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
}
