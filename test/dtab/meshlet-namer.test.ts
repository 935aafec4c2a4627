// The meshlet namer (/#/meshlet) over a fake service table, through the default base dtab.
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BASE_DTAB, Dtab, Interpreter, MESHLET_NAMER_PREFIX, encodeBound, meshletNamer, parsePath, pickBranch, type Bound,
} from '../../proxy/dtab/index.ts';

const SERVICES: Record<string, string[]> = { world: ['v1', 'v2'], 'world-v2': [], hello: [] };
const asked: string[] = [];
const namer = meshletNamer((h) => { asked.push(h); return SERVICES[h] ? { subsets: SERVICES[h] } : undefined; });
const mesh = [{ prefix: MESHLET_NAMER_PREFIX, namer }];
const interp = new Interpreter(Dtab.parse(DEFAULT_BASE_DTAB), mesh);
const bind = (path: string, local = '') => encodeBound(interp.bind(parsePath(path), Dtab.parse(local)));

describe('meshletNamer', () => {
  it('DEFAULT_BASE_DTAB is /srv => /#/meshlet; /svc => /srv', () => {
    expect(Dtab.parse(DEFAULT_BASE_DTAB).show()).toBe('/srv=>/#/meshlet;/svc=>/srv');
  });

  it('/svc/<host> binds to /#/meshlet/<host> with an empty residual', () => {
    expect(bind('/svc/world')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
    expect(bind('/svc/hello')).toEqual({ bound: '/#/meshlet/hello', residual: '/' });
  });

  it('the host is matched like a Host header: case and :port do not matter', () => {
    asked.length = 0;
    expect(bind('/svc/WORLD:8080')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
    expect(asked).toEqual(['world']);
  });

  it('the id uses the canonical host the table returns, when it returns one', () => {
    const n = meshletNamer((h) => (h === 'world' ? { host: 'world.default.svc.cluster.local', subsets: ['v1'] } : undefined));
    expect(n.lookup(['world', 'v1', 'x'])).toEqual({ t: 'leaf', v: { id: ['#', 'meshlet', 'world.default.svc.cluster.local', 'v1'], residual: ['x'] } });
  });

  it('/#/meshlet/<host>/<subset>[/rest] binds to that subset, residual = what follows', () => {
    expect(bind('/srv/world/v2')).toEqual({ bound: '/#/meshlet/world/v2', residual: '/' });
    expect(bind('/srv/world/v1/a/b')).toEqual({ bound: '/#/meshlet/world/v1', residual: '/a/b' });
  });

  it('an unknown host or subset is neg', () => {
    expect(bind('/svc/nope')).toBe('neg');
    expect(bind('/srv/world/v9')).toBe('neg');
    expect(bind('/#/meshlet')).toBe('neg');
    expect(namer.lookup([])).toEqual({ t: 'neg' });
  });

  it('staging overrides: a later dentry wins, and falls back when its target is unknown', () => {
    expect(bind('/svc/world', '/svc/world => /srv/world-v2')).toEqual({ bound: '/#/meshlet/world-v2', residual: '/' });
    expect(bind('/svc/world', '/svc/world => /srv/world-v3')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
    expect(bind('/svc/world', '/svc/world => /srv/world/v2')).toEqual({ bound: '/#/meshlet/world/v2', residual: '/' });
    expect(bind('/svc/world', '/svc/world => /srv/world/v7')).toEqual({ bound: '/#/meshlet/world', residual: '/' });
    expect(bind('/svc/world', '/svc/world => !')).toBe('fail');
    // Other names are untouched by the override.
    expect(bind('/svc/hello', '/svc/world => /srv/world-v2')).toEqual({ bound: '/#/meshlet/hello', residual: '/' });
  });

  it('a weighted canary splits per request in proportion to the weights', () => {
    const tree = interp.bind(parsePath('/svc/world'), Dtab.parse('/svc/world => 1 * /srv/world/v1 & 3 * /srv/world/v2'));
    expect(encodeBound(tree)).toEqual({ union: [
      { weight: 1, tree: { bound: '/#/meshlet/world/v1', residual: '/' } },
      { weight: 3, tree: { bound: '/#/meshlet/world/v2', residual: '/' } },
    ] });
    let v2 = 0;
    const N = 4000;
    for (let i = 0; i < N; i++) if ((pickBranch(tree, () => (i + 0.5) / N) as Bound).id[3] === 'v2') v2++;
    expect(v2).toBe(3000); // an evenly spread random source hits the 1:3 split exactly
  });
});
