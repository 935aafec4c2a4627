// Each balancing algorithm pinned statistically with a seeded RNG (proxy/upstream/balancer.ts,
// lb/hash.ts, lb/key.ts): no timing, no sockets. The counts are deterministic for a seed, and the
// bounds are the algorithm's, wide enough that any decent seed passes and a wrong algorithm fails.
import { describe, expect, it } from 'vitest';
import { Balancer, HostLb, observeRtt, PEAK_EWMA_DEFAULT_RTT_MS, type BalancedHost, type LbPolicy } from '../../proxy/upstream/balancer.ts';
import { Maglev, Ring, hash32, isPrime, type HashTable } from '../../proxy/upstream/lb/hash.ts';
import { cookieHash, queryHash, requestHash } from '../../proxy/upstream/lb/key.ts';
import { seeded } from './lb-lib.ts';


interface H extends BalancedHost { name: string; outlier: { ejected: boolean }; pool: { activeRequests: number; backoffUntil: number } }
const host = (name: string, opts: { active?: number; weight?: number; addedAt?: number } = {}): H => ({
  name, key: `10.0.0.${name.charCodeAt(0)}:80`, lb: new HostLb(opts.weight ?? 1, opts.addedAt ?? 0),
  outlier: { ejected: false }, pool: { activeRequests: opts.active ?? 0, backoffUntil: 0 },
});

function shares(b: Balancer, hs: H[], policy: LbPolicy, n: number, hash?: () => number): Map<string, number> {
  const out = new Map<string, number>();
  for (const h of hs) out.set(h.name, 0);
  for (let i = 0; i < n; i++) {
    const h = b.pick(hs, policy, false, null, false, hash ? hash() : -1)!;
    out.set(h.name, out.get(h.name)! + 1);
  }
  return out;
}

describe('ROUND_ROBIN', () => {
  it('equal weights: strict rotation in host order', () => {
    const b = new Balancer();
    const hs = [host('a'), host('b'), host('c')];
    const seq = Array.from({ length: 7 }, () => b.pick(hs, 'ROUND_ROBIN', false, null)!.name).join('');
    expect(seq).toBe('abcabca');
  });

  it('weights 3:1:1: smooth weighted RR, every window of 5 has 3 a, 1 b, 1 c, never a b-b or c-c run', () => {
    const b = new Balancer();
    const hs = [host('a', { weight: 3 }), host('b'), host('c')];
    const seq = Array.from({ length: 500 }, () => b.pick(hs, 'ROUND_ROBIN', false, null)!.name).join('');
    for (let i = 0; i < 500; i += 5) {
      const w = seq.slice(i, i + 5);
      expect([...w].filter((x) => x === 'a')).toHaveLength(3);
      expect([...w].filter((x) => x === 'b')).toHaveLength(1);
    }
    // Smooth: the heavy host is interleaved, not sent in a burst of 3.
    expect(seq).not.toContain('aaa');
  });
});

describe('RANDOM', () => {
  it('is uniform: chi-square over 5 hosts, 50 000 picks, below the 0.1 % critical value (18.47, 4 df)', () => {
    const b = new Balancer();
    b.random = seeded(7);
    const hs = ['a', 'b', 'c', 'd', 'e'].map((n) => host(n));
    const s = shares(b, hs, 'RANDOM', 50_000);
    let chi = 0;
    for (const v of s.values()) chi += (v - 10_000) ** 2 / 10_000;
    expect(chi).toBeLessThan(18.47);
    // And not degenerate (a constant or a rotation would pass no chi-square this low by chance only if exact).
    expect(Math.min(...s.values())).toBeGreaterThan(9_500);
  });
});

describe('LEAST_REQUEST', () => {
  it('equal weights: P2C over two distinct hosts, the less loaded wins', () => {
    const b = new Balancer();
    b.random = seeded(11);
    const hs = [host('a', { active: 5 }), host('b', { active: 1 }), host('c', { active: 3 })];
    const s = shares(b, hs, 'LEAST_REQUEST', 30_000);
    // Pairs {a,b} {a,c} {b,c} are equally likely: b wins two of them, c one, a none.
    expect(s.get('a')).toBe(0);
    expect(s.get('b')! / 30_000).toBeCloseTo(2 / 3, 1);
    expect(s.get('c')! / 30_000).toBeCloseTo(1 / 3, 1);
  });

  it('two hosts, one busier: the idle one always wins (the two choices are distinct)', () => {
    const b = new Balancer();
    b.random = seeded(3);
    const hs = [host('a', { active: 2 }), host('b', { active: 0 })];
    expect(shares(b, hs, 'LEAST_REQUEST', 1000).get('b')).toBe(1000);
  });

  it('unequal weights: shares follow weight / (active + 1) (Envoy active_request_bias 1.0)', () => {
    const b = new Balancer();
    // Idle: 2:1 by weight.
    let hs = [host('a', { weight: 2 }), host('b', { weight: 1 })];
    let s = shares(b, hs, 'LEAST_REQUEST', 3000);
    expect(s.get('a')).toBe(2000);
    // a has 3 active: 2/4 = 0.5 against b's 1/1 -> b gets two thirds.
    hs = [host('a', { weight: 2, active: 3 }), host('b', { weight: 1 })];
    s = shares(b, hs, 'LEAST_REQUEST', 3000);
    expect(s.get('b')).toBe(2000);
  });
});

describe('PEAK_EWMA', () => {
  it('a slow host (peak RTT 200 ms) loses every pair against fast ones; pending requests raise the cost', () => {
    const b = new Balancer();
    b.random = seeded(5);
    const now = 1_000_000;
    b.now = () => now;
    const hs = ['a', 'b', 'c', 'd', 'e'].map((n) => host(n));
    for (const h of hs) observeRtt(h.lb, 1, now);
    observeRtt(hs[4].lb, 200, now); // peak: taken at once
    const s = shares(b, hs, 'PEAK_EWMA', 10_000);
    expect(s.get('e')).toBe(0);
    // Same RTT, one with 3 pending: cost 4 — it wins only the pairs against e (1 in 10).
    hs[0].pool.activeRequests = 3;
    const s2 = shares(b, hs, 'PEAK_EWMA', 10_000);
    expect(s2.get('a')! / 10_000).toBeCloseTo(0.1, 1);
    expect(s2.get('e')).toBe(0);
    // Idle long enough, the slow host's estimate decays (towards 0, Linkerd's) and it is tried again.
    hs[0].pool.activeRequests = 0;
    for (const h of hs.slice(0, 4)) observeRtt(h.lb, 1, now);
    b.now = () => now + 60_000; // 6 decay constants: 200 ms -> 0.5 ms, below the others' decayed 1 ms
    for (const h of hs.slice(0, 4)) observeRtt(h.lb, 1, now + 60_000);
    expect(shares(b, hs, 'PEAK_EWMA', 1000).get('e')).toBeGreaterThan(0);
  });

  it('the estimate: 30 ms before any sample, peaks at once, faster samples pull it down with weight 1 − e^(−Δt/10 s)', () => {
    const lb = new HostLb(1, 0, 0);
    expect(lb.rtt).toBe(PEAK_EWMA_DEFAULT_RTT_MS);
    observeRtt(lb, 100, 0);
    expect(lb.rtt).toBe(100);
    observeRtt(lb, 10, 10_000); // one decay constant later: 100·e^-1 decayed, then mixed with 10 at weight 1 − e^-1
    const d = 100 * Math.exp(-1);
    expect(lb.rtt).toBeCloseTo(d * Math.exp(-1) + 10 * (1 - Math.exp(-1)), 6);
  });
});

describe('slow start (warmupDurationSecs)', () => {
  it('a new endpoint ramps from 10 % of its weight to full over the window', () => {
    const window = 60_000;
    const now = 1_000_000;
    const share = (addedAgoMs: number) => {
      const b = new Balancer({ warmupMs: window });
      b.now = () => now;
      const hs = [host('a'), host('b'), host('n', { addedAt: now - addedAgoMs })];
      return shares(b, hs, 'ROUND_ROBIN', 2100).get('n')! / 2100;
    };
    // Just added: 0.1 / 2.1; halfway: 0.5 / 2.5; after the window: 1 / 3.
    expect(share(0)).toBeCloseTo(0.1 / 2.1, 2);
    expect(share(window / 2)).toBeCloseTo(0.5 / 2.5, 1);
    expect(share(window * 2)).toBeCloseTo(1 / 3, 2);
    // LEAST_REQUEST ramps the same way (its weighted path).
    const b = new Balancer({ warmupMs: window });
    b.now = () => now;
    const hs = [host('a'), host('b'), host('n', { addedAt: now })];
    expect(shares(b, hs, 'LEAST_REQUEST', 2100).get('n')! / 2100).toBeLessThan(0.1);
  });
});

describe('consistent hashing', () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => hash32(`user-${i}`));
  const hostKeys = (n: number) => Array.from({ length: n }, (_, i) => `10.1.0.${i + 1}:8080`);
  const owners = (t: HashTable, ks: string[]) => keys.map((k) => ks[t.lookup(k, 0)]);
  const moved = (a: string[], b: string[]) => a.filter((x, i) => x !== b[i]).length / a.length;

  for (const [name, make] of [
    ['RING_HASH (1024)', (ks: string[]) => new Ring(ks, ks.map(() => 1), 1024)],
    ['MAGLEV (65537)', (ks: string[]) => new Maglev(ks, ks.map(() => 1), 65537)],
  ] as const) {
    it(`${name}: adding or removing one of N endpoints moves at most 1.5/N of keys; shares stay balanced`, () => {
      for (const n of [5, 10]) {
        const base = hostKeys(n);
        const before = owners(make(base), base);
        const added = [...base, '10.1.0.99:8080'];
        const afterAdd = owners(make(added), added);
        expect(moved(before, afterAdd)).toBeLessThanOrEqual(1.5 / (n + 1));
        // The ring keeps every old point: the keys that moved went to the new host only.
        if (name.startsWith('RING')) expect(before.every((o, i) => afterAdd[i] === o || afterAdd[i] === '10.1.0.99:8080')).toBe(true);
        const removed = base.filter((_, i) => i !== 3);
        const afterRemove = owners(make(removed), removed);
        expect(moved(before, afterRemove)).toBeLessThanOrEqual(1.5 / n);
        for (const k of base) {
          const share = before.filter((o) => o === k).length / keys.length;
          expect(share).toBeGreaterThan(0.5 / n);
          expect(share).toBeLessThan(1.5 / n);
        }
      }
    });
  }

  it('RING_HASH honours weights: a weight-3 host owns about 3/5 of keys against two weight-1 hosts', () => {
    const ks = hostKeys(3);
    const t = new Ring(ks, [3, 1, 1], 1024);
    const share = owners(t, ks).filter((o) => o === ks[0]).length / keys.length;
    expect(share).toBeGreaterThan(0.5);
    expect(share).toBeLessThan(0.7);
  });

  it('the balancer: the same key always lands on one host; an excluded host only moves its own keys', () => {
    for (const policy of ['RING_HASH', 'MAGLEV'] as const) {
      const b = new Balancer({ tableSize: 65537 });
      const hs = ['a', 'b', 'c', 'd', 'e'].map((n) => host(n));
      const first = keys.slice(0, 2000).map((k) => b.pick(hs, policy, false, null, false, k)!.name);
      const again = keys.slice(0, 2000).map((k) => b.pick(hs, policy, false, null, false, k)!.name);
      expect(again).toEqual(first);
      hs[1].outlier.ejected = true;
      const without = keys.slice(0, 2000).map((k) => b.pick(hs, policy, false, null, true, k)!.name);
      for (let i = 0; i < first.length; i++) {
        if (first[i] === 'b') expect(without[i]).not.toBe('b');
        else expect(without[i]).toBe(first[i]);
      }
      // A retry avoiding the key's host goes elsewhere, deterministically.
      const k = keys[0];
      const owner = hs.find((h) => h.name === first[0])!;
      const retry = b.pick(hs, policy, false, [owner], true, k)!;
      expect(retry).not.toBe(owner);
      expect(b.pick(hs, policy, false, [owner], true, k)).toBe(retry);
    }
  });

  it('no key (-1): a random host, not always the same one', () => {
    const b = new Balancer();
    b.random = seeded(9);
    const hs = ['a', 'b', 'c'].map((n) => host(n));
    const s = shares(b, hs, 'RING_HASH', 3000, () => -1);
    for (const v of s.values()) expect(v).toBeGreaterThan(800);
  });

  it('Maglev sizes must be prime', () => {
    expect(isPrime(65537)).toBe(true);
    expect(isPrime(65536)).toBe(false);
    expect(isPrime(251)).toBe(true);
  });
});

describe('request keys (lb/key.ts)', () => {
  const req = (headers: string[], path = '/', remoteAddress = '10.9.8.7') => ({ headers, path, req: { remoteAddress } });
  it('header, cookie (quoted or not, among others), query parameter, source IP; absent = -1', () => {
    const out = { setCookie: null as string | null };
    expect(requestHash({ header: 'x-user' }, req(['X-User', 'alice']), out)).toBe(hash32('alice'));
    expect(requestHash({ header: 'x-user' }, req(['x-other', 'alice']), out)).toBe(-1);
    expect(cookieHash(['Cookie', 'a=1; sid=abc; z=2'], 'sid')).toBe(hash32('abc'));
    expect(cookieHash(['cookie', 'sid="abc"'], 'sid')).toBe(hash32('abc'));
    expect(cookieHash(['cookie', 'xsid=abc; sidx=1'], 'sid')).toBe(-1);
    expect(queryHash('/p?a=1&user=bob&c', 'user')).toBe(hash32('bob'));
    expect(queryHash('/p?username=bob', 'user')).toBe(-1);
    expect(queryHash('/p', 'user')).toBe(-1);
    expect(requestHash({ sourceIp: true }, req([]), out)).toBe(hash32('10.9.8.7'));
    expect(out.setCookie).toBeNull();
  });

  it('a cookie with a ttl is generated when absent (Set-Cookie with Max-Age, Path, HttpOnly) and its value is the key', () => {
    const out = { setCookie: null as string | null };
    const h = requestHash({ cookie: { name: 'sticky', path: '/app', ttlMs: 3_600_000 } }, req([]), out);
    expect(out.setCookie).toMatch(/^sticky="[0-9a-f]{16}"; Max-Age=3600; Path=\/app; HttpOnly$/);
    const value = /"([0-9a-f]+)"/.exec(out.setCookie!)![1];
    expect(h).toBe(hash32(value));
    // The next request carries it: the same key, nothing generated.
    const out2 = { setCookie: null as string | null };
    expect(requestHash({ cookie: { name: 'sticky', ttlMs: 3_600_000 } }, req(['cookie', `sticky="${value}"`]), out2)).toBe(h);
    expect(out2.setCookie).toBeNull();
    // ttl 0: a session cookie (no Max-Age); no ttl: nothing generated.
    const out3 = { setCookie: null as string | null };
    requestHash({ cookie: { name: 's', ttlMs: 0 } }, req([]), out3);
    expect(out3.setCookie).toMatch(/^s="[0-9a-f]{16}"; HttpOnly$/);
    const out4 = { setCookie: null as string | null };
    expect(requestHash({ cookie: { name: 's' } }, req([]), out4)).toBe(-1);
    expect(out4.setCookie).toBeNull();
  });
});

describe('Maglev with a non-prime size from a snapshot', () => {
  it('uses the next prime instead of hanging', () => {
    const t = new Maglev(['a:1', 'b:1', 'c:1'], [1, 1, 1], 1000);
    expect(t.size).toBe(1009);
  });
});
