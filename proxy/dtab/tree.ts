// Name trees and their canonical printing (Finagle's show forms, docs/spec/dtab.md §1.4, §1.8, §2.6).
import { showPath, type Path } from './path.ts';

// Paths live in path.ts; re-exported here because trees and paths are used together.
export { showElem, showPath, startsWith, type Path } from './path.ts';

/**
 * A bound name: the concrete id (which client to use), the part of the logical path the namer
 * did not consume, and the address: `{host, port}` for `/$/inet`-style names, `null` while it is
 * pending (unknown yet), absent when the id itself is what the proxy routes on (`/#/meshlet/…`).
 */
export interface Bound { id: Path; residual: Path; addr?: { host: string; port: number } | null }

/**
 * Finagle's NameTree: Leaf, Alt (`|`, try in order while Neg), Union (`&`, weighted), and the
 * three constants Fail (`!`), Neg (`~`, "nothing here") and Empty (`$`, bound to no address).
 */
export type NameTree<T> =
  | { t: 'leaf'; v: T }
  | { t: 'alt'; trees: NameTree<T>[] }
  | { t: 'union'; branches: Array<{ w: number; tree: NameTree<T> }> }
  | { t: 'neg' } | { t: 'fail' } | { t: 'empty' };

export const NEG = { t: 'neg' } as const;
export const FAIL = { t: 'fail' } as const;
export const EMPTY = { t: 'empty' } as const;

export function leaf<T>(v: T): NameTree<T> { return { t: 'leaf', v }; }

/**
 * Java's `%.2f`: HALF-UP rounding of the *shortest* decimal representation of the double
 * (0.125 -> 0.13, 2.675 -> 2.68), which `toFixed` (exact binary value) gets wrong.
 */
export function showWeight(w: number): string {
  if (Number.isNaN(w)) return 'NaN';
  if (!Number.isFinite(w)) return w > 0 ? 'Infinity' : '-Infinity';
  const sign = w < 0 || Object.is(w, -0) ? '-' : '';
  // toExponential() without an argument gives the shortest round-trip digits: "d.ddde±x".
  const [mant, ex] = Math.abs(w).toExponential().split('e');
  let digits = mant.replace('.', '');
  let intLen = Number(ex) + 1; // digits before the decimal point
  if (intLen <= 0) { digits = '0'.repeat(1 - intLen) + digits; intLen = 1; }
  if (digits.length < intLen + 2) digits = digits.padEnd(intLen + 2, '0');
  const d = Array.from(digits.slice(0, intLen + 2), Number);
  if (digits.length > intLen + 2 && digits.charCodeAt(intLen + 2) >= 0x35 /* '5' */) {
    let i = d.length - 1;
    while (i >= 0 && d[i] === 9) d[i--] = 0;
    if (i >= 0) d[i]++; else { d.unshift(1); intLen++; }
  }
  const s = d.join('');
  return `${sign}${s.slice(0, intLen)}.${s.slice(intLen)}`;
}

export function showTree<T>(t: NameTree<T>, showLeaf: (v: T) => string): string {
  const go = (x: NameTree<T>, ctx: 'top' | 'alt' | 'union'): string => {
    switch (x.t) {
      case 'neg': return '~';
      case 'fail': return '!';
      case 'empty': return '$';
      case 'leaf': return showLeaf(x.v);
      case 'alt': {
        if (x.trees.length === 1) return go(x.trees[0], ctx);
        const s = x.trees.map((c) => go(c, 'alt')).join(' | ');
        return ctx === 'top' ? s : `(${s})`;
      }
      case 'union': {
        if (x.branches.length === 1) return go(x.branches[0].tree, ctx);
        const s = x.branches.map(({ w, tree }) => (w === 1 ? go(tree, 'union') : `${showWeight(w)}*${go(tree, 'union')}`)).join(' & ');
        return ctx === 'union' ? `(${s})` : s;
      }
    }
  };
  return go(t, 'top');
}

export function showPathTree(t: NameTree<Path>): string { return showTree(t, showPath); }

/** NameTree.simplify (spec §2.6). */
export function simplify<T>(t: NameTree<T>): NameTree<T> {
  switch (t.t) {
    case 'alt': {
      const out: NameTree<T>[] = [];
      for (const c of t.trees) {
        const s = simplify(c);
        if (s.t === 'neg') continue;
        out.push(s);
        if (s.t === 'fail') break;
      }
      return out.length === 0 ? NEG : out.length === 1 ? out[0] : { t: 'alt', trees: out };
    }
    case 'union': {
      const out = t.branches.map(({ w, tree }) => ({ w, tree: simplify(tree) })).filter((b) => b.tree.t !== 'neg' && b.tree.t !== 'fail');
      return out.length === 0 ? NEG : out.length === 1 ? out[0].tree : { t: 'union', branches: out };
    }
    default: return t;
  }
}

/**
 * NameTree.eval: the set of leaves, or null for "no result" (Neg/Fail). Alt: the first child
 * with a result (a Fail child ends it); Union: the union of its children's results. `key`
 * dedupes leaves by value (paths are arrays: pass showPath).
 */
export function evalTree<T>(t: NameTree<T>, key: (v: T) => unknown = (v) => v): Set<T> | null {
  const go = (x: NameTree<T>): Map<unknown, T> | null => {
    switch (x.t) {
      case 'neg': case 'fail': return null;
      case 'empty': return new Map();
      case 'leaf': return new Map([[key(x.v), x.v]]);
      case 'alt':
        for (const c of x.trees) {
          if (c.t === 'fail') return null;
          const r = go(c);
          if (r !== null) return r;
        }
        return null;
      case 'union': {
        let out: Map<unknown, T> | null = null;
        for (const { tree } of x.branches) {
          const r = go(tree);
          if (r === null) continue;
          out ??= new Map();
          for (const [k, v] of r) out.set(k, v);
        }
        return out;
      }
    }
  };
  const r = go(t);
  return r === null ? null : new Set(r.values());
}

export function mapTree<A, B>(t: NameTree<A>, f: (a: A) => NameTree<B>): NameTree<B> {
  switch (t.t) {
    case 'leaf': return f(t.v);
    case 'alt': return { t: 'alt', trees: t.trees.map((c) => mapTree(c, f)) };
    case 'union': return { t: 'union', branches: t.branches.map(({ w, tree }) => ({ w, tree: mapTree(tree, f) })) };
    default: return t;
  }
}
