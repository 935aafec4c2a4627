// DestinationRule trafficPolicy.tls for egress (SIMPLE, MUTUAL with the user's files, DISABLE
// over auto mTLS) against real TLS servers, and CUSTOM AuthorizationPolicy through a real HTTP
// ext-authz service (Envoy ext_authz HTTP semantics: 2xx allows, else the service's answer;
// failure denies unless failOpen).
import { afterAll, describe, expect, it } from 'vitest';
import { createServer as createHttps } from 'node:https';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixtures, send, echo } from '../helpers.ts';
import { CertificateAuthority } from '../../control/ca/ca.ts';
import { mesh } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

async function httpsUpstream(opts: { key: string; cert: string; ca?: string; requestCert?: boolean }): Promise<number> {
  const s = createHttps({ ...opts, rejectUnauthorized: opts.requestCert ?? false }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ tls: true, client: (req.socket as import('node:tls').TLSSocket).getPeerCertificate()?.subjectaltname ?? null }));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  fx.add(() => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); }));
  return (s.address() as { port: number }).port;
}

const entry = (port: number, tls: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: ext }
spec:
  hosts: [api.example]
  ports: [{ number: 443, name: https }]
  endpoints: [{ address: 127.0.0.1, ports: { https: ${port} } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: ext }
spec:
  host: api.example
  trafficPolicy:
    tls:
${tls}`;

describe('DestinationRule trafficPolicy.tls (egress)', () => {
  it('SIMPLE verifies the server with caCertificates and subjectAltNames; a wrong SAN or unknown CA is refused', async () => {
    const ca = await CertificateAuthority.load(undefined, { trustDomain: 'example' });
    const server = await ca.issueLocal({ namespace: 'ext', serviceAccount: 'api' });
    const port = await httpsUpstream({ key: server.keyPem, cert: server.certChain });
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-egress-'));
    writeFileSync(join(dir, 'ca.pem'), ca.rootPem);
    const ok = await fx.proxy(entry(port, `      mode: SIMPLE
      caCertificates: ${join(dir, 'ca.pem')}
      subjectAltNames: ["spiffe://example/ns/ext/sa/api"]`));
    const r = await send(ok.ports.outbound, { host: 'api.example' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).tls).toBe(true);
    const wrongSan = await fx.proxy(entry(port, `      mode: SIMPLE
      caCertificates: ${join(dir, 'ca.pem')}
      subjectAltNames: ["spiffe://example/ns/ext/sa/other"]`));
    expect((await send(wrongSan.ports.outbound, { host: 'api.example' })).status).toBe(503);
    const systemRoots = await fx.proxy(entry(port, '      mode: SIMPLE'));
    expect((await send(systemRoots.ports.outbound, { host: 'api.example' })).status).toBe(503);
  });

  it('MUTUAL presents the user\'s client certificate; SIMPLE to the same server is refused', async () => {
    const ca = await CertificateAuthority.load(undefined, { trustDomain: 'example' });
    const server = await ca.issueLocal({ namespace: 'ext', serviceAccount: 'api' });
    const client = await ca.issueLocal({ namespace: 'me', serviceAccount: 'caller' });
    const port = await httpsUpstream({ key: server.keyPem, cert: server.certChain, ca: ca.rootPem, requestCert: true });
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-egress-'));
    for (const [f, t] of [['ca.pem', ca.rootPem], ['cert.pem', client.certChain], ['key.pem', client.keyPem]]) writeFileSync(join(dir, f), t);
    const base = `      caCertificates: ${join(dir, 'ca.pem')}
      subjectAltNames: ["spiffe://example/ns/ext/sa/api"]`;
    const m = await fx.proxy(entry(port, `      mode: MUTUAL
      clientCertificate: ${join(dir, 'cert.pem')}
      privateKey: ${join(dir, 'key.pem')}
${base}`));
    const r = await send(m.ports.outbound, { host: 'api.example' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).client).toBe('URI:spiffe://example/ns/me/sa/caller');
    const s = await fx.proxy(entry(port, `      mode: SIMPLE\n${base}`));
    expect((await send(s.ports.outbound, { host: 'api.example' })).status).toBe(503);
  });

  it('DISABLE overrides auto mTLS to an endpoint with a sidecar (plaintext; PERMISSIVE serves it)', async () => {
    const m = await mesh(fx);
    const c = await m.client('demo', 'sleep', `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: httpbin, namespace: demo }
spec:
  host: httpbin
  trafficPolicy: { tls: { mode: DISABLE } }
`);
    const r = await send(c.ports.outbound, { host: 'httpbin', path: '/get' });
    expect(r.status).toBe(200);
    const s = await send(m.server.ports.admin, { path: '/stats' });
    expect(s.body).toMatch(/listener\.inbound\.ssl\.handshake: 0/);
  });
});

describe('CUSTOM AuthorizationPolicy (HTTP ext-authz)', () => {
  it('asks the provider for matching requests: 2xx allows (headers copied upstream), otherwise its answer; failure denies unless failOpen', async () => {
    const seen: Array<Record<string, unknown>> = [];
    const ext = await fx.upstream((req, res) => {
      seen.push({ url: req.url, method: req.method, headers: req.headers });
      if (req.headers['x-allow'] === 'yes') { res.setHeader('x-authz-user', 'alice'); res.end('ok'); return; }
      res.statusCode = 403;
      res.setHeader('x-ext-reason', 'no x-allow');
      res.end('denied by ext');
    });
    const app = await fx.upstream(echo('app'));
    const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: local }
spec:
  hosts: [local]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${app.port} } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext, namespace: default }
spec:
  action: CUSTOM
  provider: { name: my-ext }
  rules: [{ to: [{ operation: { paths: ["/admin/*"] } }] }]
`;
    const provider = {
      name: 'my-ext', service: `http://127.0.0.1:${ext.port}`, pathPrefix: '/check',
      includeRequestHeadersInCheck: ['x-allow'], headersToUpstreamOnAllow: ['x-authz-user'], headersToDownstreamOnDeny: ['x-ext-reason'],
    };
    const p = await fx.proxy(yaml, { appPort: app.port, extAuthzProviders: [provider] });
    const call = (path: string, headers: Record<string, string> = {}) => send(p.ports.inbound, { host: 'local', path, headers });
    expect((await call('/public')).status).toBe(200);
    expect(seen).toHaveLength(0);
    const ok = await call('/admin/x', { 'x-allow': 'yes', 'x-other': 'not sent' });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).headers['x-authz-user']).toBe('alice');
    expect(seen[0]).toMatchObject({ url: '/check/admin/x', method: 'GET' });
    expect((seen[0].headers as Record<string, string>)['x-other']).toBeUndefined();
    const no = await call('/admin/x');
    expect(no.status).toBe(403);
    expect(no.body).toBe('denied by ext');
    expect(no.headers['x-ext-reason']).toBe('no x-allow');

    await ext.close();
    expect((await call('/admin/x', { 'x-allow': 'yes' })).status).toBe(403);
    const open = await fx.proxy(yaml, { appPort: app.port, extAuthzProviders: [{ ...provider, failOpen: true, timeoutMs: 2000 }] });
    expect((await send(open.ports.inbound, { host: 'local', path: '/admin/x' })).status).toBe(200);
  });
});
