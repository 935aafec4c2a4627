// A hand-written scanner for Finagle's dtab syntax (docs/spec/dtab.md §1), mirroring Finagle's
// NameTreeParsers: one char of look-ahead, whitespace and '#' comments skipped only between
// tokens, and Finagle's exact error messages, because clients see them verbatim in `l5d-err`:
//   <expected> expected but <found> found at '<input with the offending char in [ ]>'
import { isShowable, type Path } from './path.ts';
import type { NameTree } from './tree.ts';
import { EMPTY, FAIL, NEG } from './tree.ts';

/** A syntax error; `message` is exactly Finagle's (an IllegalArgumentException there). */
export class DtabParseError extends Error {
  constructor(message: string) { super(message); this.name = 'DtabParseError'; }
}

/** A dentry prefix element: a label, or '*' (matches any one element). */
export type PrefixElem = string | { readonly any: true };
export const ANY: PrefixElem = Object.freeze({ any: true as const });

/** A delegation entry `prefix => dst`. */
export interface Dentry { readonly prefix: readonly PrefixElem[]; readonly dst: NameTree<Path> }

const BACKSLASH = 0x5c;

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

// Java's Character.isWhitespace: ASCII \t \n \v \f \r, \x1c-\x1f, space, and the Unicode
// space/line/paragraph separators except the no-break ones (U+00A0, U+2007, U+202F).
function isWs(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  if (c < 0x1680) return false;
  return c === 0x1680 || (c >= 0x2000 && c <= 0x200a && c !== 0x2007) || c === 0x2028 || c === 0x2029 || c === 0x205f || c === 0x3000;
}

const isAsciiDigit = (c: number) => c >= 0x30 && c <= 0x39;
// Finagle's isNumberChar is Char.isDigit (any Unicode Nd digit) or '.'.
const UNICODE_DIGIT = /^\p{Nd}$/u;
function isNumberChar(s: string, i: number, c: number): boolean {
  if (isAsciiDigit(c) || c === 0x2e) return true;
  return c >= 0x660 && UNICODE_DIGIT.test(s[i]);
}

class Scanner {
  readonly s: string;
  i = 0;
  constructor(s: string) { this.s = s; }

  /** The current char code, or -1 at end of input. */
  private peek(): number { return this.i < this.s.length ? this.s.charCodeAt(this.i) : -1; }

  private found(): string { return this.i >= this.s.length ? 'end of input' : `'${this.s[this.i]}'`; }

  fail(expected: string, found: string = this.found()): never {
    const s = this.s;
    const at = this.i;
    const marked = at >= s.length ? `${s}[]` : `${s.slice(0, at)}[${s[at]}]${s.slice(at + 1)}`;
    throw new DtabParseError(`${expected} expected but ${found} found at '${marked}'`);
  }

  /** Skip whitespace and '#' comments (to end of line); only ever called between tokens. */
  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x23 /* # */) {
        const nl = s.indexOf('\n', this.i);
        this.i = nl < 0 ? s.length : nl + 1;
      } else if (isWs(c)) this.i++;
      else return;
    }
  }

  private eat(c: number): void {
    if (this.peek() !== c) this.fail(`'${String.fromCharCode(c)}'`);
    this.i++;
  }

  end(): void {
    this.ws();
    if (this.i < this.s.length) this.fail('end of input');
  }

  private isLabelStart(c: number): boolean { return c >= 0 && (isShowable(c) || c === BACKSLASH); }

  /** One or more showable chars / `\xHH` escapes, as a latin-1 byte string. */
  private label(): string {
    const s = this.s;
    const start = this.i;
    // Fast path: a run of showable chars is the element itself (no escapes to decode).
    while (this.i < s.length && isShowable(s.charCodeAt(this.i))) this.i++;
    if (this.i === s.length || s.charCodeAt(this.i) !== BACKSLASH) {
      if (this.i === start) this.fail('label char');
      return s.slice(start, this.i);
    }
    let out = s.slice(start, this.i);
    for (;;) {
      const c = this.peek();
      if (c >= 0 && isShowable(c)) { out += s[this.i++]; continue; }
      if (c !== BACKSLASH) break;
      this.i++;
      this.eat(0x78 /* x */);
      const hi = hexVal(this.peek());
      if (hi < 0) this.fail('hex char');
      this.i++;
      const lo = hexVal(this.peek());
      if (lo < 0) this.fail('hex char');
      this.i++;
      out += String.fromCharCode((hi << 4) | lo);
    }
    return out;
  }

  path(): string[] {
    this.ws();
    this.eat(0x2f /* / */);
    const elems: string[] = [];
    if (!this.isLabelStart(this.peek())) return elems; // '/' alone: the empty path
    do elems.push(this.label()); while (this.maybeEat(0x2f));
    return elems;
  }

  private maybeEat(c: number): boolean {
    if (this.peek() !== c) return false;
    this.i++;
    return true;
  }

  prefix(): PrefixElem[] {
    this.ws();
    this.eat(0x2f);
    const elems: PrefixElem[] = [];
    const c = this.peek();
    if (!(this.isLabelStart(c) || c === 0x2a /* * */)) return elems;
    do {
      if (this.maybeEat(0x2a)) elems.push(ANY);
      else elems.push(this.label());
    } while (this.maybeEat(0x2f));
    return elems;
  }

  tree(): NameTree<Path> {
    const first = this.tree1();
    this.ws();
    if (!this.maybeEat(0x7c /* | */)) return first;
    const alts = [first];
    do { alts.push(this.tree1()); this.ws(); } while (this.maybeEat(0x7c));
    return { t: 'alt', trees: alts };
  }

  private tree1(): NameTree<Path> {
    const first = this.weighted();
    this.ws();
    // A group of one collapses and its weight is discarded (Finagle: trees(0).tree).
    if (!this.maybeEat(0x26 /* & */)) return first.tree;
    const branches = [first];
    do { branches.push(this.weighted()); this.ws(); } while (this.maybeEat(0x26));
    return { t: 'union', branches };
  }

  private weighted(): { w: number; tree: NameTree<Path> } {
    this.ws();
    if (!isNumberChar(this.s, this.i, this.peek())) return { w: 1, tree: this.simple() };
    const w = this.number();
    this.ws();
    this.eat(0x2a /* * */);
    return { w, tree: this.simple() };
  }

  private number(): number {
    const s = this.s;
    const start = this.i;
    let dot = false;
    let ascii = true;
    for (let c = this.peek(); isNumberChar(s, this.i, c); c = this.peek()) {
      if (c === 0x2e) {
        if (dot) this.fail('number char');
        dot = true;
      } else if (!isAsciiDigit(c)) ascii = false;
      this.i++;
    }
    const text = s.slice(start, this.i);
    // Finagle reports a lone '.' as the token found, with the marker where the number ended.
    if (text === '.') this.fail('weight', "'.'");
    // Java's toDouble rejects non-ASCII digits with a NumberFormatException.
    if (!ascii) throw new DtabParseError(`For input string: "${text}"`);
    return Number(text);
  }

  private simple(): NameTree<Path> {
    this.ws();
    switch (this.peek()) {
      case 0x28 /* ( */: {
        this.i++;
        const t = this.tree();
        this.ws();
        this.eat(0x29 /* ) */);
        return t;
      }
      case 0x2f /* / */: return { t: 'leaf', v: this.path() };
      case 0x21 /* ! */: this.i++; return FAIL;
      case 0x7e /* ~ */: this.i++; return NEG;
      case 0x24 /* $ */: this.i++; return EMPTY;
      default: return this.fail('simple');
    }
  }

  dentry(): Dentry {
    const prefix = this.prefix();
    this.ws();
    this.eat(0x3d /* = */);
    this.eat(0x3e /* > */);
    return { prefix, dst: this.tree() };
  }

  /** Dentries separated by ';'; an empty dentry is skipped only at end of input. */
  dtab(): Dentry[] {
    const out: Dentry[] = [];
    do {
      this.ws();
      if (this.i < this.s.length) { out.push(this.dentry()); this.ws(); }
    } while (this.maybeEat(0x3b /* ; */));
    return out;
  }
}

function whole<T>(s: string, f: (sc: Scanner) => T): T {
  const sc = new Scanner(s);
  const v = f(sc);
  sc.end();
  return v;
}

/** Parse a path (surrounding whitespace and comments allowed). Throws DtabParseError. */
export function parsePath(s: string): Path { return whole(s, (sc) => sc.path()); }
/** Parse a name tree (`/a & 2 * /b | ~`). Throws DtabParseError. */
export function parseNameTree(s: string): NameTree<Path> { return whole(s, (sc) => sc.tree()); }
/** Parse exactly one dentry. Throws DtabParseError. */
export function parseDentry(s: string): Dentry { return whole(s, (sc) => sc.dentry()); }
/** Parse a dtab's dentries (see `parseDtab` in dtab.ts for a Dtab). Throws DtabParseError. */
export function parseDentries(s: string): Dentry[] { return whole(s, (sc) => sc.dtab()); }
