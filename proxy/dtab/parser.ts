// A hand-written scanner for Finagle's dtab syntax (spec/dtab.md §1), with Finagle's exact error
// messages: `<expected> expected but <found> found at '<input with [x] marker>'`.
import type { NameTree, Path } from './tree.ts';
import { EMPTY, FAIL, NEG, leaf } from './tree.ts';

export class DtabParseError extends Error {}

/** A dentry prefix element: a label, or '*' (any one element). */
export type PrefixElem = string | { any: true };
export const ANY: PrefixElem = { any: true };

export interface Dentry { prefix: PrefixElem[]; dst: NameTree<Path> }

const LABEL = /[0-9A-Za-z_:.#$%-]/;
// Java's Character.isWhitespace (ASCII part plus the Unicode separators it accepts).
function isWs(c: string): boolean {
  if (c === ' ' || c === '\t' || c === '\n' || c === '\u000b' || c === '\f' || c === '\r') return true;
  const n = c.charCodeAt(0);
  if (n >= 0x1c && n <= 0x1f) return true;
  if (n === 0x00a0 || n === 0x2007 || n === 0x202f) return false;
  return n === 0x1680 || (n >= 0x2000 && n <= 0x200a) || n === 0x2028 || n === 0x2029 || n === 0x205f || n === 0x3000;
}

class Scanner {
  readonly s: string;
  i = 0;
  constructor(s: string) { this.s = s; }
  get atEnd(): boolean { return this.i >= this.s.length; }
  peek(): string { return this.s[this.i] ?? ''; }

  fail(expected: string, at = this.i, foundText?: string): never {
    const found = foundText ?? (at >= this.s.length ? 'end of input' : `'${this.s[at]}'`);
    const marked = at >= this.s.length ? `${this.s}[]` : `${this.s.slice(0, at)}[${this.s[at]}]${this.s.slice(at + 1)}`;
    throw new DtabParseError(`${expected} expected but ${found} found at '${marked}'`);
  }

  /** Skip whitespace and '#' comments (only between tokens). */
  ws(): void {
    for (;;) {
      while (!this.atEnd && isWs(this.peek())) this.i++;
      if (this.peek() === '#') { while (!this.atEnd && this.peek() !== '\n') this.i++; continue; }
      return;
    }
  }

  eat(c: string): void {
    if (this.peek() !== c) this.fail(`'${c}'`);
    this.i++;
  }

  end(): void {
    this.ws();
    if (!this.atEnd) this.fail('end of input');
  }

  label(): string {
    let out = '';
    while (!this.atEnd) {
      const c = this.peek();
      if (LABEL.test(c)) { out += c; this.i++; continue; }
      if (c === '\\') {
        this.i++;
        if (this.peek() !== 'x') this.fail("'x'");
        this.i++;
        let h = '';
        for (let k = 0; k < 2; k++) {
          if (!/[0-9A-Fa-f]/.test(this.peek())) this.fail('hex char');
          h += this.peek();
          this.i++;
        }
        out += String.fromCharCode(parseInt(h, 16));
        continue;
      }
      break;
    }
    if (out === '') this.fail('label char');
    return out;
  }

  path(): Path {
    this.ws();
    this.eat('/');
    const elems: string[] = [];
    // '/' alone is the empty path: a label must follow only if something label-like is there.
    if (this.atEnd || !(LABEL.test(this.peek()) || this.peek() === '\\')) return elems;
    elems.push(this.label());
    while (this.peek() === '/') { this.i++; elems.push(this.label()); }
    return elems;
  }

  prefix(): PrefixElem[] {
    this.ws();
    this.eat('/');
    const elems: PrefixElem[] = [];
    const elem = (): PrefixElem => {
      if (this.peek() === '*') { this.i++; return ANY; }
      return this.label();
    };
    if (this.atEnd || !(LABEL.test(this.peek()) || this.peek() === '\\' || this.peek() === '*')) return elems;
    elems.push(elem());
    while (this.peek() === '/') { this.i++; elems.push(elem()); }
    return elems;
  }

  tree(): NameTree<Path> {
    const alts = [this.tree1()];
    for (;;) {
      this.ws();
      if (this.peek() !== '|') break;
      this.i++;
      alts.push(this.tree1());
    }
    return alts.length === 1 ? alts[0] : { t: 'alt', trees: alts };
  }

  tree1(): NameTree<Path> {
    const branches = [this.weighted()];
    for (;;) {
      this.ws();
      if (this.peek() !== '&') break;
      this.i++;
      branches.push(this.weighted());
    }
    // A group of one collapses and its weight is discarded.
    return branches.length === 1 ? branches[0].tree : { t: 'union', branches };
  }

  weighted(): { w: number; tree: NameTree<Path> } {
    this.ws();
    const c = this.peek();
    if (/[0-9.]/.test(c)) {
      let num = '';
      let dot = false;
      while (/[0-9.]/.test(this.peek())) {
        if (this.peek() === '.') { if (dot) this.fail('number char'); dot = true; }
        num += this.peek();
        this.i++;
      }
      // Finagle reports a lone '.' as the token found, marked where the number ended.
      if (num === '.') this.fail('weight', this.i, "'.'");
      this.ws();
      this.eat('*');
      return { w: Number(num), tree: this.simple() };
    }
    return { w: 1, tree: this.simple() };
  }

  simple(): NameTree<Path> {
    this.ws();
    const c = this.peek();
    if (c === '/') return leaf(this.path());
    if (c === '!') { this.i++; return FAIL; }
    if (c === '~') { this.i++; return NEG; }
    if (c === '$') { this.i++; return EMPTY; }
    if (c === '(') {
      this.i++;
      const t = this.tree();
      this.ws();
      this.eat(')');
      return t;
    }
    return this.fail('simple');
  }

  dentry(): Dentry {
    const prefix = this.prefix();
    this.ws();
    this.eat('=');
    this.eat('>');
    return { prefix, dst: this.tree() };
  }

  dtab(): Dentry[] {
    const out: Dentry[] = [];
    this.ws();
    if (this.atEnd) return out;
    out.push(this.dentry());
    for (;;) {
      this.ws();
      if (this.peek() !== ';') break;
      this.i++;
      this.ws();
      if (this.atEnd) break; // one trailing ';' is allowed
      out.push(this.dentry());
    }
    return out;
  }
}

function whole<T>(s: string, f: (sc: Scanner) => T): T {
  const sc = new Scanner(s);
  const v = f(sc);
  sc.end();
  return v;
}

export function parsePath(s: string): Path { return whole(s, (sc) => sc.path()); }
export function parseNameTree(s: string): NameTree<Path> { return whole(s, (sc) => sc.tree()); }
export function parseDentry(s: string): Dentry { return whole(s, (sc) => sc.dentry()); }
export function parseDentries(s: string): Dentry[] { return whole(s, (sc) => sc.dtab()); }
