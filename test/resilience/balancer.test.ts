// Host choice (proxy/upstream/balancer.ts) and the retry limits: connect backoff and previous hosts
// steer the balancer; no retry budget unless one is configured; Istio's trafficPolicy.retryBudget
// as Envoy's concurrent-retry budget.
import { afterAll, describe, expect, it } from 'vitest';
import { Balancer, HostLb, type BalancedHost } from '../../proxy/upstream/balancer.ts';
import { retryBudget } from '../../cli/proxy.ts';
import { snapshotFromYaml, Fixtures, send, deadPort } from '../helpers.ts';
import { C, drive, ratings, stats } from './lib.ts';

interface H extends BalancedHost { name: string; outlier: { ejected: boolean }; pool: { activeRequests: number; backoffUntil: number } }
const host = (name: string, active = 0): H => ({ name, key: name, lb: new HostLb(), outlier: { ejected: false }, pool: { activeRequests: active, backoffUntil: 0 } });
const names = (hs: Array<H | undefined>) => hs.map((h) => h?.name ?? '-');

describe('Balancer', () => {
  it('LEAST_REQUEST: power of two choices, fewer active requests wins', () => {
    const b = new Balancer();
    const hs = [host('a', 5), host('b', 1), host('c', 3)];
    const picks: string[] = [];
    for (let i = 0; i < 300; i++) picks.push(b.pick(hs, 'LEAST_REQUEST', false, null)!.name);
    // The busiest host never beats another; the idlest wins every pair it is in (2/3 of them).
    expect(picks.filter((n) => n === 'a')).toHaveLength(0);
    expect(picks.filter((n) => n === 'b').length).toBeGreaterThan(150);
  });

  it('a host in connect backoff is passed over while others remain, whatever its active count', () => {
    const b = new Balancer();
    for (const lb of ['LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM'] as const) {
      const hs = [host('dead', 0), host('b', 7), host('c', 9)];
      hs[0].pool.backoffUntil = performance.now() + 60_000;
      const picks = new Set<string>();
      for (let i = 0; i < 200; i++) picks.add(b.pick(hs, lb, false, null)!.name);
      // (LEAST_REQUEST compares the two live ones: b, less busy, always wins.)
      expect([lb, [...picks].sort()]).toEqual([lb, lb === 'LEAST_REQUEST' ? ['b'] : ['b', 'c']]);
      // Backoff over: it is a candidate again (and, idle, LEAST_REQUEST's favourite).
      hs[0].pool.backoffUntil = performance.now() - 1;
      const again = new Set<string>();
      for (let i = 0; i < 200; i++) again.add(b.pick(hs, lb, false, null)!.name);
      expect(again.has('dead')).toBe(true);
    }
  });

  it('every host backing off: one is still chosen (the probe), never undefined', () => {
    const b = new Balancer();
    const hs = [host('a'), host('b')];
    for (const h of hs) h.pool.backoffUntil = performance.now() + 60_000;
    expect(b.pick(hs, 'LEAST_REQUEST', false, null)).toBeDefined();
  });

  it('previous hosts are excluded exactly; relaxed only when nothing else is usable', () => {
    const b = new Balancer();
    const hs = [host('a'), host('b'), host('c')];
    for (let i = 0; i < 100; i++) {
      expect(b.pick(hs, 'LEAST_REQUEST', false, [hs[0]])!.name).not.toBe('a');
      expect(b.pick(hs, 'RANDOM', false, [hs[0], hs[1]])!.name).toBe('c');
      expect(b.pick(hs, 'ROUND_ROBIN', false, [hs[2], hs[0]])!.name).toBe('b');
    }
    // All tried: pick among them anyway (a retry still happens, as Envoy's predicate gives up).
    expect(b.pick(hs, 'LEAST_REQUEST', false, hs)).toBeDefined();
    // Avoidance outranks backoff: a backing-off host that was not tried beats a tried one.
    hs[2].pool.backoffUntil = performance.now() + 60_000;
    expect(names([b.pick(hs, 'LEAST_REQUEST', false, [hs[0], hs[1]])])).toEqual(['c']);
  });

  it('ejected hosts are skipped, and used again in panic; none usable = undefined', () => {
    const b = new Balancer();
    const hs = [host('a'), host('b')];
    hs[0].outlier.ejected = true;
    for (let i = 0; i < 50; i++) expect(b.pick(hs, 'ROUND_ROBIN', false, null)!.name).toBe('b');
    hs[1].outlier.ejected = true;
    expect(b.pick(hs, 'ROUND_ROBIN', false, null)).toBeUndefined();
    expect(b.pick(hs, 'ROUND_ROBIN', true, null)).toBeDefined();
    expect(b.pick([], 'LEAST_REQUEST', true, null)).toBeUndefined();
  });

  it('ROUND_ROBIN cycles in order over the candidates', () => {
    const b = new Balancer();
    const hs = [host('a'), host('b'), host('c')];
    expect(names(Array.from({ length: 6 }, () => b.pick(hs, 'ROUND_ROBIN', false, null)))).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });
});

describe('retry limits', () => {
  const fx = new Fixtures();
  afterAll(() => fx.closeAll());

  it('--retry-budget-*: none unless a flag is given; defaults fill the other; negatives are refused', () => {
    expect(retryBudget(undefined, undefined)).toBeNull();
    expect(retryBudget(0.5, undefined)).toEqual({ ratio: 0.5, minPerSecond: 10 });
    expect(retryBudget(undefined, 3)).toEqual({ ratio: 0.2, minPerSecond: 3 });
    expect(() => retryBudget(-1, 0)).toThrow(/must be >= 0/);
  });

  it('no budget by default: 60 requests to a failing service each get every retry (URX, never UO)', async () => {
    const u = await fx.upstream((_q, res) => { res.statusCode = 503; res.end('down'); });
    const p = await fx.proxy(ratings([u.port], { route: '      retries: { attempts: 2, retryOn: 5xx }' }));
    // 120 retries in well under 10 s: the old built-in budget (20 % + 10/s over 10 s) allowed 112.
    const replies = await drive(6, 10, () => send(p.ports.outbound, { host: 'ratings' }));
    expect(new Set(replies.map((r) => r.headers['x-meshlet-flags']))).toEqual(new Set(['URX']));
    expect(u.hits).toBe(180);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(0);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(120);
  });

  it('connect failures to a dead endpoint are retried on the live one (Istio default policy, no budget)', async () => {
    const dead = await deadPort();
    const u = await fx.upstream((_q, res) => res.end('live'));
    const p = await fx.proxy(ratings([dead, u.port]));
    const replies = await Promise.all(Array.from({ length: 40 }, () => send(p.ports.outbound, { host: 'ratings' })));
    expect(replies.map((r) => r.status)).toEqual(Array(40).fill(200));
  });

  it("trafficPolicy.retryBudget compiles to Envoy's retry_budget (Istio defaults 20 % / 3), subsets replace it whole", () => {
    const snap = snapshotFromYaml(ratings([1000], { policy: '    retryBudget: { percent: 50 }' }).replace('  trafficPolicy:', `  subsets:
    - { name: v1, labels: { version: v1 }, trafficPolicy: { retryBudget: { minRetryConcurrency: 7 } } }
    - { name: v2, labels: { version: v2 } }
  trafficPolicy:`));
    const by = new Map(snap.clusters.map((c) => [c.subset, c.connectionPool.retryBudget]));
    expect(by.get('')).toEqual({ percent: 50, minRetryConcurrency: 3 });
    expect(by.get('v1')).toEqual({ percent: 20, minRetryConcurrency: 7 });
    expect(by.get('v2')).toEqual({ percent: 50, minRetryConcurrency: 3 });
    const none = snapshotFromYaml(ratings([1000]));
    expect(none.clusters[0].connectionPool.retryBudget).toBeUndefined();
    expect(() => snapshotFromYaml(ratings([1000], { policy: '    retryBudget: { percent: 150 }' }))).toThrow(/retryBudget\.percent/);
  });

  it('retryBudget replaces maxRetries: concurrent retries are capped at max(min, percent x active), then UO', async () => {
    const slow = await fx.upstream((_q, res) => { setTimeout(() => { res.statusCode = 503; res.end('slow'); }, 150); });
    // maxRetries 1000 would allow all; the budget (0 % of active, at least 1) allows one at a time.
    const p = await fx.proxy(ratings([slow.port], {
      route: '      retries: { attempts: 3, retryOn: 5xx }',
      policy: '    connectionPool: { http: { maxRetries: 1000 } }\n    retryBudget: { percent: 0, minRetryConcurrency: 1 }',
    }));
    const both = await Promise.all([send(p.ports.outbound, { host: 'ratings' }), send(p.ports.outbound, { host: 'ratings' })]);
    expect(both.map((x) => String(x.headers['x-meshlet-flags'])).sort()).toEqual(['UO', 'URX']);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(1);
    expect(s.get(`${C}.upstream_rq_retry`)).toBe(3);
  });
});
