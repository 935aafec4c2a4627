// The mesh page: one self-contained HTML document (no CDN, no build), drawing the topology as
// SVG and the live split and proxies as tables, refreshed by polling the JSON API.
//
// It is never blank while its first fetch is in flight: when the request may see the data (no
// token configured, or a valid bearer header) the server renders the tables into the document
// and embeds the current data for the graph; otherwise (a token, which the browser only has in
// the URL fragment) it says "loading…" and draws the last data this tab saw.
import type { NodeView } from '../discovery/server.ts';
import type { Split, Topology } from './topology.ts';

export interface MeshData {
  topology: Topology;
  splits: Split[];
  proxies: { version: string | null; proxies: NodeView[] };
  at: string;                // when the server took this data (ISO)
  canaries?: unknown[];      // GET /api/v1/canaries (control/canary/): phase, weight over time, checks, events
}

// The table renderers run in the browser (every refresh) and here (the first paint), so the two
// cannot drift. Plain JS in a string because it runs in both; no template literals inside.
const RENDER_JS = String.raw`
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');
function splitsHtml(splits) {
  if (!splits.length) return '<p class="empty">no weighted routes</p>';
  return splits.map((s) => '<table class="split" data-service="' + esc(s.service) + '"><tr><th>' + esc(s.service) + ' · ' + esc(s.route) + '</th><th>configured</th><th>observed</th><th></th></tr>' +
    s.versions.map((v) => '<tr data-version="' + esc(v.version) + '"><td>' + esc(v.version || '(all)') + '</td><td>' + Number(v.weight) + '%</td><td>' + (v.observed === null ? '–' : Number(v.observed).toFixed(1) + '%') + '</td><td><div class="bar"><span style="width:' + Number(v.observed || 0) + '%"></span></div></td></tr>').join('') + '</table>').join('');
}
// A proxy whose stream is gone is shown as disconnected with what it ran when last seen, never
// as SYNCED: the control server cannot know what a dead proxy serves.
function statusCell(x) {
  if (x.status === 'DISCONNECTED') return '<td class="down">disconnected since ' + esc(clock(x.disconnected_at || x.last_seen)) + ' (was ' + esc(x.config_status || '?') + ')</td>';
  if (x.status === 'NACKED') return '<td class="nack">NACK: ' + esc(x.nacked ? x.nacked.error : '') + '</td>';
  return '<td>' + esc(x.status) + '</td>';
}
// Each canary: phase and weight, its weight over time (a step line, 0-100 %), the last checks
// with value and threshold, and the latest events (Flagger's wording).
function canariesHtml(list) {
  if (!list || !list.length) return '<p class="empty">no canaries</p>';
  return list.map((c) => {
    const s = c.status;
    const w = c.weights || [];
    const t0 = w.length ? Date.parse(w[0].time) : 0, t1 = w.length ? Math.max(Date.parse(w[w.length - 1].time), t0 + 1) : 1;
    const pts = w.map((p, i) => { const x = (280 * (Date.parse(p.time) - t0)) / (t1 - t0); const prev = i ? w[i - 1].weight : p.weight; return x.toFixed(1) + ',' + (40 - 0.4 * prev).toFixed(1) + ' ' + x.toFixed(1) + ',' + (40 - 0.4 * p.weight).toFixed(1); }).join(' ');
    const checks = (s.checks || []).map((k) => '<tr class="check ' + esc(k.result) + '"><td>' + esc(k.metric) + '</td><td>' + esc(k.result) + '</td><td>' + (k.value === null ? '–' : esc(k.value)) + '</td><td>' + (k.min === null ? '' : '≥ ' + esc(k.min)) + (k.max === null ? '' : ' ≤ ' + esc(k.max)) + '</td><td>' + esc(k.samples) + '/' + esc(k.needed) + '</td></tr>').join('');
    const events = (c.events || []).slice(-6).reverse().map((e) => '<li class="' + (e.type === 'Warning' ? 'warn' : '') + '">' + esc(clock(e.time)) + ' ' + esc(e.message) + '</li>').join('');
    return '<div class="canary" data-canary="' + esc(c.name) + '" data-phase="' + esc(s.phase) + '"><b>' + esc(c.name) + '</b> ' + esc(s.phase) + ' · ' + esc(s.primary || '?') + ' → ' + esc(s.canary || '–') + ' · weight ' + Number(s.canaryWeight) + '% · failed checks ' + Number(s.failedChecks) + '/' + Number(c.threshold) +
      '<svg class="spark" viewBox="0 0 280 42" preserveAspectRatio="none"><polyline points="' + pts + '"/></svg>' +
      (checks ? '<table><tr><th>metric</th><th>result</th><th>value</th><th>threshold</th><th>samples</th></tr>' + checks + '</table>' : '') + '<ul class="events">' + events + '</ul></div>';
  }).join('');
}
function proxiesHtml(p) {
  const list = (p && p.proxies) || [];
  if (!list.length) return '<p class="empty">no proxies connected</p>';
  return '<table><tr><th>node</th><th>service</th><th>config</th><th>status</th><th>last seen</th></tr>' + list.map((x) =>
    '<tr class="proxy' + (x.connected ? '' : ' down') + '" data-node="' + esc(x.node) + '" data-status="' + esc(x.status) + '"><td>' + esc(x.node) + '</td><td>' + esc(x.service) + (x.labels && x.labels.version ? ':' + esc(x.labels.version) : '') + '</td><td>' + esc(x.acked ? x.acked.version : '–') + '</td>' +
    statusCell(x) + '<td>' + esc(clock(x.last_seen)) + '</td></tr>').join('') + '</table>';
}
`;

const render = new Function(`${RENDER_JS}\nreturn { splitsHtml, proxiesHtml, canariesHtml, clock };`)() as {
  splitsHtml(s: Split[]): string; proxiesHtml(p: MeshData['proxies']): string; canariesHtml(c: unknown[] | undefined): string; clock(iso: string): string;
};

/** Embedded JSON must not be able to close its script element (node ids come from the network). */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

export function meshPage(data: MeshData | null): string {
  const loading = '<p class="empty">loading…</p>';
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
  tr.down td { color: var(--muted); }
  td.down { color: var(--warn); font-weight: 600; }
  .empty { color: var(--muted); font-style: italic; }
  .canary { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; padding: 6px 8px; margin-bottom: 10px; }
  .spark { width: 100%; height: 42px; display: block; margin: 4px 0; background: #f5f7fa; }
  .spark polyline { fill: none; stroke: #3e8ede; stroke-width: 1.5; }
  tr.check.fail td, tr.check.error td { color: #c92a2a; } tr.check.insufficient td { color: var(--warn); }
  .events { margin: 0; padding-left: 16px; font-size: 12px; } .events li.warn { color: #c92a2a; }
</style>
</head>
<body>
<header><h1>meshlet mesh</h1><span class="meta" id="status">${data ? `snapshot ${data.proxies.version ?? '–'} · as of ${render.clock(data.at)} (loading live data…)` : 'loading…'}</span></header>
<main>
  <section>
    <h2>Topology <span class="meta" id="window"></span></h2>
    <svg id="graph" role="img" aria-label="service topology"></svg>
  </section>
  <section>
    <h2>Traffic split</h2>
    <div id="splits">${data ? render.splitsHtml(data.splits) : loading}</div>
    <h2>Canaries</h2>
    <div id="canaries">${data ? render.canariesHtml(data.canaries) : loading}</div>
    <h2>Proxies</h2>
    <div id="proxies">${data ? render.proxiesHtml(data.proxies) : loading}</div>
  </section>
</main>
<script id="initial" type="application/json">${data ? scriptJson(data) : 'null'}</script>
<script>
'use strict';
const NS = 'http://www.w3.org/2000/svg';
${RENDER_JS}
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
function draw(d) {
  drawGraph(d.topology);
  document.getElementById('splits').innerHTML = splitsHtml(d.splits || []);
  document.getElementById('proxies').innerHTML = proxiesHtml(d.proxies);
  document.getElementById('canaries').innerHTML = canariesHtml(d.canaries);
  document.getElementById('window').textContent = '(last ' + d.topology.window_s + ' s)';
}
// With --token-file, open the page as http://host:15014/#token=<token>: the fragment never leaves the browser.
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const headers = token ? { authorization: 'Bearer ' + token } : {};
// The last data this tab drew, so a reload (or a token-protected page, which arrives without
// data) shows it, marked as such, instead of nothing while the first fetch is in flight.
const LAST = 'meshlet-mesh-last';
let shown = JSON.parse(document.getElementById('initial').textContent);
if (!shown) { try { shown = JSON.parse(sessionStorage.getItem(LAST) || 'null'); } catch (e) { shown = null; } if (shown) document.getElementById('status').textContent = 'loading… (showing data from ' + clock(shown.at) + ')'; }
if (shown) draw(shown);
async function refresh() {
  try {
    const [t, s, p, c] = await Promise.all(['topology', 'splits', 'proxies', 'canaries'].map((x) => fetch('api/v1/' + x, { headers }).then((r) => { if (!r.ok) throw new Error(x + ': HTTP ' + r.status); return r.json(); })));
    shown = { topology: t, splits: s.splits || [], proxies: p, canaries: c.canaries || [], at: new Date().toISOString() };
    draw(shown);
    try { sessionStorage.setItem(LAST, JSON.stringify(shown)); } catch (e) { /* storage full or disabled: only the reload view loses */ }
    document.getElementById('status').textContent = 'updated ' + clock(shown.at) + ' · snapshot ' + (p.version ?? '–');
  } catch (e) {
    document.getElementById('status').textContent = 'control server unreachable: ' + e.message + (shown ? ' (showing data from ' + clock(shown.at) + ')' : '');
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
}
