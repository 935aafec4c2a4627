// Parser and printer details beyond the vectors: weights, escapes, whitespace, comments, errors.
import { describe, expect, it } from 'vitest';
import {
  Dtab, DtabParseError, evalTree, parseDentry, parseDtab, parseNameTree, parsePath, showDentry, showPath, showPathTree, showWeight,
} from '../../proxy/dtab/index.ts';

const err = (f: () => unknown) => { try { f(); } catch (e) { if (e instanceof DtabParseError) return e.message; throw e; } return 'no error'; };

describe('showWeight: Java %.2f (half-up on the shortest decimal)', () => {
  it.each([
    [0.125, '0.13'], [2.675, '2.68'], [1.005, '1.01'], [1 / 3, '0.33'], [2 / 3, '0.67'], [0.995, '1.00'], [9.995, '10.00'],
    [99.999, '100.00'], [2, '2.00'], [0, '0.00'], [0.3, '0.30'], [0.004, '0.00'], [0.005, '0.01'], [1e-7, '0.00'],
    [1e21, '1000000000000000000000.00'], [123456.785, '123456.79'], [Infinity, 'Infinity'],
  ])('%s -> %s', (w, s) => { expect(showWeight(w)).toBe(s); });
});

describe('parser', () => {
  it('escapes: either hex case in, lower-case out, all-or-nothing per element', () => {
    expect(showPath(parsePath('/\\x41\\x42c'))).toBe('/ABc');
    expect(showPath(parsePath('/a\\x2fb/c'))).toBe('/\\x61\\x2f\\x62/c');
    expect(parsePath('/caf\\xc3\\xa9')).toEqual(['caf\u00c3\u00a9']); // bytes, not decoded text
    expect(err(() => parsePath('/\\X41'))).toBe("'x' expected but 'X' found at '/\\[X]41'");
    expect(err(() => parsePath('/\\x4g'))).toBe("hex char expected but 'g' found at '/\\x4[g]'");
    expect(err(() => parsePath('/\\x4'))).toBe("hex char expected but end of input found at '/\\x4[]'");
  });
  it('whitespace: Java isWhitespace, incl. \\x1c-\\x1f and Unicode separators but not no-break spaces', () => {
    expect(Dtab.parse('\u2028/a\u3000=>\t/b\x1c').show()).toBe('/a=>/b');
    expect(err(() => Dtab.parse('/a\u00a0=> /b'))).toBe("'=' expected but '\u00a0' found at '/a[\u00a0]=> /b'");
  });
  it('comments only between tokens; # inside labels is a label char', () => {
    expect(Dtab.parse('/a=>/b#c').show()).toBe('/a=>/b#c');
    expect(Dtab.parse('/a=>/b #c\n;/d=>/e').show()).toBe('/a=>/b;/d=>/e');
    expect(Dtab.parse('# only a comment').show()).toBe('');
  });
  it('dtab separators: one trailing ; allowed; leading, lone and double ; are errors', () => {
    expect(Dtab.parse('/a=>/b; ').show()).toBe('/a=>/b');
    expect(err(() => Dtab.parse(';'))).toBe("'/' expected but ';' found at '[;]'");
    expect(err(() => Dtab.parse('; /a=>/b'))).toBe("'/' expected but ';' found at '[;] /a=>/b'");
    expect(err(() => Dtab.parse('/a=>/b;;'))).toBe("'/' expected but ';' found at '/a=>/b;[;]'");
  });
  it('prefixes: * is a whole element and not allowed in destinations', () => {
    expect(showDentry(parseDentry('/* => /b'))).toBe('/*=>/b');
    expect(err(() => Dtab.parse('/a => /b/*'))).toBe("label char expected but '*' found at '/a => /b/[*]'");
  });
  it('weights: 5. and 00.25 are numbers; weights in Unicode digits fail like Java toDouble', () => {
    expect(showPathTree(parseNameTree('5. * /a & 00.25 * /b & 1.0 * /c'))).toBe('5.00*/a & 0.25*/b & /c');
    expect(err(() => parseNameTree('/a & \u0663 * /b'))).toBe('For input string: "\u0663"');
  });
  it('show: parentheses only where needed', () => {
    expect(showPathTree(parseNameTree('(/a | /b) | /c'))).toBe('(/a | /b) | /c');
    expect(showPathTree(parseNameTree('/a & (/b & /c)'))).toBe('/a & (/b & /c)');
    expect(showPathTree(parseNameTree('(/a & /b) | /c'))).toBe('/a & /b | /c');
    expect(showPathTree(parseNameTree('/a & (/b | /c)'))).toBe('/a & (/b | /c)');
    expect(showPathTree(parseNameTree('/a & 0.5 * ((/b))'))).toBe('/a & 0.50*/b');
  });
  it('show/parse round-trips (lossy only in weights beyond two decimals)', () => {
    const s = '/s#/*/x=>/a | 0.33*/b & 2.00*(/c | !) | ~ | $;/=>/\\x20';
    expect(Dtab.parse(s).show()).toBe(s);
    expect(Dtab.parse(Dtab.parse('/a => 0.333 * /b & /c').show()).show()).toBe('/a=>0.33*/b & /c');
  });
  it('parseDtab is Dtab.parse; concat puts the other dtab later', () => {
    const d = parseDtab('/a=>/b').concat(parseDtab('/a=>/c'));
    expect(d.show()).toBe('/a=>/b;/a=>/c');
    expect(showPathTree(d.lookup(['a']))).toBe('/c | /b');
    expect(Dtab.empty.concat(d)).toBe(d);
  });
  it('eval dedupes equal paths', () => {
    expect([...evalTree(parseNameTree('/a & /a & /b'), showPath)!].map(showPath)).toEqual(['/a', '/b']);
  });
});
