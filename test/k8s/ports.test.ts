// A captured connection is routed by its Host header; for a service with several ports the port
// in Host selects the service port (Istio's "<host>:<port>" vhost domains); without one, the
// first port. In the proxy's namespace, short names with a port resolve too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyFor, send, startUpstream, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

let web: Upstream;
let grpcish: Upstream;
let p: RunningProxy;

beforeAll(async () => {
  web = await startUpstream((_q, s) => { s.end('web'); });
  grpcish = await startUpstream((_q, s) => { s.end('admin-port'); });
  p = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  ports: [{number: 9080, name: http}, {number: 9090, name: http-admin}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${web.port}, http-admin: ${grpcish.port}}}]
`, { namespace: 'shop' });
});
afterAll(async () => { await p?.drain(0); await web?.close(); await grpcish?.close(); });

describe('the port in Host selects the service port', () => {
  it('ratings:9090 reaches the second port, ratings:9080 and ratings the first', async () => {
    expect((await send(p.ports.outbound, { host: 'ratings:9090' })).body).toBe('admin-port');
    expect((await send(p.ports.outbound, { host: 'ratings.shop:9090' })).body).toBe('admin-port');
    expect((await send(p.ports.outbound, { host: 'ratings.shop.svc.cluster.local:9090' })).body).toBe('admin-port');
    expect((await send(p.ports.outbound, { host: 'ratings:9080' })).body).toBe('web');
    expect((await send(p.ports.outbound, { host: 'ratings' })).body).toBe('web');
    // A port the service does not have falls back to the name alone (the first port).
    expect((await send(p.ports.outbound, { host: 'ratings:1234' })).body).toBe('web');
  });
});
