// The interpreter beyond the vectors: system and Linkerd classpath namers, errors, the binding
// cache, and the per-request branch choice.
import { describe, expect, it } from 'vitest';
import {
  BindError, Dtab, Interpreter, NEG, encodeBound, encodeError, leaf, parsePath, pickBranch, type Bound, type BoundTree, type Namer,
} from '../../proxy/dtab/index.ts';

function bind(dtab: string, path: string, it = new Interpreter(Dtab.parse(dtab))): unknown {
  try { return encodeBound(it.bind(parsePath(path))); } catch (e) {
    if (e instanceof BindError) return encodeError(e);
    throw e;
  }
}
/**
 * What a `/$/<class>` rewriting namer turns `rest` into: the rewrite re-enters the dtab, whose only
 * dentry catches names under /r, so the rewritten path reads back as /r + the bound residual.
 */
function rw(cls: string, rest: string): string {
  const it = new Interpreter(Dtab.parse('/r => /$/inet/127.1/1'));
  const r = bind('', `/$/${cls}${rest}`, it);
  return typeof r === 'string' ? r : `/r${(r as { residual: string }).residual === '/' ? '' : (r as { residual: string }).residual}`;
}

describe('system namer', () => {
  it('/$/inet host and port forms, port checked after host', () => {
    expect(bind('', '/$/inet/web/80/a')).toEqual({ bound: '/$/inet/web/80', residual: '/a' });
    expect(bind('', '/$/inet/8080/a/b')).toEqual({ bound: '/$/inet/8080', residual: '/a/b' });
    expect(bind('', '/$/inet/1234/5678')).toEqual({ bound: '/$/inet/1234/5678', residual: '/' });
    expect(bind('', '/$/fixedinet/127.1/80')).toEqual({ bound: '/$/fixedinet/127.1/80', residual: '/' });
  });
  it('the bound address is kept for the proxy (host, port)', () => {
    const t = new Interpreter(Dtab.empty).bind(parsePath('/$/inet/127.1/8080')) as Extract<BoundTree, { t: 'leaf' }>;
    expect(t.v.addr).toEqual({ host: '127.1', port: 8080 });
  });
  it('malformed inet and unknown classes are errors, not neg', () => {
    expect(bind('', '/$/inet/web')).toBe('error: namer: Unknown namer: inet for path: /$/inet/web');
    expect(bind('', '/$/inet/web/99999999999')).toBe('error: namer: Unknown namer: inet for path: /$/inet/web/99999999999');
    expect(bind('', '/$/com.example.Nope/x')).toBe('error: namer: Unknown namer: com.example.Nope for path: /$/com.example.Nope/x');
    expect(bind('', '/$/inet/70000')).toBe('error: namer: port out of range:70000');
  });
  it('JS object keys are not class names', () => {
    expect(bind('', '/$/constructor/x')).toBe('error: namer: Unknown namer: constructor for path: /$/constructor/x');
    expect(bind('', '/$/__proto__/x')).toBe('error: namer: Unknown namer: __proto__ for path: /$/__proto__/x');
  });
  it('/$ alone and non-system paths are neg', () => {
    expect(bind('', '/$')).toBe('neg');
    expect(bind('', '/')).toBe('neg');
    expect(bind('', '/svc/x')).toBe('neg');
  });
  it('a dentry shadows system paths: /=>! fails everything', () => {
    expect(bind('/=>!', '/$/inet/127.1/80')).toBe('fail');
  });
});

describe('Linkerd classpath namers (dtab.md §2.8)', () => {
  it('io.buoyant.rinet binds port-first', () => {
    expect(bind('', '/$/io.buoyant.rinet/8080/web/x')).toEqual({ bound: '/$/io.buoyant.rinet/8080/web', residual: '/x' });
    expect(bind('', '/$/io.buoyant.rinet/8080')).toBe('neg');
    expect(bind('', '/$/io.buoyant.rinet/http/web')).toBe('error: namer: For input string: "http"');
  });
  it('hostportPfx / porthostPfx split host:port (port a lower-case DNS label)', () => {
    expect(rw('io.buoyant.hostportPfx', '/r/web:8080/x')).toBe('/r/web/8080/x');
    expect(rw('io.buoyant.porthostPfx', '/r/web:http/x')).toBe('/r/http/web/x');
    expect(rw('io.buoyant.hostportPfx', '/r/web:HTTP')).toBe('neg');
    expect(rw('io.buoyant.hostportPfx', '/r/web')).toBe('neg');
    expect(rw('io.buoyant.hostportPfx', '/r/a:b:c')).toBe('neg');
    expect(rw('io.buoyant.hostportPfx', `/r/web:${'a'.repeat(64)}`)).toBe('neg');
    expect(rw('io.buoyant.hostportPfx', '/r/web:ab-')).toBe('/r/web/ab-'); // Linkerd's regex allows it
  });
  it('anyMethod(Pfx) drops an upper-case method element', () => {
    expect(rw('io.buoyant.http.anyMethod', '/GET/r/x')).toBe('/r/x');
    expect(rw('io.buoyant.http.anyMethod', '/get/r/x')).toBe('neg');
    expect(rw('io.buoyant.http.anyMethodPfx', '/r/POST/x')).toBe('/r/x');
  });
  it('anyHost(Pfx) drops a host element', () => {
    expect(rw('io.buoyant.http.anyHost', '/foo.buoyant.io:80/r/x')).toBe('/r/x');
    expect(rw('io.buoyant.http.anyHostPfx', '/r/foo_bar.io/x')).toBe('/r/x');
    expect(rw('io.buoyant.http.anyHostPfx', '/r/\\x5b::1\\x5d/x')).toBe('neg');
  });
  it('subdomainOf(Pfx) keeps the subdomain (port dropped)', () => {
    expect(bind('/foo => /$/inet/127.1/1', '/$/io.buoyant.http.subdomainOf/buoyant.io/foo.buoyant.io:8080/x')).toEqual({ bound: '/$/inet/127.1/1', residual: '/x' });
    expect(rw('io.buoyant.http.subdomainOfPfx', '/buoyant.io/r/foo.buoyant.io/x')).toBe('/r/foo/x');
    expect(rw('io.buoyant.http.subdomainOf', '/buoyant.io/buoyant.io')).toBe('neg');
    expect(rw('io.buoyant.http.subdomainOf', '/buoyant.io/foo.example.com')).toBe('neg');
  });
  it('domainToPath(Pfx) reverses the labels; the port is not dropped', () => {
    expect(bind('/io/buoyant/foo => /$/inet/127.1/1', '/$/io.buoyant.http.domainToPath/foo.buoyant.io/x')).toEqual({ bound: '/$/inet/127.1/1', residual: '/x' });
    expect(rw('io.buoyant.http.domainToPathPfx', '/r/web:8080/x')).toBe('/r/web:8080/x');
    expect(rw('io.buoyant.http.domainToPathPfx', '/r/a.b.c')).toBe('/r/c/b/a');
    expect(rw('io.buoyant.http.domainToPathPfx', '/r/a..b')).toBe('neg'); // would make an empty element
  });
  it('rewriting namers answer neg for the empty path', () => {
    expect(bind('', '/$/io.buoyant.http.anyMethod')).toBe('neg');
  });
});

describe('errors and depth', () => {
  it('a namer that throws fails the binding with its message', () => {
    const boom: Namer = { lookup: () => { throw new Error('kaboom'); } };
    const it = new Interpreter(Dtab.parse('/svc => /#/boom'), [{ prefix: ['#', 'boom'], namer: boom }]);
    expect(() => it.bind(parsePath('/svc/x'))).toThrow(BindError);
    try { it.bind(parsePath('/svc/x')); } catch (e) { expect((e as BindError).kind).toBe('namer'); expect((e as Error).message).toBe('kaboom'); }
  });
  it('depth: 99 rewrites then the final lookup bind; 100 rewrites exceed the limit', () => {
    const chain = (n: number) => Array.from({ length: n }, (_, i) => `/p${i} => /p${i + 1}`).join(';') + `;/p${n} => /$/inet/127.1/1`;
    expect(bind(chain(98), '/p0')).toEqual({ bound: '/$/inet/127.1/1', residual: '/' });
    expect(bind(chain(99), '/p0')).toBe('error: max-depth');
    const it = new Interpreter(Dtab.parse('/a=>/b;/b=>/a'));
    try { it.bind(parsePath('/a')); expect.unreachable(); } catch (e) {
      expect((e as BindError).kind).toBe('max-depth');
      expect((e as Error).message).toBe('Max recursion level: 100 reached in Namer lookup');
    }
  });
  it('configured namers: Neg moves on to the next matching namer', () => {
    const a: Namer = { lookup: () => NEG };
    const b: Namer = { lookup: (rest) => leaf({ id: ['#', 'x'], residual: rest }) };
    const it = new Interpreter(Dtab.empty, [{ prefix: ['#', 'x'], namer: a }, { prefix: ['#', 'x'], namer: b }]);
    expect(encodeBound(it.bind(parsePath('/#/x/y')))).toEqual({ bound: '/#/x', residual: '/y' });
  });
});

describe('binding cache', () => {
  it('no override: the same tree object is returned from the second call on', () => {
    let calls = 0;
    const n: Namer = { lookup: (r) => { calls++; return leaf({ id: ['#', 'n', r[0]], residual: r.slice(1) }); } };
    const it = new Interpreter(Dtab.parse('/svc => /#/n'), [{ prefix: ['#', 'n'], namer: n }]);
    const a = it.bind(['svc', 'web']);
    const b = it.bind(['svc', 'web']);
    const c = it.bind(['svc', 'web'], Dtab.empty);
    expect(b).toBe(a);
    expect(c).toBe(a);
    expect(calls).toBe(1);
    expect(it.cacheEntries).toBe(1);
  });
  it('an override is a separate entry keyed by its show form (spelling does not matter)', () => {
    const it = new Interpreter(Dtab.parse('/svc => /$/inet/127.1/1'));
    const x = it.bind(['svc', 'a'], Dtab.parse('/svc/a => /$/inet/127.1/2'));
    const y = it.bind(['svc', 'a'], Dtab.parse('  /svc/a=>/$/inet/127.1/2 ;'));
    expect(y).toBe(x);
    expect(encodeBound(x)).toEqual({ bound: '/$/inet/127.1/2', residual: '/' });
    expect(encodeBound(it.bind(['svc', 'a']))).toEqual({ bound: '/$/inet/127.1/1', residual: '/a' });
    expect(it.cacheEntries).toBe(2);
  });
  it('paths that share a last element do not collide', () => {
    const it = new Interpreter(Dtab.parse('/a => /$/inet/127.1/1; /b => /$/inet/127.1/2'));
    expect(encodeBound(it.bind(['a', 'x']))).toEqual({ bound: '/$/inet/127.1/1', residual: '/x' });
    expect(encodeBound(it.bind(['b', 'x']))).toEqual({ bound: '/$/inet/127.1/2', residual: '/x' });
    expect(encodeBound(it.bind(['a', 'x']))).toEqual({ bound: '/$/inet/127.1/1', residual: '/x' });
    expect(encodeBound(it.bind(['x']))).toBe('neg');
  });
  it('is bounded; eviction gives recently used entries a second chance', () => {
    let calls = 0;
    const n: Namer = { lookup: (r) => { calls++; return leaf({ id: ['#', 'n', r[0]], residual: [] }); } };
    const it = new Interpreter(Dtab.parse('/svc => /#/n'), [{ prefix: ['#', 'n'], namer: n }], { cacheSize: 3 });
    it.bind(['svc', 'a']); it.bind(['svc', 'b']); it.bind(['svc', 'c']);
    it.bind(['svc', 'a']);                  // a is used again
    it.bind(['svc', 'd']);                  // evicts b (the oldest not used since)
    expect(it.cacheEntries).toBe(3);
    calls = 0;
    it.bind(['svc', 'a']);
    expect(calls).toBe(0);
    it.bind(['svc', 'b']);
    expect(calls).toBe(1);
    expect(it.cacheEntries).toBe(3);
    for (let i = 0; i < 50; i++) it.bind(['svc', `n${i}`], i % 2 ? Dtab.parse(`/svc/n${i} => /#/n/z`) : undefined);
    expect(it.cacheEntries).toBe(3);
  });
  it('errors are cached too, and thrown again', () => {
    let calls = 0;
    const boom: Namer = { lookup: () => { calls++; throw new Error('no'); } };
    const it = new Interpreter(Dtab.parse('/svc => /#/b'), [{ prefix: ['#', 'b'], namer: boom }]);
    expect(() => it.bind(['svc'])).toThrow('no');
    expect(() => it.bind(['svc'])).toThrow('no');
    expect(calls).toBe(1);
  });
});

describe('pickBranch', () => {
  const b = (id: string): BoundTree => leaf<Bound>({ id: [id], residual: [] });
  const idOf = (r: ReturnType<typeof pickBranch>) => (typeof r === 'string' ? r : r.id[0]);
  it('leaves and constants answer directly', () => {
    expect(idOf(pickBranch(b('x')))).toBe('x');
    expect(pickBranch({ t: 'neg' })).toBe('neg');
    expect(pickBranch({ t: 'fail' })).toBe('fail');
    expect(pickBranch({ t: 'empty' })).toBe('empty');
  });
  it('chooses with probability proportional to weight', () => {
    const t: BoundTree = { t: 'union', branches: [{ w: 1, tree: b('a') }, { w: 3, tree: b('b') }] };
    expect(idOf(pickBranch(t, () => 0))).toBe('a');
    expect(idOf(pickBranch(t, () => 0.2499))).toBe('a');
    expect(idOf(pickBranch(t, () => 0.25))).toBe('b');
    expect(idOf(pickBranch(t, () => 0.9999999))).toBe('b');
  });
  it('zero-weight branches are never chosen unless all weights are 0 (then uniform)', () => {
    const t: BoundTree = { t: 'union', branches: [{ w: 0, tree: b('a') }, { w: 2, tree: b('b') }, { w: 0, tree: b('c') }] };
    for (const r of [0, 0.3, 0.999999999]) expect(idOf(pickBranch(t, () => r))).toBe('b');
    const z: BoundTree = { t: 'union', branches: [{ w: 0, tree: b('a') }, { w: 0, tree: b('b') }, { w: 0, tree: b('c') }] };
    expect([0, 0.34, 0.67].map((r) => idOf(pickBranch(z, () => r)))).toEqual(['a', 'b', 'c']);
  });
  it('nested unions choose hierarchically (the Finagle full example: 45/30/25)', () => {
    const it = new Interpreter(Dtab.parse('/foo => 3 * /baz & /$/inet/7070; /baz => 3 * /$/inet/8080 & 2 * /$/inet/9090'));
    const tree = it.bind(parsePath('/foo'));
    const counts: Record<string, number> = {};
    // Up to two draws per pick (outer, then inner): a stratified 100 x 100 grid over both.
    for (let k = 0; k < 10_000; k++) {
      const draws = [(Math.floor(k / 100) + 0.5) / 100, ((k % 100) + 0.5) / 100];
      let j = 0;
      const port = (pickBranch(tree, () => draws[j++]) as Bound).id[2];
      counts[port] = (counts[port] ?? 0) + 1;
    }
    expect(counts).toEqual({ 8080: 4500, 9090: 3000, 7070: 2500 });
  });
  it('an Empty union branch can be picked (the proxy answers 502 then)', () => {
    const t: BoundTree = { t: 'union', branches: [{ w: 1, tree: b('a') }, { w: 1, tree: { t: 'empty' } }] };
    expect(pickBranch(t, () => 0.75)).toBe('empty');
  });
});
