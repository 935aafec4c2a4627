// Applying snapshots: unchanged clusters are kept whole; an endpoint-only change keeps the
// cluster (breakers, stats) and the state of endpoints that stay; a bad snapshot changes nothing.
import { afterAll, describe, expect, it } from 'vitest';
import { echo, proxyFor, send, snapshotFromYaml, startUpstream, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const ups: Upstream[] = [];
let p: RunningProxy | null = null;
afterAll(async () => { await p?.drain(100); for (const u of ups) await u.close(); });

function yaml(ports: number[], extra = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: a }
spec:
  hosts: [a]
  ports: [{ number: 80, name: http }]
  endpoints: [${ports.map((x) => `{ address: 127.0.0.1, ports: { http: ${x} } }`).join(', ')}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: b }
spec:
  hosts: [b]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${ports[0]} } }]
${extra}`;
}

describe('snapshot application', () => {
  it('keeps clusters and endpoint state across unrelated and endpoint-only changes', async () => {
    const u1 = await startUpstream(echo('1'));
    const u2 = await startUpstream(echo('2'));
    ups.push(u1, u2);
    p = await proxyFor(yaml([u1.port]));
    await send(p.ports.outbound, { host: 'a' });
    const a1 = p.runtime()!.clusters.get('outbound|80||a')!;
    const b1 = p.runtime()!.clusters.get('outbound|80||b')!;
    const ep1 = a1.endpoints[0];
    expect(a1.stats.upstream_rq_total).toBe(1);

    // Endpoint added to a: same cluster object, same endpoint object for u1, stats kept; b untouched.
    p.apply(snapshotFromYaml(yaml([u1.port, u2.port]), '2'));
    const a2 = p.runtime()!.clusters.get('outbound|80||a')!;
    expect(a2).toBe(a1);
    expect(a2.endpoints.length).toBe(2);
    expect(a2.endpoints[0]).toBe(ep1);
    expect(a2.stats.upstream_rq_total).toBe(1);
    expect(p.runtime()!.clusters.get('outbound|80||b')).toBe(b1);
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(String((await send(p.ports.outbound, { host: 'a' })).headers['x-upstream']));
    expect(seen).toEqual(new Set(['1', '2']));

    // A policy change makes a new cluster.
    p.apply(snapshotFromYaml(yaml([u1.port, u2.port], `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a }
spec: { host: a, trafficPolicy: { connectionPool: { tcp: { maxConnections: 5 } } } }
`), '3'));
    expect(p.runtime()!.clusters.get('outbound|80||a')).not.toBe(a1);
    expect(p.runtime()!.clusters.get('outbound|80||b')).toBe(b1);
  });

  it('a snapshot that fails to build is rejected whole and the old one stays', async () => {
    const before = p!.runtime()!;
    const bad = snapshotFromYaml(yaml([ups[0].port]), '9');
    bad.virtualHosts[0].routes[0].destinations[0].cluster = 'outbound|80||missing';
    expect(() => p!.apply(bad)).toThrow(/missing/);
    expect(p!.runtime()).toBe(before);
    expect((await send(p!.ports.outbound, { host: 'a' })).status).toBe(200);
  });
});
