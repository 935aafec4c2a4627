// Single-writer work across control replicas behind a coordination.k8s.io/v1 Lease on the (fake)
// API server, with its resourceVersion conflicts: exactly one holder, even when replicas race;
// a released Lease is taken over at once, a crashed holder's after the lease duration; the ops
// API answers 503 on a replica that does not hold it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { FakeApiServer } from './fake-apiserver.ts';
import { controlFor, kubeConfigFor } from './lib.ts';
import { httpJson } from '../control/lib.ts';
import { waitLong as waitFor } from './lib.ts';
import { LeaderElector } from '../../control/kubernetes/lease.ts';

let api: FakeApiServer;
beforeAll(async () => { api = await FakeApiServer.start(); });
afterAll(async () => { await api?.close(); });

const elector = (identity: string, name = 'test-lease') => new LeaderElector(kubeConfigFor(api), {
  namespace: 'meshlet-system', name, identity, leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 100,
});

describe('Lease leader election', () => {
  it('the fake answers a stale update with 409 Conflict and a second create with 409 AlreadyExists', async () => {
    const c = kubeConfigFor(api).makeApiClient(CoordinationV1Api);
    const created = await c.createNamespacedLease({ namespace: 'meshlet-system', body: { metadata: { name: 'raw' }, spec: { holderIdentity: 'x' } } });
    await expect(c.createNamespacedLease({ namespace: 'meshlet-system', body: { metadata: { name: 'raw' }, spec: {} } })).rejects.toMatchObject({ code: 409 });
    await c.replaceNamespacedLease({ name: 'raw', namespace: 'meshlet-system', body: { ...created, spec: { holderIdentity: 'y' } } });
    await expect(c.replaceNamespacedLease({ name: 'raw', namespace: 'meshlet-system', body: { ...created, spec: { holderIdentity: 'z' } } })).rejects.toMatchObject({ code: 409 });
  });

  it('racing replicas: exactly one wins each round', async () => {
    const es = ['a', 'b', 'c'].map((id) => elector(id, 'race'));
    const won = await Promise.all(es.map((e) => e.tryAcquireOrRenew()));
    expect(won.filter(Boolean)).toHaveLength(1);
    // Later rounds keep the same single holder.
    for (let i = 0; i < 3; i++) {
      const again = await Promise.all(es.map((e) => e.tryAcquireOrRenew()));
      expect(again.filter(Boolean)).toHaveLength(1);
      expect(es.filter((e) => e.isLeader())).toHaveLength(1);
    }
    const holder = api.get('coordination.k8s.io/v1', 'Lease', 'meshlet-system', 'race')!;
    expect(holder.spec.holderIdentity).toBe(es.find((e) => e.isLeader())!.currentHolder());
    for (const e of es) await e.stop();
  });

  it('a released Lease is taken over at once; a crashed holder is replaced after the lease duration', async () => {
    const a = elector('a');
    const b = elector('b');
    a.start();
    await waitFor('a leads', () => a.isLeader());
    b.start();
    await new Promise((r) => setTimeout(r, 400));
    expect(b.isLeader()).toBe(false);
    expect(b.currentHolder()).toBe('a');
    await a.stop();                               // releases
    await waitFor('b leads', () => b.isLeader(), 5_000);
    // b "crashes": stops renewing without releasing. c takes over only after the duration.
    const c = elector('c');
    await b.stop({ release: false });
    const t = Date.now();
    c.start();
    await waitFor('c leads', () => c.isLeader(), 10_000);
    expect(Date.now() - t).toBeGreaterThanOrEqual(1400);
    const lease = api.get('coordination.k8s.io/v1', 'Lease', 'meshlet-system', 'test-lease')!;
    expect(lease.spec.holderIdentity).toBe('c');
    expect(lease.spec.leaseTransitions).toBeGreaterThanOrEqual(2);
    await c.stop();
  });

  it('two control replicas: only the Lease holder accepts ops writes', async () => {
    const lease = (id: string) => ({ namespace: 'meshlet-system', name: 'ops', identity: id, leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 100 });
    const files = { 'r.yaml': 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: r}\nspec:\n  hosts: [r.example]\n  ports: [{number: 80, name: http}]\n  endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r.example\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n' };
    const one = await controlFor(api, files, { kubernetes: { kc: kubeConfigFor(api), debounceMs: 10, lease: lease('replica-1') } });
    await waitFor('replica-1 leads', () => one.kubernetes!.leader!.isLeader());
    const two = await controlFor(api, files, { kubernetes: { kc: kubeConfigFor(api), debounceMs: 10, lease: lease('replica-2') } });
    try {
      await waitFor('replica-2 follows', () => two.kubernetes!.leader!.currentHolder() === 'replica-1');
      const body = { host: 'r.example', weights: { v1: 50, v2: 50 } };
      const no = await httpJson(two.ports.api, 'POST', '/v1/weights', body);
      expect(no.status).toBe(503);
      expect(no.json.error).toContain('holder: replica-1');
      const yes = await httpJson(one.ports.api, 'POST', '/v1/weights', body);
      expect(yes.status).toBe(200);
    } finally {
      await one.close();
      await two.close();
    }
  });
});
