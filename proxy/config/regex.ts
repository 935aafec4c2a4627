// Regular expressions from configuration and from the admin port, with RE2's syntax and
// linear-time guarantee, as Istio and Envoy promise (Envoy's safe_regex is google_re2; Istio
// validates with Go's regexp, which is RE2). JavaScript's RegExp is a backtracking engine: a
// pattern like `(a+)+b` against a header of 28 'a's pins the event loop for seconds, and its
// syntax differs (`(?i)`, `(?P<n>...)`, `\z`, `[[:alpha:]]`). re2js is a pure-JS port of Go's
// regexp (no native build), so syntax and error messages are the ones Istio users see.
//
// Matching happens on the wire bytes read as UTF-8, as Envoy's RE2 does: the engine hands us
// header values and paths as latin1 strings (one char per byte), so a value with a byte >= 0x80
// is matched as its bytes, never as the latin1 characters.
import { createRequire } from 'node:module';
import type { RE2JS } from 're2js';

// re2js is loaded at the first regular expression a config or an admin query compiles: most
// sidecars have none, and a loaded library's source and code stay on every proxy's heap (idle:
// ~1 MB of RSS, docs/performance.md). Its CommonJS build loads synchronously, as compile needs.
let engine: typeof RE2JS | null = null;
const re2 = (): typeof RE2JS => (engine ??= (createRequire(import.meta.url)('re2js') as { RE2JS: typeof RE2JS }).RE2JS);

/**
 * Envoy refuses a regex whose RE2 program is larger than `re2.max_program_size.error_level`;
 * Istio's bootstrap sets it to 32768 (Envoy's own default is 100). re2js's program size is
 * Go's instruction count, close to (not identical with) the C++ one.
 */
export const MAX_PROGRAM_SIZE = 32768;

export class RegexError extends Error {}

/** Compile with RE2 syntax; throws RegexError carrying RE2's message ("error parsing regexp: ..."). */
export function compileRe2(pattern: string): RE2JS {
  let re: RE2JS;
  try {
    re = re2().compile(pattern);
  } catch (e) {
    throw new RegexError((e as Error).message);
  }
  const size = re.programSize();
  if (size > MAX_PROGRAM_SIZE) {
    throw new RegexError(`regex program size ${size} exceeds the maximum of ${MAX_PROGRAM_SIZE} (re2.max_program_size.error_level)`);
  }
  return re;
}

/** Problems with `pattern` as an Istio StringMatch regex; undefined = valid. */
export function regexProblem(pattern: string): string | undefined {
  // Envoy's RegexMatcher.regex has min_len 1; Istio rejects an empty regex StringMatch too.
  if (pattern.length === 0) return 'regex must not be empty';
  try { compileRe2(pattern); return undefined; } catch (e) { return (e as Error).message; }
}

const NON_ASCII = /[^\x00-\x7f]/;
/** Meta characters of RE2 syntax outside a class; anything else is itself. */
const META = new Set('\\.+*?()|[]{}^$');

/**
 * The pattern as a literal string, if it is one: every char is a non-meta char or a backslash
 * followed by ASCII punctuation (RE2: "\ followed by punctuation is that punctuation"). Returns
 * the literal and where it stopped (pattern.length when the whole pattern is literal).
 */
function literalRun(p: string): { lit: string; end: number; lastStart: number } {
  let lit = '';
  let i = 0;
  let lastStart = 0;
  while (i < p.length) {
    const c = p[i];
    if (c === '\\') {
      const n = p.charCodeAt(i + 1);
      const punct = (n >= 0x21 && n <= 0x2f) || (n >= 0x3a && n <= 0x40) || (n >= 0x5b && n <= 0x60) || (n >= 0x7b && n <= 0x7e);
      if (!punct) break;
      lastStart = lit.length;
      lit += p[i + 1];
      i += 2;
      continue;
    }
    if (META.has(c)) break;
    // A surrogate pair is one rune: keep it whole so a quantifier after it drops both halves.
    const cp = p.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    lastStart = lit.length;
    lit += ch;
    i += ch.length;
  }
  return { lit, end: i, lastStart };
}

/** The latin1 string whose chars are the UTF-8 bytes of `s`: how the engine presents those bytes. */
export function wireForm(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

export type StringTest = (v: string) => boolean;

/**
 * What a tested value is: `wire` = a latin1 string of wire bytes (header values, the path), or
 * `text` = an already decoded string (query parameters, percent-decoded as UTF-8).
 */
export type InputForm = 'wire' | 'text';

/**
 * A full-match test (Istio StringMatch.regex, Envoy RE2::FullMatch). Common shapes skip the
 * regex engine, with the same answer: a pure literal is a string compare, `literal.*` is a
 * prefix check (`.` is any char but \n), and a pattern that must start with a literal rejects
 * other inputs with a prefix check before running RE2.
 */
export function fullMatchTest(pattern: string, input: InputForm = 'wire'): StringTest {
  const re = compileRe2(pattern);
  const { lit, end, lastStart } = literalRun(pattern);
  const form = input === 'wire' ? wireForm : (x: string) => x;
  const wlit = form(lit);
  if (end === pattern.length) return (v) => v === wlit;
  if (end === pattern.length - 2 && pattern.endsWith('.*')) {
    const n = wlit.length;
    return (v) => v.startsWith(wlit) && v.indexOf('\n', n) === -1;
  }
  const run = input === 'text' ? (v: string): boolean => re.testExact(v)
    : (v: string): boolean => (NON_ASCII.test(v) ? re.testExact(Buffer.from(v, 'latin1')) : re.testExact(v));
  // A required literal prefix: the leading literal, minus its last rune when a quantifier
  // follows; none at all when an alternation could make another branch match.
  const q = pattern[end];
  const required = pattern.includes('|') ? '' : (q === '*' || q === '+' || q === '?' || q === '{') ? form(lit.slice(0, lastStart)) : wlit;
  if (required.length > 0) return (v) => v.startsWith(required) && run(v);
  return run;
}

/** An unanchored search (Envoy's `/stats?filter=`: partial match unless the pattern anchors). */
export function searchTest(pattern: string): StringTest {
  const re = compileRe2(pattern);
  return (v) => (NON_ASCII.test(v) ? re.test(Buffer.from(v, 'latin1')) : re.test(v));
}
