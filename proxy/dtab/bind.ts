// Binding (delegation): a logical path through the dtab, the configured namers and the system
// namer (`/$/…`) to bound names (docs/spec/dtab.md §2.3-2.5, §2.8). Lazy through Alt (stop at the
// first non-Neg; Fail and errors stop everything), eager through Union (drop Neg/Fail branches).
import type { Dtab } from './dtab.ts';
import { showPath, startsWith, utf8Elem, type Path } from './path.ts';
import { EMPTY, FAIL, NEG, simplify, type Bound, type NameTree } from './tree.ts';

/** A leaf during binding: an unbound path (re-enters the dtab) or a bound name. */
export type Name = Path | Bound;
export const isBound = (n: Name): n is Bound => !Array.isArray(n);

/**
 * A namer, mounted at a prefix (configured namers at `/#/<name>`, classpath ones at `/$/<class>`),
 * is asked about the rest of the path. It answers Neg for names it does not know (so dtab
 * alternation falls back), a tree of unbound paths (which re-enter the dtab), or bound leaves.
 * It may throw: the binding then fails with a BindError('namer', <message>).
 * Answers must not change for the life of the Interpreter (bindings are cached).
 */
export interface Namer { lookup(rest: Path): NameTree<Name> }

/**
 * Binding errors are thrown (never returned) as BindError: `max-depth` (a loop, or more than
 * maxDepth nested lookups) or `namer` (a namer threw, or an unknown `/$/<class>`). Linkerd
 * answers both with a 502 carrying the message.
 */
export class BindError extends Error {
  readonly kind: 'max-depth' | 'namer';
  constructor(kind: 'max-depth' | 'namer', message: string) {
    super(message);
    this.name = 'BindError';
    this.kind = kind;
  }
}

export const MAX_DEPTH = 100;

/** A bound tree: Neg, Fail, Empty, Leaf(Bound) or a Union of those (never an Alt). */
export type BoundTree = NameTree<Bound>;

// Java's Integer.parseInt: optional sign, decimal digits, 32-bit range.
const INT = /^[+-]?[0-9]+$/;
function parseInt32(s: string): number | null {
  if (!INT.test(s)) return null;
  const n = Number(s);
  return n >= -2147483648 && n <= 2147483647 ? n : null;
}

const leafOf = <T>(v: T): NameTree<T> => ({ t: 'leaf', v });
function samePath(a: Path, b: Path): boolean {
  if (a.length !== b.length) return false;
  for (let i = a.length - 1; i >= 0; i--) if (a[i] !== b[i]) return false;
  return true;
}
const nsErr = (e: unknown): BindError => (e instanceof BindError ? e : new BindError('namer', e instanceof Error ? e.message : String(e)));

/** `/$/inet/<host>/<port>[/rest]`, then `/$/inet/<port>[/rest]` (host form checked first). */
function inet(kind: string, path: Path): NameTree<Name> | null {
  const port2 = path.length >= 4 ? parseInt32(path[3]) : null;
  if (port2 !== null) {
    return leafOf({ id: path.slice(0, 4), residual: path.slice(4), addr: { host: utf8Elem(path[2]), port: port2 } });
  }
  const port1 = path.length >= 3 ? parseInt32(path[2]) : null;
  if (port1 !== null) {
    // Finagle's Address(port) is an InetSocketAddress(port), which rejects ports out of range.
    if (port1 < 0 || port1 > 65535) throw new BindError('namer', `port out of range:${port1}`);
    return leafOf({ id: path.slice(0, 3), residual: path.slice(3), addr: { host: 'localhost', port: port1 } });
  }
  return null; // malformed: falls through to class loading, i.e. "Unknown namer: inet"
}

// Linkerd's classpath namers (namer/core io/buoyant/{http,hostport,rinet}.scala). Their regexes
// are ASCII, so matching the latin-1 byte elements is the same as matching Path.Utf8's strings.
const METHOD = /^[A-Z]+$/;
const HOST = /^[A-Za-z0-9.:_-]+$/;
const DNS_LABEL = /^[a-z0-9][-a-z0-9]*$/; // Linkerd's ([a-z0-9][-a-z0-9]*[a-z0-9]?), <= 63 chars

/** Java's String.split(literal) with limit 0: trailing empty strings are removed. */
function javaSplit(s: string, sep: string): string[] {
  if (!s.includes(sep)) return [s];
  const parts = s.split(sep);
  while (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/**
 * Linkerd's RewritingNamer: Neg for the empty path or when `rewrite` declines; else the rewritten
 * (unbound) path, which re-enters the dtab. A rewrite that would make an empty element (e.g.
 * `:80` as host:port) declines too: Linkerd would build a path no dtab can name.
 */
function rewriting(rewrite: (r: Path) => Path | null): Namer {
  return {
    lookup(r) {
      if (r.length === 0) return NEG;
      const p = rewrite(r);
      if (p === null || p.includes('')) return NEG;
      return leafOf(p);
    },
  };
}

function hostColonPort(s: string): [string, string] | null {
  const parts = javaSplit(s, ':');
  if (parts.length !== 2 || parts[1].length > 63 || !DNS_LABEL.test(parts[1])) return null;
  return [parts[0], parts[1]];
}

function dropPort(h: string): string {
  const i = h.indexOf(':');
  return i > 0 ? h.slice(0, i) : h;
}

function subdomain(domain: string, host: string): string | null {
  const sfx = `.${domain}`;
  const h = dropPort(host);
  return h.endsWith(sfx) && h.length > sfx.length ? h.slice(0, h.length - sfx.length) : null;
}

/** Linkerd 1's classpath namers (`/$/<class>/…`), by class name. */
export const LINKERD_CLASSPATH: ReadonlyMap<string, Namer> = new Map<string, Namer>([
  // /$/io.buoyant.rinet/<port>/<host>[/rest] ≡ /$/inet/<host>/<port>: binds (Resolver "inet!host:port").
  ['io.buoyant.rinet', {
    lookup(r) {
      if (r.length < 2) return NEG;
      const port = parseInt32(r[0]);
      if (port === null) throw new BindError('namer', `For input string: "${utf8Elem(r[0])}"`);
      return leafOf({ id: ['$', 'io.buoyant.rinet', r[0], r[1]], residual: r.slice(2), addr: { host: utf8Elem(r[1]), port } });
    },
  }],
  ['io.buoyant.hostportPfx', rewriting((r) => {
    const hp = r.length >= 2 ? hostColonPort(r[1]) : null;
    return hp && [r[0], hp[0], hp[1], ...r.slice(2)];
  })],
  ['io.buoyant.porthostPfx', rewriting((r) => {
    const hp = r.length >= 2 ? hostColonPort(r[1]) : null;
    return hp && [r[0], hp[1], hp[0], ...r.slice(2)];
  })],
  ['io.buoyant.http.anyMethod', rewriting((r) => (METHOD.test(r[0]) ? r.slice(1) : null))],
  ['io.buoyant.http.anyMethodPfx', rewriting((r) => (r.length >= 2 && METHOD.test(r[1]) ? [r[0], ...r.slice(2)] : null))],
  ['io.buoyant.http.anyHost', rewriting((r) => (HOST.test(r[0]) ? r.slice(1) : null))],
  ['io.buoyant.http.anyHostPfx', rewriting((r) => (r.length >= 2 && HOST.test(r[1]) ? [r[0], ...r.slice(2)] : null))],
  ['io.buoyant.http.subdomainOf', rewriting((r) => {
    if (r.length < 2 || !HOST.test(r[0]) || !HOST.test(r[1])) return null;
    const sub = subdomain(r[0], r[1]);
    return sub === null ? null : [sub, ...r.slice(2)];
  })],
  ['io.buoyant.http.subdomainOfPfx', rewriting((r) => {
    if (r.length < 3 || !HOST.test(r[0]) || !HOST.test(r[2])) return null;
    const sub = subdomain(r[0], r[2]);
    return sub === null ? null : [r[1], sub, ...r.slice(3)];
  })],
  ['io.buoyant.http.domainToPath', rewriting((r) => (HOST.test(r[0]) ? [...javaSplit(r[0], '.').reverse(), ...r.slice(1)] : null))],
  ['io.buoyant.http.domainToPathPfx', rewriting((r) => (r.length >= 2 && HOST.test(r[1]) ? [r[0], ...javaSplit(r[1], '.').reverse(), ...r.slice(2)] : null))],
]);

export interface InterpreterOptions {
  /** Nested-lookup limit (Finagle's namerMaxDepth); default 100. */
  maxDepth?: number;
  /** Extra `/$/<class>` namers (tests); Linkerd's classpath namers are always present. */
  classpath?: Record<string, Namer> | ReadonlyMap<string, Namer>;
  /** Entries kept in the binding cache (path x local dtab); default 1000. */
  cacheSize?: number;
}

interface CacheEntry {
  readonly key: string;
  /** The path, for entries without an override (those are also indexed by last element). */
  readonly path: Path | null;
  tree: BoundTree | null;
  err: BindError | null;
  used: boolean;
}

// LRU keys: elements joined by U+0100, a char no element can hold (elements are bytes), so the
// key is injective; an override adds U+0101 + its show form.
const SEP = '\u0100';
const LOCAL_SEP = '\u0101';

/**
 * One interpreter per config snapshot: a base dtab plus namers. `bind` answers from a bounded
 * cache keyed by (path, local dtab) — the base dtab is fixed per interpreter. Without an
 * override the lookup is one Map.get by the path's last element plus an element compare: no
 * key string is built, nothing is allocated. Eviction is CLOCK (second chance, an LRU
 * approximation): a hit only sets a flag, no Map reordering per request.
 */
export class Interpreter {
  readonly base: Dtab;
  readonly maxDepth: number;
  private readonly namers: ReadonlyArray<{ prefix: Path; namer: Namer }>;
  private readonly classpath: ReadonlyMap<string, Namer>;
  /** Every entry, in CLOCK order, by full key. */
  private readonly lru = new Map<string, CacheEntry>();
  /** No-override entries by last path element ('' for the empty path); rarely more than one. */
  private readonly byLast = new Map<string, CacheEntry | CacheEntry[]>();
  private readonly cacheMax: number;

  constructor(base: Dtab, namers: ReadonlyArray<{ prefix: Path; namer: Namer }> = [], opts: InterpreterOptions = {}) {
    this.base = base;
    this.namers = namers;
    this.maxDepth = opts.maxDepth ?? MAX_DEPTH;
    this.cacheMax = Math.max(1, opts.cacheSize ?? 1000);
    const extra = opts.classpath instanceof Map ? opts.classpath : Object.entries(opts.classpath ?? {});
    this.classpath = new Map([...LINKERD_CLASSPATH, ...extra]);
  }

  /**
   * Bind `path` against base ++ local (local = ctx ++ user override dtab; omit or pass an empty
   * Dtab for none). Returns Neg | Fail | Empty | Leaf(Bound) | Union; throws BindError.
   */
  bind(path: Path, local?: Dtab): BoundTree {
    const hasLocal = local !== undefined && local.dentries.length > 0;
    let hit: CacheEntry | undefined;
    let key: string | null = null;
    if (!hasLocal) hit = this.findPlain(path);
    else hit = this.lru.get((key = path.join(SEP) + LOCAL_SEP + local.show()));
    if (hit !== undefined) {
      hit.used = true;
      if (hit.err !== null) throw hit.err;
      return hit.tree!;
    }
    const entry: CacheEntry = { key: key ?? path.join(SEP), path: hasLocal ? null : path.slice(), tree: null, err: null, used: false };
    try {
      entry.tree = this.bindWith(hasLocal ? this.base.concat(local) : this.base, path);
    } catch (e) {
      if (!(e instanceof BindError)) throw e;
      entry.err = e;
    }
    this.insert(entry);
    if (entry.err !== null) throw entry.err;
    return entry.tree!;
  }

  /** Entries in the binding cache (for stats and tests). */
  get cacheEntries(): number { return this.lru.size; }

  private findPlain(path: Path): CacheEntry | undefined {
    const b = this.byLast.get(path.length === 0 ? '' : path[path.length - 1]);
    if (b === undefined) return undefined;
    if (!Array.isArray(b)) return samePath(b.path!, path) ? b : undefined;
    for (let i = 0; i < b.length; i++) if (samePath(b[i].path!, path)) return b[i];
    return undefined;
  }

  private insert(e: CacheEntry): void {
    if (this.lru.size >= this.cacheMax) this.evictOne();
    this.lru.set(e.key, e);
    if (e.path === null) return;
    const last = e.path.length === 0 ? '' : e.path[e.path.length - 1];
    const b = this.byLast.get(last);
    if (b === undefined) this.byLast.set(last, e);
    else if (Array.isArray(b)) b.push(e);
    else this.byLast.set(last, [b, e]);
  }

  private evictOne(): void {
    // Oldest first; an entry used since it was last passed gets a second chance at the back.
    // Terminates: re-queued entries come round again with `used` cleared.
    for (const [k, e] of this.lru) {
      if (e.used) { e.used = false; this.lru.delete(k); this.lru.set(k, e); continue; }
      this.lru.delete(k);
      if (e.path !== null) this.unindex(e);
      return;
    }
  }

  private unindex(e: CacheEntry): void {
    const last = e.path!.length === 0 ? '' : e.path![e.path!.length - 1];
    const b = this.byLast.get(last);
    if (b === e) this.byLast.delete(last);
    else if (Array.isArray(b)) {
      const rest = b.filter((x) => x !== e);
      if (rest.length === 0) this.byLast.delete(last);
      else this.byLast.set(last, rest.length === 1 ? rest[0] : rest);
    }
  }

  /** Uncached binding of `path` with an explicit, complete dtab (CLI, tests). Throws BindError. */
  bindWith(dtab: Dtab, path: Path): BoundTree {
    return this.bindTree(dtab, leafOf<Name>(path), 0);
  }

  /** One lookup step (§2.3): the dtab; if that is Neg, the configured namers, then `/$/…`. */
  lookup(dtab: Dtab, path: Path): NameTree<Name> {
    const t = dtab.lookup(path);
    return t.t !== 'neg' ? t : this.namerLookup(path);
  }

  /** Steps 2-3 of §2.3 only: configured namers in order (Neg moves on), then the system namer. */
  namerLookup(path: Path): NameTree<Name> {
    for (const { prefix, namer } of this.namers) {
      if (!startsWith(path, prefix)) continue;
      let r: NameTree<Name>;
      try { r = namer.lookup(path.slice(prefix.length)); } catch (e) { throw nsErr(e); }
      if (r.t !== 'neg') return r;
    }
    return this.system(path);
  }

  /** Namer.global: `/$/inet`, `/$/fixedinet`, `/$/fail`, `/$/nil`, `/$/<class>`; else Neg. */
  private system(path: Path): NameTree<Name> {
    if (path.length < 2 || path[0] !== '$') return NEG;
    const cls = path[1];
    if (cls === 'inet' || cls === 'fixedinet') {
      const r = inet(cls, path);
      if (r !== null) return r;
    }
    if (cls === 'fail') return FAIL;
    if (cls === 'nil') return EMPTY;
    const n = this.classpath.get(cls);
    if (n === undefined) throw new BindError('namer', `Unknown namer: ${utf8Elem(cls)} for path: ${showPath(path)}`);
    try { return n.lookup(path.slice(2)); } catch (e) { throw nsErr(e); }
  }

  private bindTree(dtab: Dtab, t: NameTree<Name>, depth: number): BoundTree {
    if (depth > this.maxDepth) throw new BindError('max-depth', `Max recursion level: ${this.maxDepth} reached in Namer lookup`);
    switch (t.t) {
      case 'neg': case 'fail': case 'empty': return t;
      case 'leaf': return isBound(t.v) ? (t as BoundTree) : this.bindTree(dtab, this.lookup(dtab, t.v), depth + 1);
      case 'union': {
        if (t.branches.length === 0) return NEG;
        if (t.branches.length === 1) return this.bindTree(dtab, t.branches[0].tree, depth); // weight ignored
        const oks: Array<{ w: number; tree: BoundTree }> = [];
        let firstErr: BindError | null = null;
        for (const b of t.branches) {
          try { oks.push({ w: b.w, tree: this.bindTree(dtab, b.tree, depth) }); } catch (e) {
            if (!(e instanceof BindError)) throw e;
            firstErr ??= e;
          }
        }
        if (oks.length === 0) throw firstErr!;
        return simplify({ t: 'union', branches: oks }); // drops Neg and Fail branches, keeps Empty
      }
      case 'alt': {
        for (const c of t.trees) {
          const r = this.bindTree(dtab, c, depth); // an error here is the result
          if (r.t === 'neg') continue;
          return r.t === 'fail' ? FAIL : r;
        }
        return NEG;
      }
    }
  }
}

/**
 * The per-request choice from a bound tree (Finagle's Drv): a union branch with probability
 * weight / sum of weights (uniform when the sum is 0), nested unions choosing again inside.
 * `random` returns [0, 1) — inject one for deterministic tests.
 */
export function pickBranch(tree: BoundTree, random: () => number = Math.random): Bound | 'neg' | 'fail' | 'empty' {
  let t = tree;
  for (;;) {
    switch (t.t) {
      case 'leaf': return t.v;
      case 'neg': case 'fail': case 'empty': return t.t;
      case 'alt': // bound trees hold no Alt; take the first alternative defensively
        t = t.trees.length > 0 ? t.trees[0] : NEG;
        continue;
      case 'union': {
        const bs = t.branches;
        if (bs.length === 0) return 'neg';
        let total = 0;
        for (let i = 0; i < bs.length; i++) total += bs[i].w;
        if (!(total > 0)) {
          t = bs[Math.min(bs.length - 1, Math.floor(random() * bs.length))].tree;
          continue;
        }
        let x = random() * total;
        let chosen: BoundTree | null = null;
        let lastPositive = bs[0].tree;
        for (let i = 0; i < bs.length; i++) {
          const w = bs[i].w;
          if (w > 0) lastPositive = bs[i].tree;
          if (x < w) { chosen = bs[i].tree; break; }
          x -= w;
        }
        // Float rounding can leave x just past the last edge: that is the last positive branch.
        t = chosen ?? lastPositive;
      }
    }
  }
}

/** The vectors' encoding of a bound tree (spec §5.1); `alt` never occurs after binding. */
export function encodeBound(t: BoundTree): unknown {
  switch (t.t) {
    case 'neg': case 'fail': case 'empty': return t.t;
    case 'leaf': return { bound: showPath(t.v.id), residual: showPath(t.v.residual) };
    case 'alt': return { alt: t.trees.map(encodeBound) };
    case 'union': return { union: t.branches.map((b) => ({ weight: b.w, tree: encodeBound(b.tree) })) };
  }
}

/** The vectors' encoding of a binding error: `error: max-depth` or `error: namer: <message>`. */
export function encodeError(e: BindError): string {
  return e.kind === 'max-depth' ? 'error: max-depth' : `error: namer: ${e.message}`;
}
