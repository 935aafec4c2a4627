// Dtabs: ordered dentries. Lookup collects the rewrite of EVERY matching dentry, last first, into
// an Alt (docs/spec/dtab.md §2.1-2.2) — there is no "longest prefix wins".
import { ANY, parseDentries, type Dentry, type PrefixElem } from './parser.ts';
import { showElem, type Path } from './path.ts';
import { NEG, showPathTree, type NameTree } from './tree.ts';

export function showPrefix(p: readonly PrefixElem[]): string {
  if (p.length === 0) return '/';
  let out = '';
  for (const e of p) out += '/' + (typeof e === 'string' ? showElem(e) : '*');
  return out;
}

/** `<prefix>=><tree>`, no spaces around `=>` (the show form Linkerd propagates). */
export function showDentry(d: Dentry): string {
  return `${showPrefix(d.prefix)}=>${showPathTree(d.dst)}`;
}

/** An immutable delegation table. */
export class Dtab {
  readonly dentries: readonly Dentry[];
  private shown: string | null = null;
  constructor(dentries: readonly Dentry[]) { this.dentries = dentries; }

  static readonly empty: Dtab = new Dtab([]);
  /** Parse a dtab; throws DtabParseError with Finagle's message. */
  static parse(s: string): Dtab { return new Dtab(parseDentries(s)); }

  get size(): number { return this.dentries.length; }

  /** `this ++ other`: other's dentries come later, so they take precedence. */
  concat(other: Dtab): Dtab {
    if (other.dentries.length === 0) return this;
    if (this.dentries.length === 0) return other;
    return new Dtab([...this.dentries, ...other.dentries]);
  }

  /** Canonical form: dentries joined by ';', no spaces around '=>', no trailing ';'. Memoized. */
  show(): string {
    if (this.shown === null) {
      let s = '';
      for (let i = 0; i < this.dentries.length; i++) s += (i > 0 ? ';' : '') + showDentry(this.dentries[i]);
      this.shown = s;
    }
    return this.shown;
  }

  toString(): string { return this.show(); }

  /** One lookup step: the rewritten trees of all matching dentries, last dentry first. */
  lookup(path: Path): NameTree<Path> {
    let first: NameTree<Path> | null = null;
    let more: NameTree<Path>[] | null = null;
    for (let i = this.dentries.length - 1; i >= 0; i--) {
      const d = this.dentries[i];
      if (!matchesPrefix(d.prefix, path)) continue;
      const t = rewrite(d.dst, path, d.prefix.length);
      if (first === null) first = t;
      else (more ??= [first]).push(t);
    }
    return more !== null ? { t: 'alt', trees: more } : first ?? NEG;
  }
}

/** Parse a dtab (`Dtab.parse`). Throws DtabParseError. */
export function parseDtab(s: string): Dtab { return Dtab.parse(s); }

/** Whole-element match; `*` matches any one element. */
export function matchesPrefix(prefix: readonly PrefixElem[], path: Path): boolean {
  if (prefix.length > path.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    const e = prefix[i];
    if (e !== ANY && e !== path[i]) return false;
  }
  return true;
}

/** The residual of `path` after `prefix`, or null when the prefix does not match. */
export function matchPrefix(prefix: readonly PrefixElem[], path: Path): Path | null {
  return matchesPrefix(prefix, path) ? path.slice(prefix.length) : null;
}

/** `dst` with path[k..] (the residual) appended to every leaf path; Neg/Fail/Empty unchanged. */
export function rewrite(dst: NameTree<Path>, path: Path, k: number): NameTree<Path> {
  if (k === path.length) return dst;
  switch (dst.t) {
    case 'leaf': {
      const v = dst.v;
      const out = new Array<string>(v.length + path.length - k);
      for (let i = 0; i < v.length; i++) out[i] = v[i];
      for (let i = k; i < path.length; i++) out[v.length + i - k] = path[i];
      return { t: 'leaf', v: out };
    }
    case 'alt': return { t: 'alt', trees: dst.trees.map((c) => rewrite(c, path, k)) };
    case 'union': return { t: 'union', branches: dst.branches.map((b) => ({ w: b.w, tree: rewrite(b.tree, path, k) })) };
    default: return dst;
  }
}
