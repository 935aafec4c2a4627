// Locality-aware balancing (proxy/upstream/locality.ts, Cluster.pickByLocality): endpoints ranked
// by their topology.kubernetes.io labels against the proxy's --zone/--region, Envoy's priority
// spill-over with the 1.4 overprovisioning factor, Istio's failover regions, and the conditions
// (outlier detection present, localityLbSetting not disabled, the proxy's locality known).
// Real Cluster objects (no sockets: picks only), seeded RNG.
import { describe, expect, it } from 'vitest';
import { Cluster } from '../../proxy/upstream/cluster.ts';
import { rankLoads } from '../../proxy/upstream/locality.ts';
import { snapshotFromYaml } from '../helpers.ts';
import { HOST } from './lib.ts';
import { seeded } from './lb-lib.ts';

const endpoints = [
  ['10.0.0.1', 'r1', 'a'], ['10.0.0.2', 'r1', 'a'],
  ['10.0.0.3', 'r1', 'b'], ['10.0.0.4', 'r1', 'b'],
  ['10.0.0.5', 'r2', 'c'], ['10.0.0.6', 'r3', 'd'],
];

function spec(lb = '{ simple: ROUND_ROBIN }', outlier = true) {
  const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings }
spec:
  hosts: [${HOST}]
  ports: [{ number: 9080, name: http }]
  endpoints:
${endpoints.map(([ip, r, z]) => `    - { address: ${ip}, labels: { topology.kubernetes.io/region: ${r}, topology.kubernetes.io/zone: ${z} } }`).join('\n')}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec:
  host: ${HOST}
  trafficPolicy:
    loadBalancer: ${lb}
${outlier ? '    outlierDetection: { consecutive5xxErrors: 5, maxEjectionPercent: 100 }' : ''}
`;
  return snapshotFromYaml(yaml).clusters[0];
}

/** Share of `n` picks per zone letter. */
function zones(c: Cluster, n = 10_000): Record<string, number> {
  const count: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const z = c.pick(null)!.spec.labels['topology.kubernetes.io/zone'];
    count[z] = (count[z] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(count).map(([z, k]) => [z, k / n]));
}

function cluster(s: ReturnType<typeof spec>, locality?: { zone: string; region: string }): Cluster {
  const c = new Cluster(s, undefined, { locality });
  c.random = seeded(42);
  return c;
}

describe('locality-aware balancing', () => {
  it('Envoy priority load: min(100, 1.4 × healthy %) per rank, the rest spilling to the next', () => {
    const out = new Float64Array(3);
    rankLoads([2, 2, 2], [2, 2, 2], out);
    expect([...out]).toEqual([100, 0, 0]);
    rankLoads([1, 2, 2], [2, 2, 2], out);
    expect([...out].map((x) => Math.round(x))).toEqual([70, 30, 0]);
    rankLoads([0, 1, 2], [2, 2, 2], out);
    expect([...out].map((x) => Math.round(x))).toEqual([0, 70, 30]);
    // Everything degraded (sum below 100): normalised, Envoy's normalized_total_health.
    rankLoads([1, 0, 0], [4, 2, 2], out);
    expect([...out].map((x) => Math.round(x))).toEqual([100, 0, 0]);
  });

  it('prefers the local zone, spills over as it loses healthy endpoints, then the region, then the rest', () => {
    const c = cluster(spec(), { zone: 'a', region: 'r1' });
    try {
      expect(zones(c)).toEqual({ a: 1 });
      c.endpoints[0].outlier.ejected = true; // zone a at 50 %: 70 % stays, 30 % to zone b
      const z = zones(c);
      expect(z.a).toBeCloseTo(0.7, 1);
      expect(z.b).toBeCloseTo(0.3, 1);
      expect(z.c ?? 0).toBe(0);
      c.endpoints[1].outlier.ejected = true; // zone a gone: the same region takes everything
      expect(zones(c)).toEqual({ b: 1 });
      c.endpoints[2].outlier.ejected = true;
      c.endpoints[3].outlier.ejected = true; // the region gone: the others (r2, r3), round robin
      const rest = zones(c);
      expect(rest.c).toBeCloseTo(0.5, 1);
      expect(rest.d).toBeCloseTo(0.5, 1);
    } finally { c.drain(); }
  });

  it('failover: from our region to a named one before any other', () => {
    const c = cluster(spec('{ simple: ROUND_ROBIN, localityLbSetting: { failover: [{ from: r1, to: r3 }] } }'), { zone: 'a', region: 'r1' });
    try {
      for (let i = 0; i < 4; i++) c.endpoints[i].outlier.ejected = true;
      expect(zones(c)).toEqual({ d: 1 }); // r3 (zone d) before r2
    } finally { c.drain(); }
  });

  it('off without the proxy locality, without outlier detection, or with enabled: false', () => {
    for (const c of [
      cluster(spec()),
      cluster(spec('{ simple: ROUND_ROBIN }', false), { zone: 'a', region: 'r1' }),
      cluster(spec('{ simple: ROUND_ROBIN, localityLbSetting: { enabled: false } }'), { zone: 'a', region: 'r1' }),
    ]) {
      try {
        const z = zones(c, 6000);
        expect(z.a).toBeCloseTo(2 / 6, 2);
        expect(z.c).toBeCloseTo(1 / 6, 2);
      } finally { c.drain(); }
    }
  });

  it('works with consistent hashing within the chosen rank', () => {
    const c = cluster(spec('{ consistentHash: { httpHeaderName: x-user } }'), { zone: 'b', region: 'r1' });
    try {
      const req = (u: string) => ({ s: { headers: ['x-user', u], path: '/', req: { remoteAddress: '127.0.0.1', host: HOST } }, setCookie: null });
      for (let u = 0; u < 50; u++) {
        const first = c.pick(null, req(`u${u}`))!;
        expect(first.spec.labels['topology.kubernetes.io/zone']).toBe('b');
        expect(c.pick(null, req(`u${u}`))).toBe(first);
      }
    } finally { c.drain(); }
  });
});
