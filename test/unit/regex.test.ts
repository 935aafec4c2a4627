// Regexes are RE2 (syntax, full-match semantics, linear time), as Istio and Envoy promise; the
// fast paths of fullMatchTest answer exactly what RE2 answers.
import { afterAll, describe, expect, it } from 'vitest';
import { RE2JS } from 're2js';
import { compileRe2, fullMatchTest, regexProblem, searchTest, MAX_PROGRAM_SIZE, RegexError } from '../../proxy/config/regex.ts';
import { parseResourceText, ConfigError } from '../../proxy/config/resources.ts';
import { compile } from '../../proxy/config/compile.ts';
import { Runtime } from '../../proxy/runtime.ts';
import { matchRoute, type RequestView } from '../../proxy/filters/route/table.ts';
import { serviceYaml, snapshotFromYaml } from '../helpers.ts';

/** How the engine hands a value over: one latin1 char per wire byte (UTF-8 on the wire). */
const wire = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
const full = (p: string, v: string) => fullMatchTest(p)(wire(v));

describe('RE2 syntax (what JS RegExp rejected or read differently)', () => {
  it('(?i) makes the rest case-insensitive', () => {
    expect(full('(?i)/api/v1', '/API/V1')).toBe(true);
    expect(full('/a(?i)pi', '/aPI')).toBe(true);
    expect(full('/a(?i)pi', '/API')).toBe(false);
  });
  it('(?P<name>...) and (?<name>...) are named groups', () => {
    expect(full('/users/(?P<id>[0-9]+)', '/users/42')).toBe(true);
    expect(full('/users/(?<id>[0-9]+)', '/users/42')).toBe(true);
    expect(full('/users/(?P<id>[0-9]+)', '/users/x')).toBe(false);
  });
  it('\\z is end of text, \\A start of text', () => {
    expect(full('\\Aabc\\z', 'abc')).toBe(true);
    expect(searchTest('c\\z')('abc')).toBe(true);
    expect(searchTest('c\\z')('abcd')).toBe(false);
  });
  it('[[:alpha:]] is the POSIX class, not a set of ":alph" chars', () => {
    expect(full('[[:alpha:]]+', 'Hello')).toBe(true);
    expect(full('[[:alpha:]]+', ':alph')).toBe(false);
    expect(full('[[:digit:]]{3}', '123')).toBe(true);
  });
  it('Unicode classes and \\pL match runes of the UTF-8 wire bytes', () => {
    expect(full('\\pL+', 'héllo')).toBe(true);
    expect(full('h.llo', 'héllo')).toBe(true); // é is one rune (two bytes on the wire)
    expect(full('\\p{Greek}+', 'αβγ')).toBe(true);
  });
  it('\\Q...\\E quotes a literal', () => {
    expect(full('\\Q/a.b*\\E', '/a.b*')).toBe(true);
    expect(full('\\Q/a.b*\\E', '/axbb')).toBe(false);
  });
});

describe('full-match semantics (Istio StringMatch.regex, Envoy RE2::FullMatch)', () => {
  it('a pattern must match the whole value', () => {
    expect(full('/items/[0-9]+', '/items/12')).toBe(true);
    expect(full('/items/[0-9]+', '/items/12/x')).toBe(false);
    expect(full('/items/[0-9]+', 'x/items/12')).toBe(false);
  });
  it('alternation is anchored as a whole', () => {
    expect(full('foo|bar', 'bar')).toBe(true);
    expect(full('foo|bar', 'foobar')).toBe(false);
    expect(full('foo|bar', 'foox')).toBe(false);
  });
  it('. does not match a newline unless (?s)', () => {
    expect(full('a.*', 'ab\nc')).toBe(false);
    expect(full('(?s)a.*', 'ab\nc')).toBe(true);
  });
  it('the admin filter is a partial match unless anchored', () => {
    expect(searchTest('upstream_rq')('cluster.x.upstream_rq_total')).toBe(true);
    expect(searchTest('^upstream_rq$')('cluster.x.upstream_rq_total')).toBe(false);
    expect(searchTest('(?i)UPSTREAM')('cluster.x.upstream_rq_total')).toBe(true);
  });
});

describe('linear time', () => {
  it('(a+)+b against a long run of a answers (false) instead of backtracking for ever', () => {
    // JS RegExp takes ~10 s at 28 a's and doubles per extra a; RE2 is linear in the input.
    const t0 = performance.now();
    expect(full('(a+)+b', 'a'.repeat(28))).toBe(false);
    expect(full('(a+)+b', 'a'.repeat(50_000))).toBe(false);
    expect(full('(a|aa)+$', 'a'.repeat(50_000) + 'b')).toBe(false);
    expect(searchTest('(x+x+)+y')('x'.repeat(50_000))).toBe(false);
    expect(performance.now() - t0).toBeLessThan(5000); // exponential would be never; linear is milliseconds
  });
});

describe('invalid patterns: RE2 messages', () => {
  const cases: Array<[string, string]> = [
    ['[A-Z', 'error parsing regexp: missing closing ]: `[A-Z`'],
    ['(unclosed', 'error parsing regexp: missing closing ): `(unclosed`'],
    ['(?=x)y', 'error parsing regexp: invalid or unsupported Perl syntax: `(?=`'],
    ['(a)\\1', 'error parsing regexp: invalid escape sequence: `\\1`'],
    ['a**', 'error parsing regexp: invalid nested repetition operator: `**`'],
    ['a{1001}', 'error parsing regexp: invalid repeat count: `{1001}`'],
    ['', 'regex must not be empty'],
  ];
  for (const [p, msg] of cases) it(JSON.stringify(p), () => expect(regexProblem(p)).toBe(msg));

  it('a program larger than Istio\'s re2.max_program_size.error_level is refused', () => {
    const big = '[a-z]{1000}'.repeat(40);
    expect(regexProblem(big)).toMatch(new RegExp(`^regex program size \\d+ exceeds the maximum of ${MAX_PROGRAM_SIZE}`));
    expect(() => compileRe2(big)).toThrow(RegexError);
    expect(regexProblem('[a-z]{1000}'.repeat(20))).toBeUndefined();
  });
});

describe('fast paths agree with RE2 on every input', () => {
  const patterns = [
    'abc', '/api/v1', '/a\\.b', '\\/x\\-y', 'héllo', '日本', '😀x', '/api/.*', '.*', 'é.*', '/a\\.*', 'abc*', 'ab+c', 'ab?',
    'a{2}', 'x{', 'ab{x', 'ab|cd', 'a\\|b', '/api/v[0-9]+/.*', '(?i)abc', 'ab(?i)cd', 'abc$', '^abc', 'a\\*', '😀*',
    '/items/[0-9]+', '[a]bc', 'a]b', 'a}b', 'a.c', '\\Qa.b\\E', 'a\\.', '/(a|b)/x', 'pre(?s:.*)', 'pre.+', 'pre.*x',
  ];
  const inputs = [
    '', 'abc', 'ABC', 'abcc', 'ab', 'abbc', 'ac', 'abcd', 'aabc', 'cd', 'ab|cd', 'a|b', 'a', 'aa', 'x{', 'ab{x', 'abC', 'abCD',
    '/api/v1', '/api/v1/', '/api/v12/users', '/api/v1/x\ny', '/api/', '/api', '/a.b', '/axb', '/x-y', 'héllo', 'hello', 'hÉllo',
    '日本', '日本語', '😀x', '😀😀', 'é', 'éa', '/a', '/a.', '/a..', '/items/1', '/items/', '/items/1/x', 'a]b', 'a}b', 'a.c',
    'abc\n', 'pre', 'pre\nx', 'prex', '/a/x', '/b/x', '/c/x', 'a*', 'a\\*', 'a.', '\xff', 'pre\xffx',
  ];
  for (const p of patterns) {
    it(JSON.stringify(p), () => {
      const re = RE2JS.compile(p);
      const onWire = fullMatchTest(p);
      const onText = fullMatchTest(p, 'text');
      for (const v of inputs) {
        const want = re.testExact(Buffer.from(v, 'utf8'));
        expect(onWire(wire(v)), `${JSON.stringify(p)} vs wire ${JSON.stringify(v)}`).toBe(want);
        expect(onText(v), `${JSON.stringify(p)} vs text ${JSON.stringify(v)}`).toBe(want);
      }
      // Raw wire bytes that are not UTF-8 (each invalid byte is one rune for RE2, as in Go).
      for (const raw of ['\xff', 'a\xffc', 'pre\xc3', '/api/\xe9', 'h\xe9llo', '\xc3\xa9.*']) {
        expect(onWire(raw), `${JSON.stringify(p)} vs raw ${JSON.stringify(raw)}`).toBe(re.testExact(Buffer.from(raw, 'latin1')));
      }
    });
  }
});

// Config paths: every error names file, resource and field and carries RE2's message.
const SE = serviceYaml('reviews', [1001]);
const vs = (match: string) => `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - match: [${match}]
      route: [{ destination: { host: reviews } }]
    - route: [{ destination: { host: reviews } }]
`;

function errorsOf(yaml: string): string[] {
  const errors: string[] = [];
  const rs = parseResourceText('m.yaml', yaml, errors);
  if (errors.length) return errors;
  try { compile(rs, { version: '1', source: 't' }); } catch (e) { if (e instanceof ConfigError) return e.errors; throw e; }
  return [];
}

describe('config validation', () => {
  const cases: Array<[string, string]> = [
    ['{ uri: { regex: "[A-Z" } }', 'm.yaml (document 2): VirtualService/reviews: spec.http[0].match[0].uri.regex: invalid regex: error parsing regexp: missing closing ]: `[A-Z`'],
    ['{ headers: { x-user: { regex: "(?=a)" } } }', 'm.yaml (document 2): VirtualService/reviews: spec.http[0].match[0].headers.x-user.regex: invalid regex: error parsing regexp: invalid or unsupported Perl syntax: `(?=`'],
    ['{ queryParams: { v: { regex: "a{2000}" } } }', 'm.yaml (document 2): VirtualService/reviews: spec.http[0].match[0].queryParams.v.regex: invalid regex: error parsing regexp: invalid repeat count: `{2000}`'],
    ['{ authority: { regex: "" } }', 'm.yaml (document 2): VirtualService/reviews: spec.http[0].match[0].authority.regex: invalid regex: regex must not be empty'],
    ['{ withoutHeaders: { x: { regex: "\\\\8" } } }', 'm.yaml (document 2): VirtualService/reviews: spec.http[0].match[0].withoutHeaders.x.regex: invalid regex: error parsing regexp: invalid escape sequence: `\\8`'],
  ];
  for (const [m, want] of cases) it(m, () => expect(errorsOf(vs(m))).toEqual([want]));

  it('RE2-only syntax is accepted', () => {
    expect(errorsOf(vs('{ uri: { regex: "(?i)/api/(?P<v>v[[:digit:]]+)/.*\\\\z" } }'))).toEqual([]);
  });

  it('a snapshot from a control server is re-checked: every regex, named by where it is', () => {
    const snap = snapshotFromYaml(vs('{ uri: { prefix: / } }'));
    const route = snap.virtualHosts.find((v) => v.name === 'default/reviews')!.routes[0];
    route.match[0] = { headers: { 'x-a': { regex: '(' } }, queryParams: { q: { regex: '[[:nope:]]' } } };
    expect(() => Runtime.build(snap, null, {})).toThrow(ConfigError);
    try { Runtime.build(snap, null, {}); } catch (e) {
      const errs = (e as ConfigError).errors;
      expect(errs).toHaveLength(2);
      expect(errs[0]).toMatch(/^virtualHosts\[\d+\] \(default\/reviews\)\.routes\[0\] \(.*\)\.match\[0\]\.headers\.x-a\.regex: invalid regex: error parsing regexp: missing closing \): `\(`$/);
      expect(errs[1]).toMatch(/\.match\[0\]\.queryParams\.q\.regex: invalid regex: error parsing regexp: invalid character class range: `\[:nope:\]`$/);
    }
  });
});

describe('routing with RE2 matchers', () => {
  const headersOf = (h: Record<string, string>) => ({ header: (n: string) => h[n] });
  const view = (path: string, h: Record<string, string> = {}, query = ''): RequestView => ({ method: 'GET', path, query, authority: 'reviews', req: headersOf(h) });
  const rt = Runtime.build(snapshotFromYaml(`${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: redos
      match: [{ headers: { x-user: { regex: "(a+)+b" } } }]
      route: [{ destination: { host: reviews } }]
    - name: ci
      match: [{ uri: { regex: "(?i)/CI/[[:digit:]]+" } }]
      route: [{ destination: { host: reviews } }]
    - name: ignore-case-not-for-regex
      match: [{ uri: { regex: "/lower/x" }, ignoreUriCase: true }]
      route: [{ destination: { host: reviews } }]
    - name: ignore-case-prefix
      match: [{ uri: { prefix: /pre }, ignoreUriCase: true }]
      route: [{ destination: { host: reviews } }]
    - name: query
      match: [{ queryParams: { v: { regex: "v[0-9]" } } }]
      route: [{ destination: { host: reviews } }]
    - name: utf8
      match: [{ headers: { x-name: { regex: "h.llo" } } }]
      route: [{ destination: { host: reviews } }]
    - name: utf8-exact
      match: [{ headers: { x-exact: { exact: "héllo" } } }]
      route: [{ destination: { host: reviews } }]
    - name: query-utf8
      match: [{ queryParams: { n: { regex: "h.llo" } }, uri: { prefix: /q8 } }]
      route: [{ destination: { host: reviews } }]
    - name: query-utf8-exact
      match: [{ queryParams: { n: { exact: "日本" } } }]
      route: [{ destination: { host: reviews } }]
    - name: fallback
      route: [{ destination: { host: reviews } }]
`), null, {});
  const vh = rt.routes.forHost('reviews')!;
  const route = (v: RequestView) => matchRoute(vh, v)?.name;

  it('a ReDoS header is simply no match', () => {
    expect(route(view('/', { 'x-user': 'a'.repeat(40) }))).toBe('fallback');
    expect(route(view('/', { 'x-user': 'aaab' }))).toBe('redos');
  });
  it('(?i) and POSIX classes route', () => {
    expect(route(view('/ci/42'))).toBe('ci');
    expect(route(view('/Ci/4x'))).toBe('fallback');
  });
  it('ignoreUriCase applies to exact/prefix, not to regex (Envoy: case_sensitive is ignored for safe_regex)', () => {
    expect(route(view('/lower/x'))).toBe('ignore-case-not-for-regex');
    expect(route(view('/LOWER/X'))).toBe('fallback');
    expect(route(view('/PREfix'))).toBe('ignore-case-prefix');
  });
  it('query parameters full-match', () => {
    expect(route(view('/q', {}, 'v=v1'))).toBe('query');
    expect(route(view('/q', {}, 'v=v12'))).toBe('fallback');
  });
  it('a header with UTF-8 bytes is matched rune by rune', () => {
    expect(route(view('/', { 'x-name': wire('héllo') }))).toBe('utf8');
    expect(route(view('/', { 'x-name': wire('hllo') }))).toBe('fallback');
  });
  it('exact strings from the config compare with the UTF-8 bytes on the wire', () => {
    expect(route(view('/', { 'x-exact': wire('héllo') }))).toBe('utf8-exact');
    expect(route(view('/', { 'x-exact': 'héllo' }))).toBe('fallback'); // one byte 0xE9: not UTF-8 é
  });
  it('query values are percent-decoded as UTF-8 before matching', () => {
    expect(route(view('/q8', {}, 'n=h%C3%A9llo'))).toBe('query-utf8');
    expect(route(view('/q', {}, `n=${encodeURIComponent('日本')}`))).toBe('query-utf8-exact');
  });
  afterAll(() => rt.retire(null));
});
