// Binding (delegation): a logical path through the dtab, configured namers and the system namer
// (`/$/…`) to bound names (spec/dtab.md §2.3-2.5, §2.8). Lazy through Alt, eager through Union.
import type { Dtab } from './dtab.ts';
import { EMPTY, FAIL, NEG, leaf, showPath, simplify, startsWith, type Bound, type NameTree, type Path } from './tree.ts';

/** A leaf during binding: an unbound path (re-enters the dtab) or a bound name. */
export type Name = Path | Bound;
export const isBound = (n: Name): n is Bound => !Array.isArray(n);

/** A namer mounted at a prefix (`/#/<name>`): Neg for names it does not know; may throw. */
export interface Namer { lookup(rest: Path): NameTree<Name> }

export class BindError extends Error {
  readonly kind: 'max-depth' | 'namer';
  constructor(kind: 'max-depth' | 'namer', message: string) { super(message); this.kind = kind; }
}

export const MAX_DEPTH = 100;

const INT = /^[+-]?\d+$/;
function parseInt32(s: string): number | null {
  if (!INT.test(s)) return null;
  const n = Number(s);
  return n >= -2147483648 && n <= 2147483647 ? n : null;
}

function inet(kind: string, rest: Path): NameTree<Name> {
  // Host form first: /$/inet/<host>/<port>[/rest], then /$/inet/<port>[/rest] (localhost).
  if (rest.length >= 2 && parseInt32(rest[1]) !== null) {
    return leaf({ id: ['$', kind, rest[0], rest[1]], residual: rest.slice(2), addr: { host: rest[0], port: parseInt32(rest[1])! } });
  }
  if (rest.length >= 1 && parseInt32(rest[0]) !== null) {
    return leaf({ id: ['$', kind, rest[0]], residual: rest.slice(1), addr: { host: 'localhost', port: parseInt32(rest[0])! } });
  }
  throw new BindError('namer', `Unknown namer: ${kind} for path: ${showPath(['$', kind, ...rest])}`);
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const METHOD = /^[A-Z]+$/;
const HOST = /^[A-Za-z0-9.:_-]+$/;
const stripPort = (h: string) => { const i = h.lastIndexOf(':'); return i > 0 ? h.slice(0, i) : h; };

/** Linkerd 1's classpath namers (namer/core), by class name. */
export const LINKERD_CLASSPATH: Record<string, Namer> = {
  'io.buoyant.rinet': {
    lookup: (r) => (r.length >= 2 && parseInt32(r[0]) !== null
      ? leaf({ id: ['$', 'io.buoyant.rinet', r[0], r[1]], residual: r.slice(2), addr: { host: r[1], port: parseInt32(r[0])! } })
      : NEG),
  },
  'io.buoyant.hostportPfx': { lookup: (r) => hostPort(r, false) },
  'io.buoyant.porthostPfx': { lookup: (r) => hostPort(r, true) },
  'io.buoyant.http.anyMethod': { lookup: (r) => (r.length >= 1 && METHOD.test(r[0]) ? leaf(r.slice(1)) : NEG) },
  'io.buoyant.http.anyMethodPfx': { lookup: (r) => (r.length >= 2 && METHOD.test(r[1]) ? leaf([r[0], ...r.slice(2)]) : NEG) },
  'io.buoyant.http.anyHost': { lookup: (r) => (r.length >= 1 && HOST.test(r[0]) ? leaf(r.slice(1)) : NEG) },
  'io.buoyant.http.anyHostPfx': { lookup: (r) => (r.length >= 2 && HOST.test(r[1]) ? leaf([r[0], ...r.slice(2)]) : NEG) },
  'io.buoyant.http.subdomainOf': { lookup: (r) => subdomain(r[0], r[1], [], r.slice(2), r.length >= 2) },
  'io.buoyant.http.subdomainOfPfx': { lookup: (r) => subdomain(r[0], r[2], [r[1]], r.slice(3), r.length >= 3) },
  'io.buoyant.http.domainToPath': { lookup: (r) => (r.length >= 1 ? leaf([...stripPort(r[0]).split('.').reverse(), ...r.slice(1)]) : NEG) },
  'io.buoyant.http.domainToPathPfx': { lookup: (r) => (r.length >= 2 ? leaf([r[0], ...stripPort(r[1]).split('.').reverse(), ...r.slice(2)]) : NEG) },
};

function hostPort(r: Path, portFirst: boolean): NameTree<Name> {
  if (r.length < 2) return NEG;
  const i = r[1].lastIndexOf(':');
  if (i <= 0) return NEG;
  const host = r[1].slice(0, i);
  const port = r[1].slice(i + 1);
  if (!DNS_LABEL.test(port)) return NEG;
  return leaf([r[0], ...(portFirst ? [port, host] : [host, port]), ...r.slice(2)]);
}

function subdomain(domain: string | undefined, host: string | undefined, pfx: string[], rest: Path, ok: boolean): NameTree<Name> {
  if (!ok || domain === undefined || host === undefined) return NEG;
  const h = stripPort(host);
  const suffix = `.${domain}`;
  if (!h.endsWith(suffix) || h.length === suffix.length) return NEG;
  return leaf([...pfx, h.slice(0, -suffix.length), ...rest]);
}

export interface InterpreterOptions {
  maxDepth?: number;
  /** Extra `/$/<class>` namers (tests; Linkerd's classpath namers are always present). */
  classpath?: Record<string, Namer>;
  /** Entries kept in the binding cache (path x local dtab). */
  cacheSize?: number;
}

export type BoundTree = NameTree<Bound>;

/**
 * One interpreter per config snapshot: base dtab + namers. `bind` results are cached per
 * (path, local dtab), LRU-bounded; the no-override case is one Map lookup once warm.
 */
export class Interpreter {
  readonly base: Dtab;
  private namers: Array<{ prefix: Path; namer: Namer }>;
  private maxDepth: number;
  private classpath: Record<string, Namer>;
  private cache = new Map<string, BoundTree | BindError>();
  private cacheSize: number;

  constructor(base: Dtab, namers: Array<{ prefix: Path; namer: Namer }> = [], opts: InterpreterOptions = {}) {
    this.base = base;
    this.namers = namers;
    this.maxDepth = opts.maxDepth ?? MAX_DEPTH;
    this.classpath = { ...LINKERD_CLASSPATH, ...opts.classpath };
    this.cacheSize = opts.cacheSize ?? 1000;
  }

  /** dtab lookup, else configured namers, else the system namer (§2.3). */
  lookup(dtab: Dtab, path: Path): NameTree<Name> {
    const t = dtab.lookup(path);
    if (t.t !== 'neg') return t;
    for (const { prefix, namer } of this.namers) {
      if (!startsWith(path, prefix)) continue;
      let r: NameTree<Name>;
      try { r = namer.lookup(path.slice(prefix.length)); } catch (e) { throw e instanceof BindError ? e : new BindError('namer', (e as Error).message); }
      if (r.t !== 'neg') return r;
    }
    return this.system(path);
  }

  system(path: Path): NameTree<Name> {
    if (path[0] !== '$') return NEG;
    const cls = path[1] ?? '';
    const rest = path.slice(2);
    if (cls === 'inet' || cls === 'fixedinet') return inet(cls, rest);
    if (cls === 'fail') return FAIL;
    if (cls === 'nil') return EMPTY;
    const n = this.classpath[cls];
    if (!n) throw new BindError('namer', `Unknown namer: ${cls} for path: ${showPath(path)}`);
    try { return n.lookup(rest); } catch (e) { throw e instanceof BindError ? e : new BindError('namer', (e as Error).message); }
  }

  /** Bind a logical path against base ++ local; throws BindError. */
  bind(path: Path, local?: Dtab): BoundTree {
    const key = local && local.size > 0 ? `${showPath(path)}\u0000${local.show()}` : showPath(path);
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      if (hit instanceof BindError) throw hit;
      return hit;
    }
    const dtab = local && local.size > 0 ? this.base.concat(local) : this.base;
    let r: BoundTree | BindError;
    try { r = this.bindTree(dtab, leaf(path), 0); } catch (e) { if (!(e instanceof BindError)) throw e; r = e; }
    if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, r);
    if (r instanceof BindError) throw r;
    return r;
  }

  /** Uncached binding with an explicit dtab (CLI, tests). */
  bindWith(dtab: Dtab, path: Path): BoundTree { return this.bindTree(dtab, leaf(path), 0); }

  private bindTree(dtab: Dtab, t: NameTree<Name>, depth: number): BoundTree {
    if (depth > this.maxDepth) throw new BindError('max-depth', `Max recursion level: ${this.maxDepth} reached in Namer lookup`);
    switch (t.t) {
      case 'neg': case 'fail': case 'empty': return t;
      case 'leaf': return isBound(t.v) ? leaf(t.v) : this.bindTree(dtab, this.lookup(dtab, t.v), depth + 1);
      case 'union': {
        if (t.branches.length === 0) return NEG;
        if (t.branches.length === 1) return this.bindTree(dtab, t.branches[0].tree, depth);
        const oks: Array<{ w: number; tree: BoundTree }> = [];
        let firstErr: BindError | null = null;
        for (const b of t.branches) {
          try { oks.push({ w: b.w, tree: this.bindTree(dtab, b.tree, depth) }); } catch (e) {
            if (!(e instanceof BindError)) throw e;
            firstErr ??= e;
          }
        }
        if (oks.length === 0) throw firstErr!;
        return simplify({ t: 'union', branches: oks });
      }
      case 'alt': {
        if (t.trees.length === 0) return NEG;
        for (const c of t.trees) {
          const r = this.bindTree(dtab, c, depth);
          if (r.t === 'fail') return FAIL;
          if (r.t === 'neg') continue;
          return r;
        }
        return NEG;
      }
    }
  }
}

/** The per-request weighted choice among union branches (Drv: probability ∝ weight). */
export function pickBranch(t: BoundTree, random: () => number = Math.random): Bound | 'neg' | 'fail' | 'empty' {
  for (;;) {
    switch (t.t) {
      case 'leaf': return t.v;
      case 'neg': case 'fail': case 'empty': return t.t;
      case 'alt': t = t.trees[0] ?? NEG; continue; // bound trees hold no Alt; defensive
      case 'union': {
        const total = t.branches.reduce((s, b) => s + b.w, 0);
        if (total <= 0) { t = t.branches[Math.floor(random() * t.branches.length)].tree; continue; }
        let x = random() * total;
        let chosen = t.branches[t.branches.length - 1].tree;
        for (const b of t.branches) { if (x < b.w) { chosen = b.tree; break; } x -= b.w; }
        t = chosen;
      }
    }
  }
}

/** Vector encoding of a bound tree (spec §5.1). */
export function encodeBound(t: BoundTree): unknown {
  switch (t.t) {
    case 'neg': case 'fail': case 'empty': return t.t;
    case 'leaf': return { bound: showPath(t.v.id), residual: showPath(t.v.residual) };
    case 'alt': return { alt: t.trees.map(encodeBound) };
    case 'union': return { union: t.branches.map((b) => ({ weight: b.w, tree: encodeBound(b.tree) })) };
  }
}

export function encodeError(e: BindError): string {
  return e.kind === 'max-depth' ? 'error: max-depth' : `error: namer: ${e.message}`;
}
