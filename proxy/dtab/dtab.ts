// Dtabs: ordered dentries; lookup collects every matching dentry, last first (spec §2.1-2.2).
import { ANY, parseDentries, type Dentry, type PrefixElem } from './parser.ts';
import { NEG, mapTree, showElem, showPathTree, leaf, type NameTree, type Path } from './tree.ts';

export function showPrefix(p: readonly PrefixElem[]): string {
  return p.length === 0 ? '/' : '/' + p.map((e) => (typeof e === 'string' ? showElem(e) : '*')).join('/');
}

export function showDentry(d: Dentry): string {
  return `${showPrefix(d.prefix)}=>${showPathTree(d.dst)}`;
}

export class Dtab {
  readonly dentries: readonly Dentry[];
  private shown: string | null = null;
  constructor(dentries: readonly Dentry[]) { this.dentries = dentries; }

  static empty = new Dtab([]);
  static parse(s: string): Dtab { return new Dtab(parseDentries(s)); }

  get size(): number { return this.dentries.length; }
  concat(other: Dtab): Dtab {
    if (other.size === 0) return this;
    if (this.size === 0) return other;
    return new Dtab([...this.dentries, ...other.dentries]);
  }

  /** Canonical form: dentries joined by ';', no spaces around '=>', no trailing ';'. */
  show(): string { return (this.shown ??= this.dentries.map(showDentry).join(';')); }

  /** One lookup step: the rewritten trees of all matching dentries, last dentry first. */
  lookup(path: Path): NameTree<Path> {
    const matches: NameTree<Path>[] = [];
    for (let i = this.dentries.length - 1; i >= 0; i--) {
      const d = this.dentries[i];
      const residual = matchPrefix(d.prefix, path);
      if (residual === null) continue;
      matches.push(residual.length === 0 ? d.dst : mapTree(d.dst, (p) => leaf([...p, ...residual])));
    }
    return matches.length === 0 ? NEG : matches.length === 1 ? matches[0] : { t: 'alt', trees: matches };
  }
}

export function matchPrefix(prefix: readonly PrefixElem[], path: Path): Path | null {
  if (prefix.length > path.length) return null;
  for (let i = 0; i < prefix.length; i++) {
    const e = prefix[i];
    if (e !== ANY && typeof e === 'string' && e !== path[i]) return null;
  }
  return path.slice(prefix.length);
}
