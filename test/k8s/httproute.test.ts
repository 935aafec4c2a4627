// Gateway API HTTPRoute with a Service parentRef (GAMMA), read from the (fake) API server and
// compiled to the same snapshot: weighted backendRefs split as configured, Gateway API precedence
// (exact path, longest prefix, method, most headers, most query params) rather than list order,
// header modifiers, URLRewrite, RequestMirror, timeouts; a bad route is rejected by name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { FakeApiServer } from './fake-apiserver.ts';
import { controlFor, pod, proxyIn, service, slice } from './lib.ts';
import { send } from '../helpers.ts';
import { waitLong as waitFor } from './lib.ts';
import type { RunningControl } from '../../control/main.ts';
import { httpRouteToResources, percentages } from '../../control/kubernetes/httproute.ts';

let api: FakeApiServer;
let control: RunningControl;
let proxy: Awaited<ReturnType<typeof proxyIn>>;
const servers: Server[] = [];
const mirrored: string[] = [];

/** A backend Service "name" with one pod that echoes who it is, the path and some headers. */
async function backend(name: string): Promise<void> {
  const s = createServer((req, res) => {
    req.resume();
    if (name === 'shadow') mirrored.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
    res.end(JSON.stringify({ backend: name, path: req.url, added: req.headers['x-added'] ?? null, removed: req.headers['x-drop'] ?? null, host: req.headers.host }));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  servers.push(s);
  const port = (s.address() as { port: number }).port;
  api.apply(service('default', name, [{ port: 8080, name: 'http' }]));
  api.apply(pod('default', `${name}-0`, { app: name }));
  api.apply(slice('default', name, `${name}-abc`, 'http', port, [{ pod: `${name}-0` }]));
}

const route = (name: string, spec: unknown) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'default' }, spec });
const parent = [{ group: '', kind: 'Service', name: 'reviews', port: 8080 }];
const ref = (name: string, weight?: number) => ({ name, port: 8080, ...(weight !== undefined ? { weight } : {}) });

async function get(path: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<any> {
  const r = await send(proxy.proxy.ports.outbound, { host: 'reviews:8080', path, ...opts });
  if (r.status !== 200) return { status: r.status, body: r.body };
  return { status: 200, ...JSON.parse(r.body), responseHeaders: r.headers };
}

beforeAll(async () => {
  api = await FakeApiServer.start();
  for (const n of ['reviews', 'a', 'b', 'c', 'd', 'e', 'shadow']) await backend(n);
  control = await controlFor(api);
  proxy = await proxyIn(control, 'default', 'gamma-client', api);
  await waitFor('reviews', async () => (await get('/')).backend === 'reviews');
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await control?.close();
  await api?.close();
  for (const s of servers) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
});

describe('HTTPRoute (GAMMA)', () => {
  it('weights are relative and normalize to percentages', () => {
    expect(percentages([3, 1])).toEqual([75, 25]);
    expect(percentages([1, 1, 1])).toEqual([34, 33, 33]);
    expect(percentages([1, 0])).toEqual([100, 0]);
    expect(percentages([0, 0])).toEqual([0, 0]);
  });

  it('Gateway API precedence, not list order: exact path, longest prefix, method, most headers, most query params', async () => {
    api.apply(route('precedence', {
      parentRefs: parent,
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [ref('a')] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [ref('b')] },
        { matches: [{ path: { type: 'Exact', value: '/api/v1' } }], backendRefs: [ref('c')] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [ref('d')] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST' }], backendRefs: [ref('e')] },
        { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-canary', value: 'yes' }], queryParams: [{ name: 'debug', value: '1' }] }], backendRefs: [ref('shadow')] },
      ],
    }));
    await waitFor('route applied', async () => (await get('/api/v1')).backend === 'c');
    expect((await get('/other')).backend).toBe('a');
    expect((await get('/api/x')).backend).toBe('b');
    expect((await get('/api/x', { headers: { 'x-canary': 'yes' } })).backend).toBe('d');
    expect((await get('/api/x', { method: 'POST', headers: { 'x-canary': 'yes' } })).backend).toBe('e');
    expect((await get('/api/x?debug=1', { headers: { 'x-canary': 'yes' } })).backend).toBe('shadow');
    expect((await get('/api/v1', { method: 'POST' })).backend).toBe('c');
    api.remove('gateway.networking.k8s.io/v1', 'HTTPRoute', 'default', 'precedence');
  });

  it('weighted backendRefs split as configured', async () => {
    api.apply(route('split', { parentRefs: parent, rules: [{ backendRefs: [ref('a', 3), ref('b', 1)] }] }));
    await waitFor('split applied', async () => { const w = new Set<string>(); for (let i = 0; i < 20; i++) w.add((await get('/')).backend); return w.has('a') && w.has('b') && !w.has('reviews'); });
    const n = 400;
    const count: Record<string, number> = {};
    for (let i = 0; i < n; i++) { const b = (await get('/')).backend; count[b] = (count[b] ?? 0) + 1; }
    // 75/25 of 400: 300 expected; binomial sd ~8.7, so +-45 is more than 5 sd.
    expect(count.a).toBeGreaterThan(255);
    expect(count.a).toBeLessThan(345);
    expect(count.a + count.b).toBe(n);
    api.remove('gateway.networking.k8s.io/v1', 'HTTPRoute', 'default', 'split');
  });

  it('filters: header modifiers (route and backendRef), URLRewrite prefix and hostname, RequestMirror; timeouts 0s = none', async () => {
    api.apply(route('filters', {
      parentRefs: parent,
      rules: [{
        matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-added', value: 'by-route' }], remove: ['x-drop'] } },
          { type: 'URLRewrite', urlRewrite: { hostname: 'rewritten.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 8080 } } },
        ],
        backendRefs: [{ ...ref('c'), filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-from', value: 'c' }] } }] }],
        timeouts: { request: '0s' },
      }],
    }));
    await waitFor('filters applied', async () => (await get('/old/page')).backend === 'c');
    mirrored.length = 0;
    const r = await get('/old/page', { headers: { 'x-drop': 'gone?' } });
    expect(r.path).toBe('/new/page');
    expect(r.added).toBe('by-route');
    expect(r.removed).toBeNull();
    expect(r.host).toBe('rewritten.example');
    expect(r.responseHeaders['x-from']).toBe('c');
    await waitFor('mirrored', () => mirrored.includes('/new/page'));
    const vs = control.state.current()!.snapshot.virtualHosts.find((v) => v.name === 'default/httproute-filters')!;
    expect(vs.routes[0].timeoutMs).toBeUndefined();
    api.remove('gateway.networking.k8s.io/v1', 'HTTPRoute', 'default', 'filters');
  });

  it('a rule without usable backends answers 500; unsupported filters and bad timeouts are rejected by name', async () => {
    api.apply(route('empty', { parentRefs: parent, rules: [{ matches: [{ path: { type: 'Exact', value: '/gone' } }], backendRefs: [ref('a', 0)] }, { backendRefs: [ref('reviews')] }] }));
    await waitFor('500', async () => (await get('/gone')).status === 500);
    expect((await get('/x')).backend).toBe('reviews');
    const errors: string[] = [];
    httpRouteToResources(route('bad', { parentRefs: parent, rules: [{ filters: [{ type: 'CORS' }], backendRefs: [ref('a')], timeouts: { request: '1s', backendRequest: '2s' } }] }), errors);
    expect(errors.join('\n')).toContain('HTTPRoute/bad: spec.rules[0].filters[0].type: "CORS" is not supported');
    expect(errors.join('\n')).toContain('spec.rules[0].timeouts.backendRequest: (2s) must not be longer than timeouts.request (1s)');
    // A route attached to a Gateway only is not mesh config.
    expect(httpRouteToResources(route('gw', { parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }], rules: [{ backendRefs: [ref('a')] }] }), [])).toEqual([]);
    // Through the API server: rejected and reported, the service keeps its routing.
    api.apply(route('bad', { parentRefs: [{ kind: 'Service', name: 'b' }], rules: [{ filters: [{ type: 'CORS' }], backendRefs: [ref('a')] }] }));
    await waitFor('rejection', () => control.kubernetes!.source.rejections().some((r) => r.object === 'HTTPRoute default/bad'));
    api.remove('gateway.networking.k8s.io/v1', 'HTTPRoute', 'default', 'empty');
    api.remove('gateway.networking.k8s.io/v1', 'HTTPRoute', 'default', 'bad');
  });
});
