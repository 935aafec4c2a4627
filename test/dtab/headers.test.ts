// Linkerd request-header handling, l5d-err encoding, the 502 body, and the delegator page.
import { describe, expect, it } from 'vitest';
import {
  Dtab, Interpreter, delegatorPage, explain, javaUrlEncode, parseDtabHeaders, parsePath, resolutions, unableToRoute,
} from '../../proxy/dtab/index.ts';

describe('parseDtabHeaders', () => {
  it('ctx lines, then user lines, each parsed on its own and concatenated', () => {
    const r = parseDtabHeaders(['/a => /b', '/c=>/d;'], ['/a => /e', '/f=>/g']);
    expect(r).toMatchObject({ ok: true, forwardCtx: '/a=>/b;/c=>/d;/a=>/e;/f=>/g' });
    if (r.ok) expect(r.local.size).toBe(4);
  });
  it('no values, or only empty ones: empty local dtab and nothing to forward', () => {
    expect(parseDtabHeaders([], [])).toEqual({ ok: true, local: Dtab.empty, forwardCtx: null });
    expect(parseDtabHeaders([''], ['  '])).toEqual({ ok: true, local: Dtab.empty, forwardCtx: null });
  });
  it('a line cannot continue another: a dentry split across two header lines fails', () => {
    expect(parseDtabHeaders([], ['/a =>', '/b'])).toEqual({ ok: false, message: "simple expected but end of input found at '/a =>[]'" });
  });
  it('the first bad value decides the message', () => {
    expect(parseDtabHeaders(['nope'], ['bad'])).toEqual({ ok: false, message: "'/' expected but 'n' found at '[n]ope'" });
  });
});

describe('javaUrlEncode (URLEncoder, ISO-8859-1)', () => {
  it('the spec example', () => {
    expect(javaUrlEncode("'/' expected but 'i' found at '[i] am not a dtab'")).toBe('%27%2F%27+expected+but+%27i%27+found+at+%27%5Bi%5D+am+not+a+dtab%27');
  });
  it('safe set, space, control chars, latin-1 and beyond', () => {
    expect(javaUrlEncode('aZ09.-*_ ~\n')).toBe('aZ09.-*_+%7E%0A');
    expect(javaUrlEncode('caf\u00e9')).toBe('caf%E9');
    expect(javaUrlEncode('\u20ac\u{1f600}')).toBe('%3F%3F'); // unmappable: '?' each, a surrogate pair once
  });
  it('truncates to a maximum length', () => {
    expect(javaUrlEncode('a b c', 3)).toBe('a+b');
  });
});

describe('unableToRoute (Linkerd RichNoBrokersAvailableException)', () => {
  it('lists service name, resolutions, dtabs, one dentry per line', () => {
    const base = Dtab.parse('/svc => /#/io.l5d.fs; /svc/x => 2 * /a & /b');
    const local = Dtab.parse('/svc/web => ~');
    const it = new Interpreter(base);
    const res = resolutions(explain(it, base.concat(local), parsePath('/svc/web')));
    expect(unableToRoute({ service: parsePath('/svc/web'), baseDtab: base, localDtab: local, resolutions: res })).toBe(`Unable to route request!

service name: /svc/web
resolutions considered:
  / (neg)
  /#/io.l5d.fs/web (neg)
dtab:

base dtab:
  /svc => /#/io.l5d.fs
  /svc/x => 2.00*/a & /b
override dtab:
  /svc/web => ~
`);
  });
  it('without resolutions it says unknown', () => {
    expect(unableToRoute({ service: '/svc/a', baseDtab: Dtab.empty, localDtab: Dtab.empty })).toContain('resolutions considered:\n  unknown\n');
  });
  it('resolutions name errors, fails and bound leaves', () => {
    const it = new Interpreter(Dtab.empty);
    const t = explain(it, Dtab.parse('/a => /$/inet/127.1/1 | /$/nope | !'), parsePath('/a/x'));
    expect(resolutions(t)).toEqual(['/$/inet/127.1/1/x (bound)', '/$/nope/x (exception: Unknown namer: nope for path: /$/nope/x', '/a/x (fail)']);
  });
});

describe('delegatorPage', () => {
  const html = delegatorPage('/srv => /#/meshlet; /svc => /srv; # </script><b>');
  it('is self-contained and lists the base dtab', () => {
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=|https?:\/\//);
    expect(html).toContain('<td>/srv</td><td>=&gt;</td><td>/#/meshlet</td>');
    expect(html).toContain("fetch('delegator.json?' + new URLSearchParams({ dtab, path }))");
  });
  it('embeds the dtab so that it cannot close the script element', () => {
    expect(html.match(/<\/script>/g)).toHaveLength(1);
  });
  it('colours like Linkerd: neg / all-neg alt / neg address, fail / exception', () => {
    expect(html).toContain("n.type === 'alt' && n.alt.every(isNeg)");
    expect(html).toContain("n.bound.addr.type === 'neg'");
    expect(html).toContain("n.type === 'fail' || n.type === 'exception' ? 'fail'");
  });
  it('shows a parse error instead of a table for an invalid base dtab', () => {
    expect(delegatorPage('nope')).toContain("'/' expected but 'n' found at '[n]ope'");
  });
});
