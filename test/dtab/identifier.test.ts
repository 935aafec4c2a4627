// Listener identifiers other than the Host token (Linkerd's io.l5d.path, io.l5d.methodAndHost).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, proxyFor, send, startUpstream, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

let world: Upstream;
let byPath: RunningProxy, byMethod: RunningProxy;
const mesh = (port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: world }
spec:
  hosts: [world.default.svc.cluster.local]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} } }]
`;
beforeAll(async () => {
  world = await startUpstream(echo('world'));
  byPath = await proxyFor(mesh(world.port), { identifier: { kind: 'io.l5d.path', segments: 1, consume: true } });
  byMethod = await proxyFor(`${mesh(world.port)}---
apiVersion: meshlet.io/v1alpha1
kind: Dtab
metadata: { name: base }
spec: { dtab: "/srv => /#/meshlet; /svc/1.1/GET => /srv; /svc/1.1/POST => !" }
`, { identifier: { kind: 'io.l5d.methodAndHost' } });
});
afterAll(async () => { await byPath.drain(100); await byMethod.drain(100); await world.close(); });

describe('identifiers', () => {
  it('io.l5d.path with consume: /world/a/b?x=1 goes to service world as /a/b?x=1', async () => {
    const r = await send(byPath.ports.outbound, { host: 'anything', path: '/world/a/b?x=1' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).url).toBe('/a/b?x=1');
  });
  it('io.l5d.path: too few segments is a 400 naming the reason', async () => {
    const r = await send(byPath.ports.outbound, { host: 'anything', path: '/' });
    expect(r.status).toBe(400);
    expect(r.body).toContain('not enough segments in path');
  });
  it('io.l5d.methodAndHost with a dtab that routes GET and fails POST', async () => {
    expect((await send(byMethod.ports.outbound, { host: 'World', path: '/x' })).status).toBe(200);
    expect((await send(byMethod.ports.outbound, { host: 'world', path: '/x', method: 'POST', body: 'x' })).status).toBe(502);
  });
});
