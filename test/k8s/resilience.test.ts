// The Kubernetes source when the API server is not perfect: a CRD that is not installed (404) is
// an empty kind (the rest is served; it is looked for again every 30 s, not waited for here); API errors (500)
// at start are retried with backoff until the first lists succeed; a watch the server closes
// (its timeoutSeconds) is resumed from the last resourceVersion without a relist.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeApiServer } from './fake-apiserver.ts';
import { controlFor, pod, podServer, proxyIn, service, slice, waitLong as waitFor } from './lib.ts';
import { send } from '../helpers.ts';
import type { RunningControl } from '../../control/main.ts';

let api: FakeApiServer;
let control: RunningControl;
let web: Awaited<ReturnType<typeof podServer>>;

beforeAll(async () => {
  api = await FakeApiServer.start({ bookmarkMs: 200 });
  api.unserved.add('httproutes.gateway.networking.k8s.io');   // no Gateway API CRDs in this cluster
  web = await podServer('web-0');
  api.apply(service('default', 'web', [{ port: 80, name: 'http' }]));
  api.apply(pod('default', 'web-0', { app: 'web' }));
  api.apply(slice('default', 'web', 'web-1', 'http', web.port, [{ pod: 'web-0' }]));
  api.failNext = 6;                                            // the first lists fail
  control = await controlFor(api);
}, 60_000);
afterAll(async () => { await control?.close(); await api?.close(); await web?.close(); });

describe('Kubernetes source resilience', () => {
  it('retries failed lists with backoff, and serves without the CRDs that are not installed', async () => {
    const p = await proxyIn(control, 'default', 'r-1', api);
    try {
      await waitFor('served', async () => (await send(p.proxy.ports.outbound, { host: 'web' })).body === 'web-0');
      expect(api.requests.filter((r) => r === 'GET /apis/gateway.networking.k8s.io/v1/httproutes').length).toBeGreaterThanOrEqual(1);
      // A relist after the 500s: more than one list of Services was made.
      expect(api.requests.filter((r) => r === 'GET /api/v1/services').length).toBeGreaterThanOrEqual(2);
      // The server ends every watch (timeoutSeconds): resumed from the last resourceVersion, no relist.
      const lists = api.requests.filter((r) => r === 'GET /api/v1/services').length;
      api.closeWatches();
      await waitFor('watching again', () => api.openWatches() >= 3);
      api.apply(slice('default', 'web', 'web-1', 'http', web.port, [{ pod: 'web-0' }, { pod: 'web-0', ip: '127.0.0.2' }]));
      await waitFor('update seen', () => control.state.current()!.snapshot.clusters.find((c) => c.service === 'web.default.svc.cluster.local')!.endpoints.length === 2);
      expect(api.requests.filter((r) => r === 'GET /api/v1/services').length).toBe(lists);
      expect(api.requests.some((r) => r.startsWith('GET /api/v1/services?watch=true&resourceVersion=') && !r.includes('resourceVersion=&'))).toBe(true);
    } finally {
      await p.stop();
    }
  });
});
