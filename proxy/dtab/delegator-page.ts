// The admin `GET /delegator` page ("dtab playground"): shows this proxy's base dtab, lets a user
// edit a dtab and a path, asks `/delegator.json` (GET with query) and renders the delegation
// tree, colouring it as Linkerd's UI did (docs/spec/dtab.md §4.4). Self-contained: no CDN, inline JS.
import { Dtab, showPrefix } from './dtab.ts';
import { DtabParseError } from './parser.ts';
import { showPathTree } from './tree.ts';

/** JSON for a <script> block: '<' escaped so no value can close the script element. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** The page for a proxy whose base dtab is `baseDtab` (as configured). */
export function delegatorPage(baseDtab: string): string {
  let dentries: Array<{ prefix: string; dst: string }> = [];
  let parseError = '';
  try {
    dentries = Dtab.parse(baseDtab).dentries.map((d) => ({ prefix: showPrefix(d.prefix), dst: showPathTree(d.dst) }));
  } catch (e) {
    if (!(e instanceof DtabParseError)) throw e;
    parseError = e.message;
  }
  // One dentry per line in the editor; newlines are whitespace in the grammar, ';' separates.
  const editable = dentries.map((d) => `${d.prefix} => ${d.dst};`).join('\n') || baseDtab;
  const rows = dentries.map((d) => `<tr><td>${esc(d.prefix)}</td><td>=&gt;</td><td>${esc(d.dst)}</td></tr>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshlet — dtab playground</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; margin: 20px; color: #1f2933; max-width: 1100px; }
 textarea, input { font: 13px ui-monospace, monospace; width: 100%; box-sizing: border-box; padding: 6px; }
 textarea { height: 140px; }
 button { margin-top: 8px; padding: 6px 14px; }
 table.base { font: 13px ui-monospace, monospace; border-collapse: collapse; margin-bottom: 12px; }
 table.base td { padding: 1px 8px 1px 0; }
 ul.tree, ul.tree ul { list-style: none; padding-left: 18px; border-left: 1px dotted #cbd2d9; }
 .node { font: 13px ui-monospace, monospace; padding: 2px 0; }
 .type { display: inline-block; min-width: 78px; font-weight: 600; }
 .neg > .label { color: #9aa5b1; } .fail > .label { color: #c92a2a; } .ok > .label { color: #2f9e44; }
 .dentry, .detail { color: #7b8794; font-size: 12px; margin-left: 8px; }
 #error { color: #c92a2a; white-space: pre-wrap; }
</style></head>
<body>
<h1>dtab playground</h1>
<h2>base dtab</h2>
${parseError ? `<p id="base-error">${esc(parseError)}</p>` : `<table class="base" id="base">${rows || '<tr><td>(empty)</td></tr>'}</table>`}
<p>Edit the dtab (add override dentries at the end, as an <code>l5d-dtab</code> header would: later
entries win), pick a path (<code>/svc/&lt;Host&gt;</code> is how a request is named) and delegate.
Every alternative is expanded, including those routing would never reach.</p>
<label>dtab<textarea id="dtab" spellcheck="false"></textarea></label>
<label>path<input id="path" value="/svc/" spellcheck="false"></label>
<button id="go">delegate</button>
<div id="error"></div>
<div id="out"></div>
<script>
'use strict';
document.getElementById('dtab').value = ${scriptJson(editable)};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
// Linkerd's colouring: neg if neg, a leaf whose address is neg, or an alt of only neg children;
// fail for fail and exception nodes.
function isNeg(n) {
  return n.type === 'neg' || (n.type === 'leaf' && n.bound && n.bound.addr && n.bound.addr.type === 'neg') ||
    (n.type === 'alt' && n.alt.every(isNeg));
}
function cls(n) { return n.type === 'fail' || n.type === 'exception' ? 'fail' : isNeg(n) ? 'neg' : n.type === 'leaf' ? 'ok' : ''; }
function render(n, weight) {
  let label = (weight !== undefined ? '<span class="detail">' + esc(weight) + ' ×</span> ' : '') +
    '<span class="type">' + esc(n.type) + '</span>' + esc(n.path || '');
  if (n.dentry) label += '<span class="dentry">' + esc(n.dentry.prefix) + ' =&gt; ' + esc(n.dentry.dst) + '</span>';
  if (n.type === 'leaf') label += '<span class="detail">id ' + esc(n.bound.id) + ' residual ' + esc(n.bound.path) + ' addr ' + esc(JSON.stringify(n.bound.addr)) + '</span>';
  if (n.type === 'exception') label += '<span class="detail">' + esc(n.message) + '</span>';
  let kids = '';
  if (n.type === 'delegate') kids = render(n.delegate);
  else if (n.type === 'alt') kids = n.alt.map((k) => render(k)).join('');
  else if (n.type === 'union') kids = n.union.map((b) => render(b.tree, b.weight)).join('');
  return '<li class="node ' + cls(n) + '"><span class="label">' + label + '</span>' + (kids ? '<ul class="tree">' + kids + '</ul>' : '') + '</li>';
}
async function go() {
  const dtab = document.getElementById('dtab').value;
  const path = document.getElementById('path').value.trim();
  const err = document.getElementById('error');
  const out = document.getElementById('out');
  try {
    const r = await fetch('delegator.json?' + new URLSearchParams({ dtab, path }));
    const text = await r.text();
    if (!r.ok) { err.textContent = text; out.innerHTML = ''; return; }
    err.textContent = '';
    out.innerHTML = '<ul class="tree">' + render(JSON.parse(text)) + '</ul>';
  } catch (e) { err.textContent = String(e); out.innerHTML = ''; }
}
document.getElementById('go').addEventListener('click', go);
document.getElementById('path').addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
</script>
</body></html>
`;
}
