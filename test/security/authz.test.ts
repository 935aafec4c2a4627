// The seed's security chapter on real sockets: two sidecars with workload identities from a
// real CA, mutual TLS between them, and AuthorizationPolicies on the httpbin side giving the
// seed's answers. Also: DENY beats ALLOW, no ALLOW policy allows, dry-run counts shadow_denied
// and lets the request through, AUDIT marks, the rbac stats.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fixtures, send } from '../helpers.ts';
import { stats } from '../resilience/lib.ts';
import { mesh, type Mesh } from './lib.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const fx = new Fixtures();
let m: Mesh;
let sleep: RunningProxy;
let other: RunningProxy;
beforeAll(async () => {
  m = await mesh(fx);
  sleep = await m.client('demo', 'sleep');
  other = await m.client('other', 'sleep');
}, 60_000);
afterAll(() => fx.closeAll());

const get = (p: RunningProxy, path = '/get', headers: Record<string, string> = {}, method = 'GET') =>
  send(p.ports.outbound, { host: 'httpbin', path, headers, method });

const policy = (name: string, spec: string, annotations = '') => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: demo
${annotations}spec:
${spec}
`;

describe('the seed: AuthorizationPolicy on httpbin', () => {
  it('with no policy, every caller is served over mutual TLS and the app sees the caller identity in the server sidecar', async () => {
    m.policies('');
    const r = await get(sleep, '/get', { 'x-forwarded-client-cert': 'By=forged' });
    expect(r.status).toBe(200);
    // The app learns the caller from x-forwarded-client-cert (Istio's format); a caller's own value is dropped.
    expect(JSON.parse(r.body).headers['x-forwarded-client-cert']).toMatch(/^By=spiffe:\/\/cluster\.local\/ns\/demo\/sa\/httpbin;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/demo\/sa\/sleep$/);
    const s = await stats(m.server.ports.admin);
    expect(s.get('listener.inbound.ssl.handshake')).toBeGreaterThan(0);
    expect(s.get('http.inbound.rbac.denied') ?? 0).toBe(0);
    // Istio's standard labels on the destination side.
    const prom = (await send(m.server.ports.admin, { path: '/stats/prometheus' })).body;
    expect(prom).toMatch(/istio_requests_total\{reporter="destination"[^}]*connection_security_policy="mutual_tls",source_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/sleep",destination_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/httpbin"\} [1-9]/);
  });

  it('1. a policy with no rules denies everything: 403 RBAC: access denied', async () => {
    m.policies(policy('deny-all', '  selector: { matchLabels: { app: httpbin } }'));
    for (const c of [sleep, other]) {
      const r = await get(c);
      expect(r.status).toBe(403);
      expect(r.body).toBe('RBAC: access denied');
    }
    const s = await stats(m.server.ports.admin);
    expect(s.get('http.inbound.rbac.denied')).toBeGreaterThanOrEqual(2);
  });

  it('2. principals: only cluster.local/ns/demo/sa/sleep may call; another namespace is denied', async () => {
    m.policies(policy('allow-sleep', `  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/demo/sa/sleep"]`));
    expect((await get(sleep)).status).toBe(200);
    const r = await get(other);
    expect(r.status).toBe(403);
    expect(r.body).toBe('RBAC: access denied');
  });

  it('2b. namespaces: ["demo"] allows demo, denies other', async () => {
    m.policies(policy('allow-demo', `  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: ["demo"]`));
    expect((await get(sleep)).status).toBe(200);
    expect((await get(other)).status).toBe(403);
  });

  it('3. only GET /get: /get allowed, /ip denied, POST /get denied', async () => {
    m.policies(policy('get-only', `  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/demo/sa/sleep"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/get"]`));
    expect((await get(sleep, '/get')).status).toBe(200);
    expect((await get(sleep, '/get?x=1')).status).toBe(200);
    const ip = await get(sleep, '/ip');
    expect(ip.status).toBe(403);
    expect(ip.body).toBe('RBAC: access denied');
    expect((await get(sleep, '/get', {}, 'POST')).status).toBe(403);
  });

  it('4. only with header x-rfma-token: test*', async () => {
    m.policies(policy('token', `  selector: { matchLabels: { app: httpbin } }
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/demo/sa/sleep"]
    to:
    - operation:
        methods: ["GET"]
    when:
    - key: request.headers[x-rfma-token]
      values: ["test*"]`));
    expect((await get(sleep, '/get', { 'x-rfma-token': 'test123' })).status).toBe(200);
    expect((await get(sleep, '/get', { 'x-rfma-token': 'prod' })).status).toBe(403);
    expect((await get(sleep, '/get')).status).toBe(403);
  });
});

describe('evaluation order and stats', () => {
  it('DENY beats ALLOW', async () => {
    m.policies(policy('allow-all', '  rules: [{}]') + '---\n' + policy('deny-ip', `  action: DENY
  rules:
  - to: [{ operation: { paths: ["/ip"] } }]`));
    expect((await get(sleep, '/get')).status).toBe(200);
    expect((await get(sleep, '/ip')).status).toBe(403);
  });

  it('no ALLOW policy (only a DENY that does not match) allows', async () => {
    m.policies(policy('deny-admin', `  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin*"] } }]`));
    expect((await get(other, '/get')).status).toBe(200);
    expect((await get(other, '/admin/x')).status).toBe(403);
  });

  it('dry-run (istio.io/dry-run: "true") counts shadow_denied and lets the request through', async () => {
    m.policies(policy('dry', `  selector: { matchLabels: { app: httpbin } }
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/headers"] } }]`, `  annotations:
    "istio.io/dry-run": "true"
`));
    const before = await stats(m.server.ports.admin);
    const r = await get(sleep, '/headers');
    expect(r.status).toBe(200);
    const after = await stats(m.server.ports.admin);
    expect((after.get('http.inbound.rbac.shadow_denied') ?? 0) - (before.get('http.inbound.rbac.shadow_denied') ?? 0)).toBe(1);
    expect((after.get('http.inbound.rbac.allowed') ?? 0) - (before.get('http.inbound.rbac.allowed') ?? 0)).toBe(1);
    await get(sleep, '/get');
    const later = await stats(m.server.ports.admin);
    expect((later.get('http.inbound.rbac.shadow_allowed') ?? 0) - (after.get('http.inbound.rbac.shadow_allowed') ?? 0)).toBe(1);
  });

  it('an unknown when key refuses the snapshot, naming the key; the previous policies stay', async () => {
    m.policies(policy('deny-all', '  {}'));
    expect(() => m.policies(policy('typo', `  action: DENY
  rules:
  - when: [{ key: "request.header[x]", values: ["a"] }]`))).toThrow(/unknown condition key "request.header\[x\]"/);
    expect((await get(sleep)).status).toBe(403);
  });
});
