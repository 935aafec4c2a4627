// The layering, checked from the source: every import of every .ts file under proxy/, control/
// and cli/ (static `import`/`export … from`, side-effect imports, `import('…')` — dynamic and
// type positions alike — and `createRequire(…)('…')`) becomes an edge of a file graph, and the
// rules below are asserted on it. The checker is a plain function over that graph, so the unit
// cases can feed it a synthetic graph with a violation and see it fail.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

interface Import {
  /** The specifier as written. */
  spec: string;
  /** Repo-relative path of a relative import (posix separators); null for a package or `node:` builtin. */
  target: string | null;
  line: number;
}
type ImportGraph = Map<string, Import[]>;

/** Comments out of the way (full-line `//` and `/* … *\/` blocks that start a line), offsets kept. */
function blankComments(src: string): string {
  return src
    .replace(/^[ \t]*\/\*[\s\S]*?\*\//gm, (m) => m.replace(/[^\n]/g, ' '))
    .replace(/^[ \t]*\/\/.*$/gm, (m) => ' '.repeat(m.length));
}

const PATTERNS = [
  /(?:^|[\n;])[ \t]*(?:import|export)\b[^;'"`]*?\bfrom\s*['"]([^'"\n]+)['"]/g, // import … from / export … from
  /(?:^|[\n;])[ \t]*import\s*['"]([^'"\n]+)['"]/g, // import 'side-effect'
  /\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/g, // import('…'): dynamic, and typeof import('…') / import('…').T
  /\bcreateRequire\([^)]*\)\(\s*['"]([^'"\n]+)['"]\s*\)/g, // createRequire(import.meta.url)('pkg')
];

/** The imports of one file's source (`file` is repo-relative, posix). */
function importsOf(file: string, src: string): Import[] {
  const text = blankComments(src);
  const out: Import[] = [];
  const seen = new Set<string>();
  for (const re of PATTERNS) {
    for (const m of text.matchAll(re)) {
      const spec = m[1];
      const at = m.index + m[0].lastIndexOf(spec);
      const key = `${spec}@${at}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const target = spec.startsWith('.') ? posix.normalize(posix.join(posix.dirname(file), spec)) : null;
      out.push({ spec, target, line: text.slice(0, at).split('\n').length });
    }
  }
  return out.sort((a, b) => a.line - b.line);
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = posix.join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...tsFiles(rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

function repoGraph(dirs: string[]): ImportGraph {
  const g: ImportGraph = new Map();
  for (const d of dirs) for (const f of tsFiles(d)) g.set(f, importsOf(f, readFileSync(join(ROOT, f), 'utf8')));
  return g;
}

const inDir = (path: string, dir: string) => path.startsWith(`${dir}/`);

/** Every rule broken in `g`, one line each (file:line -> what). Empty = the layering holds. */
function layeringViolations(g: ImportGraph): string[] {
  const out: string[] = [];
  for (const [file, imps] of g) {
    for (const i of imps) {
      const at = `${file}:${i.line} imports '${i.spec}'`;
      if (inDir(file, 'proxy/engine')) {
        const ok = i.spec.startsWith('node:') || (i.target !== null && inDir(i.target, 'proxy/engine'));
        if (!ok) out.push(`${at}: proxy/engine/ imports nothing outside itself (node: builtins only)`);
      }
      if (inDir(file, 'proxy/upstream') && i.target !== null && (inDir(i.target, 'proxy/filters') || inDir(i.target, 'proxy/listener'))) {
        out.push(`${at}: proxy/upstream/ must not import proxy/filters/ or proxy/listener/`);
      }
      if (inDir(file, 'proxy') && i.target === 'proxy/main.ts') out.push(`${at}: nothing under proxy/ imports the composition root proxy/main.ts`);
      if (inDir(file, 'proxy') && i.target !== null && inDir(i.target, 'control')) out.push(`${at}: proxy/ never imports control/`);
    }
  }
  for (const c of importCycles(g)) out.push(`import cycle: ${c.join(' -> ')}`);
  return out;
}

/**
 * File-level cycles: one per strongly connected component of more than one file (or a file that
 * imports itself), written as a path that starts and ends at the same file.
 */
function importCycles(g: ImportGraph): string[][] {
  const edges = (f: string): string[] => [...new Set((g.get(f) ?? []).map((i) => i.target).filter((t): t is string => t !== null && g.has(t)))].sort();
  // Tarjan's SCC, iterative (no recursion limit on a long chain).
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const sccs: string[][] = [];
  for (const start of [...g.keys()].sort()) {
    if (index.has(start)) continue;
    const work: Array<{ v: string; next: string[]; i: number }> = [];
    const visit = (v: string) => {
      index.set(v, counter); low.set(v, counter); counter++;
      stack.push(v); onStack.add(v);
      work.push({ v, next: edges(v), i: 0 });
    };
    visit(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      if (top.i < top.next.length) {
        const w = top.next[top.i++];
        if (!index.has(w)) visit(w);
        else if (onStack.has(w)) low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) { const parent = work[work.length - 1].v; low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!)); }
      if (low.get(top.v) === index.get(top.v)) {
        const scc: string[] = [];
        let w: string;
        do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== top.v);
        if (scc.length > 1 || edges(top.v).includes(top.v)) sccs.push(scc);
      }
    }
  }
  // A concrete cycle in each component: breadth-first from its first file back to itself.
  return sccs.map((scc) => {
    const members = new Set(scc);
    const from = [...scc].sort()[0];
    const prev = new Map<string, string>();
    const queue = [from];
    while (queue.length > 0) {
      const v = queue.shift()!;
      for (const w of edges(v)) {
        if (!members.has(w)) continue;
        if (w === from) {
          return [from, ...pathTo(prev, from, v), from];
        }
        if (!prev.has(w) && w !== from) { prev.set(w, v); queue.push(w); }
      }
    }
    return [...scc, scc[0]];
  }).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** The files from `from` (exclusive) to `to` (inclusive) along the BFS tree. */
function pathTo(prev: Map<string, string>, from: string, to: string): string[] {
  const path: string[] = [];
  for (let x: string | undefined = to; x !== undefined && x !== from; x = prev.get(x)) path.unshift(x);
  return path;
}

const synthetic = (files: Record<string, string>): ImportGraph =>
  new Map(Object.entries(files).map(([f, src]) => [f, importsOf(f, src)]));

describe('the import reader', () => {
  it('sees static, multi-line, export-from, side-effect, dynamic, type-position and createRequire imports; not comments', () => {
    const src = [
      "import { a } from './a.ts';",
      "import type { B } from '../b.ts';",
      'import {',
      '  c,',
      '  d,',
      "} from './c.ts';",
      "export { e } from './e.ts';",
      "export * from './f.ts';",
      "import './side.ts';",
      "import net from 'node:net';",
      "const m = await import('./lazy.ts');",
      "let t: import('./types.ts').T;",
      "const R = createRequire(import.meta.url)('prom-client/lib/registry.js');",
      "// import { no } from './comment.ts';",
      '/* import { no2 } from "./block.ts"; */',
    ].join('\n');
    const imps = importsOf('proxy/x/y.ts', src);
    expect(imps.map((i) => i.target ?? i.spec)).toEqual([
      'proxy/x/a.ts', 'proxy/b.ts', 'proxy/x/c.ts', 'proxy/x/e.ts', 'proxy/x/f.ts', 'proxy/x/side.ts', 'node:net',
      'proxy/x/lazy.ts', 'proxy/x/types.ts', 'prom-client/lib/registry.js',
    ]);
    expect(imps.find((i) => i.target === 'proxy/x/c.ts')!.line).toBe(6);
  });
});

describe('the layering checker (synthetic graphs)', () => {
  it('passes a graph that keeps every rule', () => {
    const g = synthetic({
      'proxy/engine/server.ts': "import net from 'node:net';\nimport { parse } from './http1.ts';",
      'proxy/engine/http1.ts': '',
      'proxy/upstream/pool.ts': "import { ClientConnection } from '../engine/client.ts';",
      'proxy/main.ts': "import { Listener } from './listener/listener.ts';",
      'control/main.ts': "import type { Snapshot } from '../proxy/config/schema.ts';",
    });
    expect(layeringViolations(g)).toEqual([]);
  });

  it('fails each rule, naming the file, line and import', () => {
    const g = synthetic({
      'proxy/engine/server.ts': "import net from 'node:net';\nimport { Cluster } from '../upstream/cluster.ts';\nimport { request } from 'undici';",
      'proxy/upstream/cluster.ts': "import { RetryBudget } from '../filters/retry.ts';\nimport type { L } from '../listener/listener.ts';",
      'proxy/xds/client.ts': "import type { RunningProxy } from '../main.ts';",
      'proxy/admin/admin.ts': "let x: import('../../control/state.ts').State;",
    });
    expect(layeringViolations(g)).toEqual([
      "proxy/engine/server.ts:2 imports '../upstream/cluster.ts': proxy/engine/ imports nothing outside itself (node: builtins only)",
      "proxy/engine/server.ts:3 imports 'undici': proxy/engine/ imports nothing outside itself (node: builtins only)",
      "proxy/upstream/cluster.ts:1 imports '../filters/retry.ts': proxy/upstream/ must not import proxy/filters/ or proxy/listener/",
      "proxy/upstream/cluster.ts:2 imports '../listener/listener.ts': proxy/upstream/ must not import proxy/filters/ or proxy/listener/",
      "proxy/xds/client.ts:1 imports '../main.ts': nothing under proxy/ imports the composition root proxy/main.ts",
      "proxy/admin/admin.ts:1 imports '../../control/state.ts': proxy/ never imports control/",
    ]);
  });

  it('finds cycles (also through type-only and dynamic imports) and reports the path', () => {
    const g = synthetic({
      'proxy/a.ts': "import { b } from './b.ts';",
      'proxy/b.ts': "import type { C } from './c.ts';",
      'proxy/c.ts': "const a = await import('./a.ts');\nimport { d } from './d.ts';",
      'proxy/d.ts': '',
      'proxy/self.ts': "import { x } from './self.ts';",
      'proxy/p.ts': "import { q } from './q.ts';",
      'proxy/q.ts': "import { p } from './p.ts';",
    });
    expect(importCycles(g)).toEqual([
      ['proxy/a.ts', 'proxy/b.ts', 'proxy/c.ts', 'proxy/a.ts'],
      ['proxy/p.ts', 'proxy/q.ts', 'proxy/p.ts'],
      ['proxy/self.ts', 'proxy/self.ts'],
    ]);
    expect(layeringViolations(g)).toContain('import cycle: proxy/a.ts -> proxy/b.ts -> proxy/c.ts -> proxy/a.ts');
    // Break the cycle and it is gone.
    g.set('proxy/c.ts', importsOf('proxy/c.ts', "import { d } from './d.ts';"));
    expect(importCycles(g).map((c) => c[0])).toEqual(['proxy/p.ts', 'proxy/self.ts']);
  });
});

describe('the repository', () => {
  const g = repoGraph(['proxy', 'control', 'cli']);

  it('reads a real graph: every relative import names a file that exists', () => {
    expect(g.size).toBeGreaterThan(50);
    const missing = [...g].flatMap(([f, imps]) => imps.filter((i) => i.target !== null && !existsSync(join(ROOT, i.target))).map((i) => `${f}:${i.line} '${i.spec}'`));
    expect(missing).toEqual([]);
    // The reader found the known edges (a reader that sees nothing would pass every rule).
    expect(g.get('proxy/main.ts')!.map((i) => i.target)).toContain('proxy/runtime.ts');
    expect(g.get('proxy/upstream/pool.ts')!.map((i) => i.target)).toContain('proxy/engine/client.ts');
  });

  it('keeps the layering: engine self-contained, upstream below filters/listener, nobody imports main.ts, proxy never imports control, no cycles', () => {
    const v = layeringViolations(g);
    expect(v, `layering violations:\n${v.join('\n')}`).toEqual([]);
  });
});
