// `meshlet dtab show|resolve|delegate`, spawned as users run it (Node 24 running bin/meshlet.js).
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadVectors } from './fixtures.ts';

const BIN = fileURLToPath(new URL('../../bin/meshlet.js', import.meta.url));

function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, 'dtab', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => { out += c; });
    p.stderr.on('data', (c) => { err += c; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out: out.replace(/\n$/, ''), err: err.replace(/\n$/, '') }));
  });
}

const vectors = loadVectors('dtab-vectors.json');
const pick = (pred: (v: any) => boolean) => vectors.map((v, i) => ({ v, i })).filter(({ v }) => pred(v));

describe('meshlet dtab show', () => {
  for (const { v, i } of pick((v) => v.op === 'parse-dtab').filter((_, k) => k % 2 === 0)) {
    it(`parse-dtab #${i} ${JSON.stringify(v.dtab).slice(0, 60)}`, async () => {
      const r = await cli('show', v.dtab);
      if (v.expect === 'error: parse') {
        expect(r.code).toBe(2);
        expect(r.out).toBe('');
        expect(r.err).toBe(v.message);
      } else {
        expect(r.code).toBe(0);
        expect(r.out).toBe(v.expect);
      }
    });
  }
  it('usage errors exit 2; --help exits 0', async () => {
    expect((await cli('show')).code).toBe(2);
    expect((await cli('show', '/a=>/b', '/c=>/d')).code).toBe(2);
    const h = await cli('show', '--help');
    expect(h.code).toBe(0);
    expect(h.out).toContain("usage: meshlet dtab show '<dtab>'");
  });
});

describe('meshlet dtab resolve', () => {
  // A spread of bind/request vectors that need no fixture namers (each spawn costs ~50 ms).
  const SAMPLE = [69, 70, 74, 75, 80, 88, 90, 91, 94, 101, 105, 109];
  const cases = pick((v) => (v.op === 'bind' || v.op === 'request') && !v.namers && !v.classpath && !v.clearContext)
    .filter(({ i }) => SAMPLE.includes(i));
  for (const { v, i } of cases) {
    it(`${v.op} #${i} ${JSON.stringify(v.dtab).slice(0, 60)} ${v.path}`, async () => {
      const args = ['resolve', '--dtab', v.dtab];
      if (v.maxDepth) args.push('--max-depth', String(v.maxDepth));
      for (const [n, val] of v.headers ?? []) args.push(n.toLowerCase() === 'l5d-ctx-dtab' ? '--ctx' : '--override', val);
      const r = await cli(...args, v.path);
      if (v.expect === 'error: 400') {
        expect(r.code).toBe(2);
        expect(r.err).toBe(v.message);
        return;
      }
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toEqual(v.expect);
    });
  }
  it('the default base dtab is empty, and /#/meshlet names are neg offline', async () => {
    expect((await cli('resolve', '/svc/web')).out).toBe('"neg"');
    expect((await cli('resolve', '--dtab', '/svc => /#/meshlet', '/svc/web')).out).toBe('"neg"');
  });
  it('--max-depth, --pretty', async () => {
    expect((await cli('resolve', '--dtab', '/s => /s/srv', '--max-depth', '2', '/s/foo')).out).toBe('"error: max-depth"');
    const r = await cli('resolve', '--pretty', '--dtab', '/a => /$/inet/127.1/80', '/a');
    expect(r.out).toBe('{\n  "bound": "/$/inet/127.1/80",\n  "residual": "/"\n}');
  });
  it('parse errors in the base dtab or the path exit 2 with the message; so do usage errors', async () => {
    expect(await cli('resolve', '--dtab', '/a = > /b', '/a')).toEqual({ code: 2, out: '', err: "'>' expected but ' ' found at '/a =[ ]> /b'" });
    expect(await cli('resolve', '/foo/bar/')).toEqual({ code: 2, out: '', err: "label char expected but end of input found at '/foo/bar/[]'" });
    expect((await cli('resolve')).code).toBe(2);
    expect((await cli('resolve', '--bogus', '/a')).err).toBe("unknown flag '--bogus'");
    expect((await cli('frobnicate')).code).toBe(2);
  });
  it('--help says what is offline', async () => {
    const h = await cli('resolve', '--help');
    expect(h.code).toBe(0);
    expect(h.out).toContain('/#/meshlet/... names are');
    expect(h.out).toContain('--override');
  });
});

describe('meshlet dtab delegate', () => {
  for (const { v, i } of pick((v) => v.op === 'delegate' && !v.namers)) {
    it(`delegate #${i} ${JSON.stringify(v.dtab).slice(0, 60)} ${v.path}`, async () => {
      const r = await cli('delegate', '--dtab', v.dtab, v.path);
      expect(r.code).toBe(0);
      expect(r.out).toBe(JSON.stringify(v.expect)); // key order included
    });
  }
  it('Linkerd\'s DelegatorTest dtab without its fixture namers: /$/fail and neg in place', async () => {
    const r = await cli('delegate', '--pretty', '--dtab', '/foo => /bah | /$/fail ; /foo => /bar ; /boo => /foo', '/boo/lol');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(vectors[113].expect);
    expect(r.out.split('\n').length).toBeGreaterThan(10);
  });
  it('invalid dtab or path: exit 2', async () => {
    expect(await cli('delegate', '--dtab', 'invalid-param', '/a')).toEqual({ code: 2, out: '', err: "'/' expected but 'i' found at '[i]nvalid-param'" });
    expect((await cli('delegate', 'nope')).code).toBe(2);
  });
});
