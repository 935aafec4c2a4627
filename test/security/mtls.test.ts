// Mutual TLS between sidecars on real sockets: PeerAuthentication STRICT / PERMISSIVE / DISABLE
// and portLevelMtls, refusals (plaintext under STRICT, another CA, an expired certificate, a
// wrong server identity), rotation of every certificate under load with no failed request, the
// CA endpoint on the control server, and /certs.
import { afterAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixtures, send } from '../helpers.ts';
import { stats } from '../resilience/lib.ts';
import { mesh, httpbinEntry } from './lib.ts';
import { CertificateAuthority } from '../../control/ca/ca.ts';
import { Identity, controlCertSource } from '../../proxy/identity/identity.ts';
import { startControl } from '../../control/main.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const strict = (mode = 'STRICT', extra = '') => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: demo }
spec:
  mtls: { mode: ${mode} }
${extra}`;

/** One raw HTTP/1.1 exchange over `sock` (plaintext or TLS); resolves with what came back, '' if the peer closed. */
function exchange(sock: import('node:net').Socket, ready = 'connect'): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const t = setTimeout(() => { sock.destroy(); resolve(got); }, 5000);
    sock.once(ready, () => sock.write('GET /get HTTP/1.1\r\nhost: httpbin\r\nconnection: close\r\n\r\n'));
    sock.on('data', (d) => { got += d; });
    sock.on('error', () => {});
    sock.on('close', () => { clearTimeout(t); resolve(got); });
  });
}

describe('PeerAuthentication', () => {
  it('STRICT refuses a plaintext client; PERMISSIVE serves it; mTLS is served in both', async () => {
    const m = await mesh(fx, { serverYaml: strict() });
    const sleep = await m.client('demo', 'sleep');
    expect((await send(sleep.ports.outbound, { host: 'httpbin', path: '/get' })).status).toBe(200);
    expect(await exchange(netConnect({ host: '127.0.0.1', port: m.server.ports.inbound }))).toBe('');
    expect((await stats(m.server.ports.admin)).get('listener.inbound.ssl.plaintext_refused')).toBeGreaterThanOrEqual(1);
    m.policies(strict('PERMISSIVE'));
    expect(await exchange(netConnect({ host: '127.0.0.1', port: m.server.ports.inbound }))).toMatch(/^HTTP\/1.1 200/);
    expect((await send(sleep.ports.outbound, { host: 'httpbin', path: '/get' })).status).toBe(200);
  });

  it('UNSET inherits the mesh-wide policy (root namespace); a workload policy overrides the namespace; portLevelMtls wins for its port', async () => {
    const m = await mesh(fx);
    const plain = () => exchange(netConnect({ host: '127.0.0.1', port: m.server.ports.inbound }));
    m.policies(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: mesh, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
---
${strict('UNSET')}`);
    expect(await plain()).toBe('');
    m.policies(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: mesh, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: httpbin, namespace: demo }
spec:
  selector: { matchLabels: { app: httpbin } }
  mtls: { mode: PERMISSIVE }`);
    expect(await plain()).toMatch(/^HTTP\/1.1 200/);
    m.policies(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: httpbin, namespace: demo }
spec:
  selector: { matchLabels: { app: httpbin } }
  mtls: { mode: PERMISSIVE }
  portLevelMtls:
    "${m.app.port}": { mode: STRICT }`);
    expect(await plain()).toBe('');
  });

  it('STRICT refuses a client certificate from another CA, an expired certificate, and a client with no certificate', async () => {
    const m = await mesh(fx, { serverYaml: strict() });
    const tryWith = (o: { key?: string; cert?: string }) => exchange(tlsConnect({
      host: '127.0.0.1', port: m.server.ports.inbound, ca: m.ca.rootPem, ...o, checkServerIdentity: () => undefined,
    }), 'secureConnect');
    const good = await m.ca.issueLocal({ namespace: 'demo', serviceAccount: 'sleep' });
    expect(await tryWith({ key: good.keyPem, cert: good.certChain })).toMatch(/^HTTP\/1.1 200/);
    const otherCa = await CertificateAuthority.load(undefined);
    const foreign = await otherCa.issueLocal({ namespace: 'demo', serviceAccount: 'sleep' });
    expect(await tryWith({ key: foreign.keyPem, cert: foreign.certChain })).toBe('');
    // Valid for a minute, two hours ago.
    const expired = await m.ca.issueLocal({ namespace: 'demo', serviceAccount: 'sleep' }, { ttlMs: 60_000, now: Date.now() - 2 * 3600_000 });
    expect(await tryWith({ key: expired.keyPem, cert: expired.certChain })).toBe('');
    expect(await tryWith({})).toBe('');
    expect((await stats(m.server.ports.admin)).get('listener.inbound.ssl.connection_error')).toBeGreaterThanOrEqual(3);
  });
});

describe('the client sidecar', () => {
  it('refuses a server whose identity is not the endpoint\'s service account (503, counted as fail_verify_san)', async () => {
    const m = await mesh(fx);
    const id = await Identity.start({ namespace: 'demo', serviceAccount: 'sleep', source: async (csr, who) => m.ca.sign(csr, who) });
    fx.add(async () => id.close());
    const c = await fx.proxy(httpbinEntry(m.server.ports.inbound, { serviceAccount: 'not-httpbin' }), { identity: id, namespace: 'demo' });
    const r = await send(c.ports.outbound, { host: 'httpbin', path: '/get' });
    expect(r.status).toBe(503);
    expect(m.app.hits).toBe(0);
    expect((await stats(c.ports.admin)).get('cluster_manager.outbound.ssl.fail_verify_san')).toBeGreaterThanOrEqual(1);
  });

  it('speaks plaintext to an endpoint without a sidecar (tlsMode disabled), and a STRICT server then refuses it', async () => {
    const m = await mesh(fx, { serverYaml: strict() });
    const id = await Identity.start({ namespace: 'demo', serviceAccount: 'sleep', source: async (csr, who) => m.ca.sign(csr, who) });
    fx.add(async () => id.close());
    const c = await fx.proxy(httpbinEntry(m.server.ports.inbound, { tlsMode: 'disabled' }), { identity: id, namespace: 'demo' });
    expect((await send(c.ports.outbound, { host: 'httpbin', path: '/get' })).status).toBe(503);
    m.policies(strict('PERMISSIVE'));
    expect((await send(c.ports.outbound, { host: 'httpbin', path: '/get' })).status).toBe(200);
  });

  it('pools connections: one handshake serves many requests', async () => {
    const m = await mesh(fx);
    const sleep = await m.client('demo', 'sleep');
    const ask = () => new Promise<number>((resolve, reject) => {
      // keep-alive through the same downstream connection
      send(sleep.ports.outbound, { host: 'httpbin', path: '/get' }).then((r) => resolve(r.status), reject);
    });
    for (let i = 0; i < 20; i++) expect(await ask()).toBe(200);
    const hs = (await stats(sleep.ports.admin)).get('cluster_manager.outbound.ssl.handshake') ?? 0;
    expect(hs).toBeGreaterThanOrEqual(1);
    expect(hs).toBeLessThan(5);
  });
});

describe('resumption', () => {
  it('a new connection to the same endpoint resumes the TLS 1.3 session (one request per connection)', async () => {
    const m = await mesh(fx);
    const sleep = await m.client('demo', 'sleep', `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: httpbin, namespace: demo }
spec:
  host: httpbin
  trafficPolicy: { connectionPool: { http: { maxRequestsPerConnection: 1 } } }
`);
    for (let i = 0; i < 5; i++) expect((await send(sleep.ports.outbound, { host: 'httpbin', path: '/get' })).status).toBe(200);
    const s = await stats(sleep.ports.admin);
    expect(s.get('cluster_manager.outbound.ssl.handshake')).toBeGreaterThanOrEqual(5);
    expect(s.get('cluster_manager.outbound.ssl.session_reused')).toBeGreaterThanOrEqual(1);
  });
});

describe('rotation', () => {
  it('rotates every certificate under load with no failed request', async () => {
    // 4 s leaves: both sidecars renew about every 2 s while requests keep flowing.
    const m = await mesh(fx, { ttlMs: 4000 });
    const sleep = await m.client('demo', 'sleep');
    m.policies(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: sleep-only, namespace: demo }
spec:
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/demo/sa/sleep"] } }] }]
---
${strict()}`);
    const serialsSeen = new Set<string>();
    const startRotations = m.serverId.stats.rotations;
    let ok = 0;
    let failed = 0;
    const until = performance.now() + 7000;
    const worker = async () => {
      while (performance.now() < until) {
        const r = await send(sleep.ports.outbound, { host: 'httpbin', path: '/get' }).catch(() => ({ status: 0 }));
        if (r.status === 200) ok++; else failed++;
        serialsSeen.add(m.serverId.current.serial);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(20);
    expect(m.serverId.stats.rotations - startRotations).toBeGreaterThanOrEqual(2);
    expect(serialsSeen.size).toBeGreaterThanOrEqual(2);
  }, 30_000);
});

describe('the CA in the control server', () => {
  it('generates its root into --ca-dir on first start and keeps it; signs CSRs for holders of the token only; /certs shows the chain', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-ca-'));
    const cfg = mkdtempSync(join(tmpdir(), 'meshlet-cfg-'));
    const ctl = await startControl({ configDir: cfg, port: 0, apiPort: 0, caDir: dir, token: 'secret', logger: createLogger('silent') });
    fx.add(() => ctl.close());
    expect(existsSync(join(dir, 'ca-key.pem'))).toBe(true);
    const root = readFileSync(join(dir, 'root-cert.pem'), 'utf8');
    const url = `http://127.0.0.1:${ctl.ports.discovery}`;
    await expect(Identity.start({ namespace: 'demo', serviceAccount: 'sleep', source: controlCertSource(url, 'wrong') })).rejects.toThrow(/401/);
    await expect(Identity.start({ namespace: 'Not_A_Name', serviceAccount: 'sleep', source: controlCertSource(url, 'secret') })).rejects.toThrow(/403/);
    const id = await Identity.start({ namespace: 'demo', serviceAccount: 'sleep', source: controlCertSource(url, 'secret') });
    fx.add(async () => id.close());
    expect(id.current.sans).toEqual(['spiffe://cluster.local/ns/demo/sa/sleep']);
    expect(id.current.rootPem.replace(/\s/g, '')).toBe(root.replace(/\s/g, ''));
    const life = id.current.notAfter.getTime() - Date.now();
    expect(life).toBeGreaterThan(23 * 3600_000);
    expect(life).toBeLessThanOrEqual(24 * 3600_000 + 1000);
    // A second start keeps the same root.
    const again = await CertificateAuthority.load(dir);
    expect(again.rootPem).toBe(root);

    const p = await fx.proxy(httpbinEntry(1), { identity: id, namespace: 'demo' });
    const certs = JSON.parse((await send(p.ports.admin, { path: '/certs' })).body);
    const leaf = certs.certificates[0].cert_chain[0];
    expect(leaf.subject_alt_names).toEqual([{ uri: 'spiffe://cluster.local/ns/demo/sa/sleep' }]);
    expect(Number(leaf.days_until_expiration)).toBeGreaterThanOrEqual(0);
    expect(leaf.serial_number).toBe(id.current.serial.toLowerCase());
    expect(certs.certificates[0].ca_cert).toHaveLength(1);
  });

  it('uses the user\'s cacerts (Istio plug-in layout) when given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-cacerts-'));
    const first = await CertificateAuthority.load(dir, { trustDomain: 'example.org' });
    // ca-cert.pem / ca-key.pem / root-cert.pem exist now: loading again is loading the user's.
    const second = await CertificateAuthority.load(dir, { trustDomain: 'example.org' });
    expect(second.rootPem).toBe(first.rootPem);
    const leaf = await second.issueLocal({ namespace: 'a', serviceAccount: 'b' });
    expect(leaf.certChain).toContain('BEGIN CERTIFICATE');
    const { X509Certificate } = await import('node:crypto');
    expect(new X509Certificate(leaf.certChain).verify(new X509Certificate(first.rootPem).publicKey)).toBe(true);
    expect(new X509Certificate(leaf.certChain).subjectAltName).toBe('URI:spiffe://example.org/ns/a/sa/b');
  });
});
