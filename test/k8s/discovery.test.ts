// Discovery from the (fake) Kubernetes API server through the real @kubernetes/client-node
// informers into a control server and a proxy: EndpointSlice add / terminating / remove move
// traffic within a second with no failed request, a Pod label change moves an endpoint between
// subsets, two namespaces each route their own `reviews`, a 410 relist loses nothing, a bad
// VirtualService is rejected (named, an Event) and the last good config is kept, and the directory
// source works alongside.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeApiServer } from './fake-apiserver.ts';
import { controlFor, pod, podServer, proxyIn, service, slice } from './lib.ts';
import { send } from '../helpers.ts';
import { waitLong as waitFor } from './lib.ts';
import type { RunningControl } from '../../control/main.ts';
import { compile } from '../../proxy/config/compile.ts';
import { parseResourceText } from '../../proxy/config/resources.ts';
import { servicesToEntries } from '../../control/kubernetes/translate.ts';

let api: FakeApiServer;
let control: RunningControl;
const pods: Record<string, Awaited<ReturnType<typeof podServer>>> = {};
let pDefault: Awaited<ReturnType<typeof proxyIn>>;
let pOther: Awaited<ReturnType<typeof proxyIn>>;

const VS = (spec: unknown, name = 'reviews') => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name, namespace: 'default' }, spec });
const DR = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'default' },
  spec: { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] } };

/** Who answers `Host: <host>` through a proxy's outbound listener (n requests). */
async function who(proxy: Awaited<ReturnType<typeof proxyIn>>, host: string, n = 10): Promise<{ pods: Set<string>; failed: number }> {
  const out = new Set<string>();
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const r = await send(proxy.proxy.ports.outbound, { host });
    if (r.status === 200) out.add(r.body); else failed++;
  }
  return { pods: out, failed };
}

/** Requests in a loop until stopped (bounded): counts failures and who answered. */
function load(proxy: Awaited<ReturnType<typeof proxyIn>>, host: string) {
  let stop = false;
  let failed = 0;
  const seen: string[] = [];
  const done = (async () => {
    for (let i = 0; i < 20_000 && !stop; i++) {
      const r = await send(proxy.proxy.ports.outbound, { host }).catch(() => ({ status: 0, body: '' }));
      if (r.status === 200) seen.push(r.body); else failed++;
    }
  })();
  return { stop: async () => { stop = true; await done; return { failed, seen }; }, recent: (k: number) => seen.slice(-k) };
}

beforeAll(async () => {
  api = await FakeApiServer.start({ bookmarkMs: 200 });
  for (const n of ['r1', 'r2', 'r3', 'o1', 'd1']) pods[n] = await podServer(n);
  api.apply(service('default', 'reviews', [{ port: 9080, name: 'http' }]));
  api.apply(service('other', 'reviews', [{ port: 9080, name: 'http' }]));
  // r1 is a plain test server, not a meshed pod: a sidecar-marked pod would be sent mutual TLS.
  api.apply(pod('default', 'r1', { app: 'reviews', version: 'v1' }, { sa: 'bookinfo-reviews' }));
  api.apply(pod('default', 'r2', { app: 'reviews', version: 'v2' }));
  api.apply(pod('other', 'o1', { app: 'reviews', version: 'v1' }));
  api.apply(slice('default', 'reviews', 'reviews-r1', 'http', pods.r1.port, [{ pod: 'r1' }]));
  api.apply(slice('other', 'reviews', 'reviews-o1', 'http', pods.o1.port, [{ pod: 'o1' }]));
  api.apply(DR);
  // The directory holds policy for a service that only Kubernetes knows the endpoints of.
  control = await controlFor(api, {
    'details.yaml': 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: details, namespace: default}\nspec:\n  hosts: [details]\n  http:\n  - route:\n    - destination: {host: details}\n',
  });
  api.apply(service('default', 'details', [{ port: 9080, name: 'http' }]));
  api.apply(pod('default', 'd1', { app: 'details' }));
  api.apply(slice('default', 'details', 'details-d1', 'http', pods.d1.port, [{ pod: 'd1' }]));
  pDefault = await proxyIn(control, 'default', 'p-default', api);
  pOther = await proxyIn(control, 'other', 'p-other', api);
  await waitFor('routes', async () => (await send(pDefault.proxy.ports.outbound, { host: 'details:9080' })).status === 200);
}, 60_000);

afterAll(async () => {
  await pDefault?.stop(); await pOther?.stop();
  await control?.close();
  await api?.close();
  for (const p of Object.values(pods)) await p.close();
});

describe('Kubernetes discovery (fake API server, real client-node informers)', () => {
  it('a Service + EndpointSlice + Pod give the cluster endpoints a static ServiceEntry gives, with the identity', () => {
    const k8s = servicesToEntries(
      [service('default', 'reviews', [{ port: 9080, name: 'http' }])],
      [slice('default', 'reviews', 's1', 'http', 8080, [{ ip: '10.0.0.1', pod: 'a' }, { ip: '10.0.0.2', pod: 'b', ready: false }])],
      [pod('default', 'a', { app: 'reviews', version: 'v1' }, { sa: 'reviews-sa', sidecar: true })],
    );
    expect(k8s.problems).toEqual([]);
    const errors: string[] = [];
    const staticSE = parseResourceText('se.yaml', `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP, targetPort: 9080}]
  resolution: STATIC
  endpoints:
  - address: 10.0.0.1
    ports: {http: 8080}
    labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
    serviceAccount: reviews-sa
`, errors);
    expect(errors).toEqual([]);
    const a = compile(k8s.resources, { version: '1', source: 'k8s' });
    const b = compile(staticSE, { version: '1', source: 'file' });
    expect(a.clusters).toEqual(b.clusters);
    expect(a.clusters[0].endpoints).toEqual([{ address: '10.0.0.1', port: 8080, labels: { app: 'reviews', version: 'v1', 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'reviews-sa', namespace: 'default', tlsMode: 'istio' }]);
  });

  it('two namespaces each have reviews: a short name resolves in the calling proxy\'s namespace', async () => {
    expect((await who(pDefault, 'reviews:9080')).pods).toEqual(new Set(['r1']));
    expect((await who(pOther, 'reviews:9080')).pods).toEqual(new Set(['o1']));
    // Qualified names reach the other namespace's service from either.
    expect((await who(pDefault, 'reviews.other:9080')).pods).toEqual(new Set(['o1']));
    expect((await who(pOther, 'reviews.default.svc.cluster.local')).pods).toEqual(new Set(['r1']));
    // The directory's VirtualService routes a service whose endpoints come from Kubernetes.
    expect((await who(pDefault, 'details')).pods).toEqual(new Set(['d1']));
  });

  // The bound ("within a second") is a wall-clock one on a shared 2-core machine: retried,
  // each attempt starting from the same state (r1 ready, no r2).
  it('an EndpointSlice added, then terminating, then removed moves traffic within a second, with no failed request', { retry: 2 }, async () => {
    api.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'reviews-r2');
    api.apply(slice('default', 'reviews', 'reviews-r1', 'http', pods.r1.port, [{ pod: 'r1' }]));
    await waitFor('baseline', async () => { const w = await who(pDefault, 'reviews', 10); return w.pods.size === 1 && w.pods.has('r1'); });
    const l = load(pDefault, 'reviews');
    try {
      api.apply(slice('default', 'reviews', 'reviews-r2', 'http', pods.r2.port, [{ pod: 'r2' }]));
      let t = Date.now();
      await waitFor('r2 in rotation', () => l.recent(20).includes('r2'), 10_000);
      const added = Date.now() - t;
      // r1 starts terminating (ready false, serving true, terminating true): it drains.
      api.apply(slice('default', 'reviews', 'reviews-r1', 'http', pods.r1.port, [{ pod: 'r1', ready: false, serving: true, terminating: true }]));
      t = Date.now();
      await waitFor('r1 drained', () => { const r = l.recent(20); return r.length === 20 && r.every((x) => x === 'r2'); }, 10_000);
      const drained = Date.now() - t;
      api.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'reviews-r1');
      const before = pods.r1.hits();
      await new Promise((r) => setTimeout(r, 300));
      expect(pods.r1.hits(), 'a removed endpoint got requests').toBe(before);
      expect(added, 'ms until the added endpoint took traffic').toBeLessThan(1000);
      expect(drained, 'ms until the terminating endpoint stopped taking new requests').toBeLessThan(1000);
    } finally {
      const { failed, seen } = await l.stop();
      // Put r1 back for the next tests (and a retry).
      api.apply(slice('default', 'reviews', 'reviews-r1', 'http', pods.r1.port, [{ pod: 'r1' }]));
      expect(failed, 'failed requests during the changes').toBe(0);
      expect(seen.length).toBeGreaterThan(10);
    }
    await waitFor('r1 back', async () => (await who(pDefault, 'reviews', 10)).pods.has('r1'));
  });

  it('a Pod label change moves its endpoint between subsets', async () => {
    api.apply(VS({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v2' } }] }] }));
    await waitFor('only v2', async () => { const w = await who(pDefault, 'reviews', 10); return w.pods.size === 1 && w.pods.has('r2'); });
    api.apply(pod('default', 'r1', { app: 'reviews', version: 'v2' }, { sa: 'bookinfo-reviews' }));
    await waitFor('r1 now in v2', async () => (await who(pDefault, 'reviews', 20)).pods.has('r1'));
    api.apply(pod('default', 'r1', { app: 'reviews', version: 'v1' }, { sa: 'bookinfo-reviews' }));
    await waitFor('r1 back in v1', async () => { const w = await who(pDefault, 'reviews', 20); return w.pods.size === 1 && w.pods.has('r2'); });
  });

  it('a bad VirtualService is rejected and named (log, Event); the last good config stays', async () => {
    const version = control.state.current()!.snapshot.version;
    api.apply(VS({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' } }], timout: '1s' }] }));
    await waitFor('rejection', () => control.kubernetes!.source.rejections().some((r) => r.object === 'VirtualService default/reviews'));
    const rej = control.kubernetes!.source.rejections().find((r) => r.object === 'VirtualService default/reviews')!;
    expect(rej.errors.join('\n')).toMatch(/timout/);
    // The ops API shows it too (`meshlet ctl get config`).
    expect((control.state.describe(false) as { kubernetes_rejected: unknown[] }).kubernetes_rejected).toContainEqual(rej);
    await waitFor('event', () => api.list('v1', 'Event').find((e) => e.involvedObject?.name === 'reviews' && e.reason === 'MeshletRejected'));
    const ev = api.list('v1', 'Event').find((e) => e.involvedObject?.name === 'reviews' && e.reason === 'MeshletRejected')!;
    expect(ev.type).toBe('Warning');
    expect(ev.involvedObject.kind).toBe('VirtualService');
    expect(ev.message).toMatch(/timout/);
    // Still the previous VirtualService (all to v2).
    expect((await who(pDefault, 'reviews', 10)).pods).toEqual(new Set(['r2']));
    expect(control.state.current()!.snapshot.version).toBe(version);
    // Fixed: served.
    api.apply(VS({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' } }] }] }));
    await waitFor('fixed', async () => { const w = await who(pDefault, 'reviews', 10); return w.pods.size === 1 && w.pods.has('r1'); });
    expect(control.kubernetes!.source.rejections()).toEqual([]);
  });

  it('a 410 Gone (compacted history) makes the informers relist, and nothing is lost', async () => {
    api.remove('networking.istio.io/v1', 'VirtualService', 'default', 'reviews');
    await waitFor('both again', async () => (await who(pDefault, 'reviews', 20)).pods.size === 2);
    const lists = () => api.requests.filter((r) => r.startsWith('GET /apis/discovery.k8s.io/v1/endpointslices') && !r.includes('watch=')).length;
    const before = lists();
    api.compact();
    // Changes while the watches are down: a new pod endpoint, one removed.
    api.apply(pod('default', 'r3', { app: 'reviews', version: 'v3' }));
    api.apply(slice('default', 'reviews', 'reviews-r3', 'http', pods.r3.port, [{ pod: 'r3' }]));
    api.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'reviews-r2');
    await waitFor('relisted', () => lists() > before, 15_000);
    await waitFor('r3 in, r2 out', async () => { const w = await who(pDefault, 'reviews', 20); return w.pods.has('r3') && !w.pods.has('r2') && w.pods.has('r1'); }, 15_000);
    // Watches resume after the relist (bookmarks asked for).
    await waitFor('watching again', () => api.openWatches() >= 3);
    expect(api.requests.some((r) => r.includes('watch=true') && r.includes('allowWatchBookmarks=true'))).toBe(true);
  });
});
