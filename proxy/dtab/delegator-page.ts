// The admin `/delegator` page ("dtab playground"): edit a dtab and a path, see the delegation tree
// from `/delegator.json`. Self-contained (no CDN).
export function delegatorPage(baseDtab: string): string {
  const initial = JSON.stringify(baseDtab.split(';').map((s) => s.trim()).filter(Boolean).join(';\n'));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshlet — dtab playground</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; margin: 20px; color: #1f2933; max-width: 1100px; }
 textarea, input { font: 13px ui-monospace, monospace; width: 100%; box-sizing: border-box; padding: 6px; }
 textarea { height: 110px; }
 button { margin-top: 8px; padding: 6px 14px; }
 ul.tree, ul.tree ul { list-style: none; padding-left: 18px; border-left: 1px dotted #cbd2d9; }
 .node { font: 13px ui-monospace, monospace; padding: 2px 0; }
 .type { display: inline-block; min-width: 70px; font-weight: 600; }
 .neg { color: #9aa5b1; } .fail, .exception { color: #c92a2a; } .leaf { color: #2f9e44; }
 .dentry { color: #7b8794; font-size: 12px; margin-left: 8px; }
 #error { color: #c92a2a; white-space: pre-wrap; }
</style></head>
<body>
<h1>dtab playground</h1>
<p>The base dtab of this proxy is filled in; add override lines as an <code>l5d-dtab</code> header would
(later entries win), pick a path (<code>/svc/&lt;Host&gt;</code> is what a request is named), and delegate.</p>
<label>dtab<textarea id="dtab"></textarea></label>
<label>path<input id="path" value="/svc/"></label>
<button id="go">delegate</button>
<div id="error"></div>
<div id="out"></div>
<script>
'use strict';
document.getElementById('dtab').value = ${initial};
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
function isNeg(n) { return n.type === 'neg' || (n.type === 'leaf' && n.bound && n.bound.addr && n.bound.addr.type === 'neg') || (n.type === 'alt' && n.alt.every(isNeg)); }
function render(n) {
  const cls = n.type === 'exception' || n.type === 'fail' ? 'fail' : isNeg(n) ? 'neg' : n.type === 'leaf' ? 'leaf' : '';
  let html = '<li class="node ' + cls + '"><span class="type">' + esc(n.type) + '</span>' + esc(n.path || '');
  if (n.dentry) html += '<span class="dentry">' + esc(n.dentry.prefix) + ' =&gt; ' + esc(n.dentry.dst) + '</span>';
  if (n.type === 'leaf') html += ' <span class="dentry">bound ' + esc(n.bound.id) + ' residual ' + esc(n.bound.path) + ' ' + esc(JSON.stringify(n.bound.addr)) + '</span>';
  if (n.type === 'exception') html += ' <span class="dentry">' + esc(n.message) + '</span>';
  const kids = n.type === 'delegate' ? [n.delegate] : n.type === 'alt' ? n.alt : n.type === 'union' ? n.union.map((b) => Object.assign({ weightLabel: b.weight }, b.tree)) : [];
  if (kids.length) html += '<ul class="tree">' + kids.map((k) => (k.weightLabel !== undefined ? '<li class="node">weight ' + k.weightLabel + '</li>' : '') + render(k)).join('') + '</ul>';
  return html + '</li>';
}
async function go() {
  const dtab = document.getElementById('dtab').value.replace(/\\n/g, ' ');
  const path = document.getElementById('path').value;
  const r = await fetch('delegator.json?' + new URLSearchParams({ dtab, path }));
  const text = await r.text();
  if (!r.ok) { document.getElementById('error').textContent = text; document.getElementById('out').innerHTML = ''; return; }
  document.getElementById('error').textContent = '';
  document.getElementById('out').innerHTML = '<ul class="tree">' + render(JSON.parse(text)) + '</ul>';
}
document.getElementById('go').addEventListener('click', go);
</script>
</body></html>
`;
}
