// Paths (docs/spec/dtab.md §1.1-1.2): sequences of non-empty byte strings. An element is kept as a
// latin-1 string (each char one byte, 0x00-0xff), so `===` compares bytewise and V8 can hash it.

/** A path: elements are byte strings, each char one byte (latin-1), compared bytewise. */
export type Path = readonly string[];

export const EMPTY_PATH: Path = Object.freeze([]) as Path;

// Showable bytes: 0-9 A-Z a-z and _ : . # $ % -  (a 256-entry table: no regex per char).
const SHOWABLE_TABLE = new Uint8Array(256);
for (const c of '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.#$%-') SHOWABLE_TABLE[c.charCodeAt(0)] = 1;

/** Is this char code a showable label byte? */
export function isShowable(code: number): boolean { return code < 256 && SHOWABLE_TABLE[code] === 1; }

const HEX = '0123456789abcdef';

/** Show one element: as is if every byte is showable, else every byte as `\xhh` (all-or-nothing). */
export function showElem(e: string): string {
  let plain = e.length > 0;
  for (let i = 0; i < e.length; i++) if (!isShowable(e.charCodeAt(i))) { plain = false; break; }
  if (plain) return e;
  let out = '';
  for (let i = 0; i < e.length; i++) {
    const b = e.charCodeAt(i) & 0xff;
    out += '\\x' + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/** Show form: `/` + elements joined by `/`; the empty path is `/`. */
export function showPath(p: Path): string {
  if (p.length === 0) return '/';
  let out = '';
  for (let i = 0; i < p.length; i++) out += '/' + showElem(p[i]);
  return out;
}

export function startsWith(p: Path, prefix: Path): boolean {
  if (prefix.length > p.length) return false;
  for (let i = 0; i < prefix.length; i++) if (p[i] !== prefix[i]) return false;
  return true;
}

export function pathEquals(a: Path, b: Path): boolean {
  return a.length === b.length && startsWith(a, b);
}

export function concatPath(a: Path, b: Path): Path {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  return [...a, ...b];
}

/**
 * One element from text that may hold chars above 0xff (a JS string from outside, e.g. an HTTP
 * header Node decoded as latin-1 is already bytes): such text is encoded as UTF-8 bytes.
 */
export function latin1Elem(s: string): string {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0xff) return Buffer.from(s, 'utf8').toString('latin1');
  }
  return s;
}

/** The element's bytes decoded as UTF-8 (what Finagle's `Path.Utf8` extractors see). */
export function utf8Elem(e: string): string {
  for (let i = 0; i < e.length; i++) {
    if (e.charCodeAt(i) > 0x7f) return Buffer.from(e, 'latin1').toString('utf8');
  }
  return e;
}
