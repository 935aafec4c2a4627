// The cluster as the source of the kinds other issues added: Canary / MetricTemplate (meshlet.io
// and flagger.app) reach the canary controller, and Istio's security kinds (security.istio.io)
// reach the snapshot, both through the same informers and validation as the networking kinds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeApiServer } from './fake-apiserver.ts';
import { controlFor, service, waitLong as waitFor } from './lib.ts';
import type { RunningControl } from '../../control/main.ts';

let api: FakeApiServer;
let control: RunningControl;

const canary = (apiVersion: string, name: string, spec: Record<string, unknown>) => ({
  apiVersion, kind: 'Canary', metadata: { name, namespace: 'bookinfo', uid: `uid-${name}`, managedFields: [] },
  spec, status: { phase: 'Progressing' },  // a server-side status is not config
});

beforeAll(async () => {
  api = await FakeApiServer.start();
  api.apply(service('bookinfo', 'reviews', [{ port: 9080, name: 'http' }]));
  control = await controlFor(api);
}, 60_000);
afterAll(async () => { await control?.close(); await api?.close(); });

describe('kinds of the other issues from the API server', () => {
  it('a Canary in meshlet.io and one in flagger.app reach the controller; a bad one is not taken', async () => {
    const analysis = { interval: '1s', threshold: 2, stepWeight: 20, maxWeight: 100, metrics: [{ name: 'request-success-rate', thresholdRange: { min: 99 }, interval: '5s' }] };
    api.apply(canary('meshlet.io/v1alpha1', 'reviews', { targetRef: { kind: 'Service', name: 'reviews' }, analysis }));
    api.apply(canary('flagger.app/v1beta1', 'ratings', { targetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'ratings' }, analysis }));
    api.apply(canary('meshlet.io/v1alpha1', 'broken', { targetRef: { kind: 'Service', name: 'reviews' }, analysis: { ...analysis, stepWieght: 5 } }));
    const names = await waitFor('canaries listed', () => {
      const n = control.canaries.list().map((c: { name?: string; metadata?: { name?: string } }) => c.name ?? c.metadata?.name).sort();
      return n.length >= 2 ? n : false;
    }, 15_000);
    expect(names).toEqual(['ratings', 'reviews']);
    // Deleting the object removes the canary.
    api.remove('flagger.app/v1beta1', 'Canary', 'bookinfo', 'ratings');
    await waitFor('ratings gone', () => control.canaries.list().length === 1, 15_000);
  });

  it('an AuthorizationPolicy from security.istio.io reaches the snapshot; an unknown when key is rejected', async () => {
    api.apply({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-all', namespace: 'bookinfo' }, spec: {} });
    api.apply({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'bad', namespace: 'bookinfo' },
      spec: { rules: [{ when: [{ key: 'request.nonsense', values: ['x'] }] }] } });
    const sec = await waitFor('policy in the snapshot', () => {
      const s = control.state.current()?.snapshot.security as { authorizationPolicies?: Array<{ name: string }> } | undefined;
      const names = JSON.stringify(s ?? {});
      return names.includes('deny-all') ? names : false;
    }, 15_000);
    expect(sec).not.toContain('"bad"');
    // Rejected alone, named with its field (the rest of the config kept building).
    const rej = control.kubernetes!.source.rejections();
    expect(rej.map((r) => r.object)).toContain('AuthorizationPolicy bookinfo/bad');
    expect(JSON.stringify(rej)).toContain('request.nonsense');
  });
});
