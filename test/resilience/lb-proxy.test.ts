// Balancing end to end through a real proxy on loopback: sticky sessions by header, by a
// generated cookie honoured on the next request, by query parameter and source IP; PASSTHROUGH to
// the authority's IP; PEAK_EWMA keeping traffic off a slow endpoint; and the DestinationRule
// loadBalancer block compiled (consistentHash, maglev, warmupDurationSecs, portLevelSettings,
// endpoint weights) with its errors.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, send, snapshotFromYaml } from '../helpers.ts';
import { HOST } from './lib.ts';
import { Cluster } from '../../proxy/upstream/cluster.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const named = (name: string, delayMs = 0) => fx.upstream((_q, r) => { setTimeout(() => r.end(name), delayMs); });

function mesh(ports: number[], lb: string, extraPorts = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  ports: [{ number: 9080, name: http }${extraPorts}]
  endpoints: [${ports.map((p) => `{ address: 127.0.0.1, ports: { http: ${p} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  trafficPolicy:
    loadBalancer: ${lb}
`;
}

async function threeNamed() {
  return [await named('u0'), await named('u1'), await named('u2')];
}

describe('consistent hashing through the proxy', () => {
  it('httpHeaderName (ring hash): a user always lands on one endpoint; users spread over all of them', async () => {
    const ups = await threeNamed();
    const p = await fx.proxy(mesh(ups.map((u) => u.port), '{ consistentHash: { httpHeaderName: x-user } }'));
    const where = new Map<string, Set<string>>();
    for (let round = 0; round < 4; round++) {
      for (let u = 0; u < 30; u++) {
        const r = await send(p.ports.outbound, { host: 'ratings', headers: { 'x-user': `user-${u}` } });
        expect(r.status).toBe(200);
        (where.get(`user-${u}`) ?? where.set(`user-${u}`, new Set()).get(`user-${u}`)!).add(r.body);
      }
    }
    for (const s of where.values()) expect(s.size).toBe(1);
    const used = new Set([...where.values()].map((s) => [...s][0]));
    expect(used.size).toBe(3);
  });

  it('httpCookie with ttl (maglev): the first response sets the cookie, the next requests with it stick', async () => {
    const ups = await threeNamed();
    const p = await fx.proxy(mesh(ups.map((u) => u.port), '{ consistentHash: { httpCookie: { name: sticky, path: /, ttl: 3600s }, maglev: { tableSize: 251 } } }'));
    const owners = new Set<string>();
    for (let client = 0; client < 12; client++) {
      const first = await send(p.ports.outbound, { host: 'ratings' });
      const set = first.headers['set-cookie'];
      expect(set).toHaveLength(1);
      expect(set![0]).toMatch(/^sticky="[0-9a-f]{16}"; Max-Age=3600; Path=\/; HttpOnly$/);
      const cookie = set![0].split(';')[0];
      for (let i = 0; i < 5; i++) {
        const r = await send(p.ports.outbound, { host: 'ratings', headers: { cookie: `other=1; ${cookie}` } });
        expect(r.body).toBe(first.body); // the generated cookie chose the first endpoint too
        expect(r.headers['set-cookie']).toBeUndefined();
      }
      owners.add(first.body);
    }
    expect(owners.size).toBeGreaterThan(1); // random cookies spread
  });

  it('httpQueryParameterName and useSourceIp', async () => {
    const ups = await threeNamed();
    const q = await fx.proxy(mesh(ups.map((u) => u.port), '{ consistentHash: { httpQueryParameterName: tenant } }'));
    for (const t of ['a', 'b', 'c', 'd']) {
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) seen.add((await send(q.ports.outbound, { host: 'ratings', path: `/x?z=${i}&tenant=${t}` })).body);
      expect(seen.size).toBe(1);
    }
    const ip = await fx.proxy(mesh(ups.map((u) => u.port), '{ consistentHash: { useSourceIp: true } }'));
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add((await send(ip.ports.outbound, { host: 'ratings' })).body);
    expect(seen.size).toBe(1); // every request from 127.0.0.1
  });
});

describe('PASSTHROUGH', () => {
  it("to the request's authority when it is an IP literal (port included); otherwise 503 UH", async () => {
    const a = await named('a'), b = await named('b');
    const p = await fx.proxy(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: direct }
spec:
  hosts: [127.0.0.1, direct.example]
  ports: [{ number: 9080, name: http }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: direct }
spec:
  host: 127.0.0.1
  trafficPolicy: { loadBalancer: { simple: PASSTHROUGH } }
`);
    expect((await send(p.ports.outbound, { host: `127.0.0.1:${a.port}` })).body).toBe('a');
    expect((await send(p.ports.outbound, { host: `127.0.0.1:${b.port}` })).body).toBe('b');
    expect((await send(p.ports.outbound, { host: `127.0.0.1:${a.port}` })).body).toBe('a');
    const r = await send(p.ports.outbound, { host: 'direct.example' });
    expect(r.status).toBe(503);
  });
});

describe('PEAK_EWMA through the proxy', () => {
  it('a slow endpoint (+300 ms) gets almost nothing once its RTT is known', async () => {
    const fast1 = await named('f1'), fast2 = await named('f2'), slow = await named('slow', 300);
    const p = await fx.proxy(mesh([fast1.port, fast2.port, slow.port], '{ simple: PEAK_EWMA }'));
    const bodies: string[] = [];
    for (let i = 0; i < 60; i++) bodies.push((await send(p.ports.outbound, { host: 'ratings' })).body);
    // Before its first sample it costs the default 30 ms and may win a pair or two; after, 300 ms.
    expect(bodies.filter((b) => b === 'slow').length).toBeLessThanOrEqual(3);
    expect(bodies.filter((b) => b === 'f1').length).toBeGreaterThan(10);
    expect(bodies.filter((b) => b === 'f2').length).toBeGreaterThan(10);
  });
});

describe('loadBalancer compiled', () => {
  const se = (extra = '') => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  ports: [{ number: 9080, name: http }, { number: 9081, name: admin }]
  endpoints: [{ address: 127.0.0.1, weight: 3, labels: { version: v1 } }, { address: 127.0.0.2${extra} }]
---
`;
  const dr = (tp: string, subsets = '') => `${se()}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  trafficPolicy: ${tp}
${subsets}`;
  const cluster = (yaml: string, name: string) => snapshotFromYaml(yaml).clusters.find((c) => c.name === name)!;
  const c80 = `outbound|9080||${HOST}`, c81 = `outbound|9081||${HOST}`;

  it('consistentHash -> RING_HASH (1024) or MAGLEV; warmupDurationSecs; endpoint weights', () => {
    let c = cluster(dr('{ loadBalancer: { consistentHash: { httpHeaderName: X-User }, warmupDurationSecs: 30s } }'), c80);
    expect([c.lb, c.hash, c.warmupMs]).toEqual(['RING_HASH', { header: 'x-user', minimumRingSize: 1024 }, 30_000]);
    expect(c.endpoints.map((e) => e.weight)).toEqual([3, undefined]);
    c = cluster(dr('{ loadBalancer: { consistentHash: { useSourceIp: true, maglev: {} } } }'), c80);
    expect([c.lb, c.hash]).toEqual(['MAGLEV', { sourceIp: true, tableSize: 65537 }]);
    c = cluster(dr('{ loadBalancer: { consistentHash: { httpCookie: { name: s, ttl: 0s } } } }'), c80);
    expect(c.hash).toEqual({ cookie: { name: 's', ttlMs: 0 }, minimumRingSize: 1024 });
    expect(cluster(dr('{ loadBalancer: { simple: PEAK_EWMA } }'), c80).lb).toBe('PEAK_EWMA');
    expect(cluster(dr('{ loadBalancer: { simple: LEAST_CONN } }'), c80).lb).toBe('LEAST_REQUEST');
  });

  it('portLevelSettings replace the blocks for their port only; a subset inherits them', () => {
    const y = dr(`{ loadBalancer: { simple: RANDOM }, portLevelSettings: [{ port: { number: 9081 }, loadBalancer: { simple: ROUND_ROBIN }, outlierDetection: { interval: 1s } }] }`,
      '  subsets: [{ name: v1, labels: { version: v1 } }]');
    expect(cluster(y, c80).lb).toBe('RANDOM');
    expect(cluster(y, c80).outlier).toBeUndefined();
    expect(cluster(y, c81).lb).toBe('ROUND_ROBIN');
    expect(cluster(y, c81).outlier?.intervalMs).toBe(1000);
    expect(cluster(y, `outbound|9081|v1|${HOST}`).lb).toBe('ROUND_ROBIN');
  });

  it('errors: simple with consistentHash, no key or two keys, a non-prime maglev table, an unknown field', () => {
    expect(() => snapshotFromYaml(dr('{ loadBalancer: { simple: RANDOM, consistentHash: { useSourceIp: true } } }'))).toThrow(/simple or consistentHash, not both/);
    expect(() => snapshotFromYaml(dr('{ loadBalancer: { consistentHash: { useSourceIp: true, httpHeaderName: a } } }'))).toThrow(/exactly one of .*found 2/);
    expect(() => snapshotFromYaml(dr('{ loadBalancer: { consistentHash: { ringHash: {} } } }'))).toThrow(/exactly one of .*found 0/);
    expect(() => snapshotFromYaml(dr('{ loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 65536 } } } }'))).toThrow(/65536 is not a prime/);
    expect(() => snapshotFromYaml(dr('{ loadBalancer: { consistentHash: { httpHeader: a } } }'))).toThrow(/httpHeader/);
  });

  it('slow start applies to endpoints that join a running cluster, not to the first set', () => {
    const spec = cluster(dr('{ loadBalancer: { simple: ROUND_ROBIN, warmupDurationSecs: 60s } }'), c80);
    const c = new Cluster(spec);
    try {
      expect(c.endpoints.map((e) => e.lb.addedAt)).toEqual([0, 0]);
      const next = { ...spec, endpoints: [...spec.endpoints, { address: '127.0.0.3', port: 9080, labels: {} }] };
      c.setEndpoints(next, JSON.stringify(next));
      expect(c.endpoints[0].lb.addedAt).toBe(0);
      expect(c.endpoints[2].lb.addedAt).toBeGreaterThan(0);
      // While it warms, the new endpoint gets about 10 % of a full share (weights 3, 1, 1 x 0.1).
      let n = 0;
      for (let i = 0; i < 410; i++) if (c.pick(null) === c.endpoints[2]) n++;
      expect(n).toBeLessThanOrEqual(12);
      expect(n).toBeGreaterThan(0);
    } finally { c.drain(); }
  });
});
