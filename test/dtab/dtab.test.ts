// The meshlet namer, the weighted branch choice, header encoding, and the `meshlet dtab` CLI.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import {
  DEFAULT_BASE_DTAB, Dtab, Interpreter, MESHLET_NAMER_PREFIX, encodeBound, javaUrlEncode, meshletNamer, parsePath, pickBranch, showWeight,
} from '../../proxy/dtab/index.ts';
import { loadVectors } from './fixtures.ts';

const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;
const services: Record<string, string[]> = { 'world.default.svc.cluster.local': ['v1', 'v2'], world: ['v1', 'v2'], 'world-v2': [] };
const mesh = [{ prefix: MESHLET_NAMER_PREFIX, namer: meshletNamer((h) => (services[h] ? { host: h, subsets: services[h] } : undefined)) }];

describe('the meshlet namer', () => {
  const it0 = (local = '') => (path: string) => encodeBound(new Interpreter(Dtab.parse(DEFAULT_BASE_DTAB), mesh).bind(parsePath(path), Dtab.parse(local)));
  it('binds /svc/<host> through the default base dtab to the mesh service', () => {
    expect(it0()('/svc/world')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
    expect(it0()('/svc/WORLD:8080')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
  });
  it('binds a subset directly, and an unknown name is neg', () => {
    expect(it0()('/srv/world/v2')).toEqual({ bound: '/#/meshlet/world/v2', residual: '/' });
    expect(it0()('/srv/world/v9')).toEqual({ bound: '/#/meshlet/world', residual: '/v9' });
    expect(it0()('/svc/nope')).toBe('neg');
  });
  it('the staging override: /svc/world => /srv/world-v2, falling back when world-v2 is unknown', () => {
    expect(it0('/svc/world => /srv/world-v2')('/svc/world')).toEqual({ bound: '/#/meshlet/world-v2', residual: '/' });
    expect(it0('/svc/world => /srv/world-v3')('/svc/world')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
    expect(it0('/svc/world => /srv/world/v2')('/svc/world')).toEqual({ bound: '/#/meshlet/world/v2', residual: '/' });
  });
  it('weighted unions split per request in proportion to weight', () => {
    const tree = new Interpreter(Dtab.parse(DEFAULT_BASE_DTAB), mesh).bind(parsePath('/svc/world'), Dtab.parse('/svc/world => 1 * /srv/world/v1 & 3 * /srv/world/v2'));
    let v2 = 0;
    let x = 0;
    const rnd = () => { x = (x + 0.618033988749895) % 1; return x; }; // deterministic, well spread
    for (let i = 0; i < 4000; i++) { const b = pickBranch(tree, rnd); if (typeof b !== 'string' && b.id[3] === 'v2') v2++; }
    expect(Math.abs(v2 / 4000 - 0.75)).toBeLessThan(0.01);
  });
});

describe('encoding details', () => {
  it('weights print with Java %.2f half-up on the shortest decimal', () => {
    expect(showWeight(0.125)).toBe('0.13');
    expect(showWeight(2.675)).toBe('2.68');
    expect(showWeight(1 / 3)).toBe('0.33');
    expect(showWeight(0.995)).toBe('1.00');
    expect(showWeight(2)).toBe('2.00');
  });
  it('l5d-err is URL-encoded like Java URLEncoder (ISO-8859-1)', () => {
    expect(javaUrlEncode("'/' expected but 'i' found at '[i] am not a dtab'")).toBe('%27%2F%27+expected+but+%27i%27+found+at+%27%5Bi%5D+am+not+a+dtab%27');
  });
});

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'dtab', ...args], { encoding: 'utf8', timeout: 15_000 });
  return { code: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

describe('meshlet dtab CLI', () => {
  const vectors = loadVectors('dtab-vectors.json');
  it('show answers the parse-dtab vectors (canonical form, or exit 2 with the message)', () => {
    for (const v of vectors.filter((x) => x.op === 'parse-dtab' && x.dtab !== null)) {
      const r = cli('show', v.dtab);
      if (v.expect === 'error: parse') { expect(r.code).toBe(2); if (v.message) expect(r.err).toBe(v.message); } else { expect(r.code).toBe(0); expect(r.out).toBe(v.expect); }
    }
  });
  it('resolve answers bind and request vectors without fixtures', () => {
    for (const v of vectors.filter((x) => (x.op === 'bind' || x.op === 'request') && !x.namers && !x.classpath && !x.maxDepth && !x.clearContext).slice(0, 12)) {
      const args = ['resolve', '--dtab', v.dtab];
      for (const [n, val] of v.headers ?? []) args.push(n.toLowerCase() === 'l5d-ctx-dtab' ? '--ctx' : '--override', val);
      const r = cli(...args, v.path);
      if (v.expect === 'error: 400') { expect(r.code).toBe(2); continue; }
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toEqual(v.expect);
    }
  });
  it('delegate answers a delegate vector', () => {
    const v = vectors.find((x) => x.op === 'delegate' && !x.namers)!;
    const r = cli('delegate', '--dtab', v.dtab, v.path);
    expect(r.code).toBe(0);
    expect(r.out).toBe(JSON.stringify(v.expect));
  });
});
