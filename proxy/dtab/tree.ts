// Paths, name trees and their canonical printing (Finagle's show forms, spec/dtab.md §1.8).

/** A path: elements are byte strings, each char one byte (latin-1), compared bytewise. */
export type Path = readonly string[];

export const SHOWABLE = /^[0-9A-Za-z_:.#$%-]+$/;

export function showElem(e: string): string {
  if (SHOWABLE.test(e)) return e;
  let out = '';
  for (let i = 0; i < e.length; i++) out += `\\x${e.charCodeAt(i).toString(16).padStart(2, '0')}`;
  return out;
}

export function showPath(p: Path): string {
  return p.length === 0 ? '/' : '/' + p.map(showElem).join('/');
}

export function startsWith(p: Path, prefix: Path): boolean {
  if (prefix.length > p.length) return false;
  for (let i = 0; i < prefix.length; i++) if (p[i] !== prefix[i]) return false;
  return true;
}

/** A bound name: the concrete id and the part of the path the namer did not consume. */
export interface Bound { id: Path; residual: Path; addr?: { host: string; port: number } | null }

export type NameTree<T> =
  | { t: 'leaf'; v: T }
  | { t: 'alt'; trees: NameTree<T>[] }
  | { t: 'union'; branches: Array<{ w: number; tree: NameTree<T> }> }
  | { t: 'neg' } | { t: 'fail' } | { t: 'empty' };

export const NEG = { t: 'neg' } as const;
export const FAIL = { t: 'fail' } as const;
export const EMPTY = { t: 'empty' } as const;

export function leaf<T>(v: T): NameTree<T> { return { t: 'leaf', v }; }

/** Java's %.2f: half-up on the shortest decimal representation of the double. */
export function showWeight(w: number): string {
  const s = String(w);
  if (/e/i.test(s)) return w.toFixed(2);
  const [int, frac = ''] = s.split('.');
  if (frac.length <= 2) return `${int}.${frac.padEnd(2, '0')}`;
  const digits = (int + frac.slice(0, 2)).split('').map(Number);
  if (Number(frac[2]) >= 5) {
    let i = digits.length - 1;
    while (i >= 0) { if (digits[i] === 9) { digits[i] = 0; i--; } else { digits[i]++; break; } }
    if (i < 0) digits.unshift(1);
  }
  const all = digits.join('');
  return `${all.slice(0, -2) || '0'}.${all.slice(-2)}`;
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

/** NameTree.eval: the set of leaves, or null for "no result" (Neg/Fail). */
export function evalTree<T>(t: NameTree<T>): Set<T> | null {
  switch (t.t) {
    case 'neg': case 'fail': return null;
    case 'empty': return new Set();
    case 'leaf': return new Set([t.v]);
    case 'alt':
      for (const c of t.trees) {
        if (c.t === 'fail') return null;
        const r = evalTree(c);
        if (r !== null) return r;
      }
      return null;
    case 'union': {
      let any = false;
      const out = new Set<T>();
      for (const { tree } of t.branches) {
        const r = evalTree(tree);
        if (r === null) continue;
        any = true;
        for (const v of r) out.add(v);
      }
      return any ? out : null;
    }
  }
}

export function mapTree<A, B>(t: NameTree<A>, f: (a: A) => NameTree<B>): NameTree<B> {
  switch (t.t) {
    case 'leaf': return f(t.v);
    case 'alt': return { t: 'alt', trees: t.trees.map((c) => mapTree(c, f)) };
    case 'union': return { t: 'union', branches: t.branches.map(({ w, tree }) => ({ w, tree: mapTree(tree, f) })) };
    default: return t;
  }
}
