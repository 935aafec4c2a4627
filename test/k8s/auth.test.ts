// The control server under --kubernetes authenticates sidecars by TokenReview of their projected
// service-account token (audience meshlet-control): no token, a wrong token, or a token for
// another audience is refused (401); a valid one gets config. The ops API takes only its static
// token. The fake API server answers TokenReview as kube-apiserver does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeApiServer } from './fake-apiserver.ts';
import { controlFor, kubeConfigFor, proxyIn } from './lib.ts';
import { httpJson } from '../control/lib.ts';
import { waitLong as waitFor } from './lib.ts';
import type { RunningControl } from '../../control/main.ts';
import { serviceAccountOf, tokenReviewAuthenticator } from '../../control/kubernetes/token-review.ts';
import { webcrypto, X509Certificate } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

/** A PEM CSR for `spiffeId` (what a sidecar sends the CA). */
async function csrFor(spiffeId: string): Promise<string> {
  x509.cryptoProvider.set(webcrypto as never);
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: keys as never, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  return csr.toString('pem');
}

let api: FakeApiServer;
let control: RunningControl;
const OPS = 'ops-token-for-test';

beforeAll(async () => {
  api = await FakeApiServer.start();
  api.addToken('good', { namespace: 'bookinfo', serviceAccount: 'reviews', audiences: ['meshlet-control'], podName: 'reviews-v1-abc' });
  api.addToken('other-audience', { namespace: 'bookinfo', serviceAccount: 'reviews', audiences: ['https://kubernetes.default.svc'] });
  control = await controlFor(api, {}, { token: OPS });
}, 60_000);
afterAll(async () => { await control?.close(); await api?.close(); });

describe('sidecar authentication by TokenReview', () => {
  it('the authenticator returns the workload for a valid token and null otherwise', async () => {
    const authn = tokenReviewAuthenticator(kubeConfigFor(api), { cacheMs: 0 });
    expect(await authn('good')).toEqual({ namespace: 'bookinfo', serviceAccount: 'reviews', podName: 'reviews-v1-abc' });
    expect(await authn('other-audience')).toBeNull();
    expect(await authn('forged')).toBeNull();
    expect(await authn('')).toBeNull();
    expect(serviceAccountOf('system:serviceaccount:ns:sa')).toEqual({ namespace: 'ns', serviceAccount: 'sa' });
    expect(serviceAccountOf('admin')).toBeNull();
    expect(api.requests.filter((r) => r.startsWith('POST /apis/authentication.k8s.io/v1/tokenreviews')).length).toBeGreaterThanOrEqual(3);
  });

  it('the discovery port refuses a sidecar without a valid token and serves one with it', async () => {
    const port = control.ports.discovery;
    expect((await httpJson(port, 'GET', '/v1/discovery?node=x&timeout=0')).status).toBe(401);
    expect((await httpJson(port, 'GET', '/v1/discovery?node=x&timeout=0', undefined, 'forged')).status).toBe(401);
    expect((await httpJson(port, 'GET', '/v1/discovery?node=x&timeout=0', undefined, 'other-audience')).status).toBe(401);
    const ok = await httpJson(port, 'POST', '/v1/heartbeat', { node: 'x' }, 'good');
    expect(ok.status).not.toBe(401);
    // The static ops token still works on the discovery port (outside Kubernetes), and a
    // workload token does not open the ops API.
    expect((await httpJson(port, 'POST', '/v1/heartbeat', { node: 'x' }, OPS)).status).not.toBe(401);
    expect((await httpJson(control.ports.api, 'GET', '/v1/config', undefined, 'good')).status).toBe(401);
    expect((await httpJson(control.ports.api, 'GET', '/v1/config', undefined, OPS)).status).toBe(200);
  });

  it('a real proxy with its pod token gets a snapshot; one without stays not ready', async () => {
    const good = await proxyIn(control, 'bookinfo', 'with-token', api);
    const bad = await proxyIn(control, 'bookinfo', 'no-token');
    try {
      await waitFor('snapshot applied', async () => (await httpJson(good.proxy.ports.admin, 'GET', '/ready')).status === 200, 15_000);
      await new Promise((r) => setTimeout(r, 500));
      expect((await httpJson(bad.proxy.ports.admin, 'GET', '/ready')).status).toBe(503);
    } finally {
      await good.stop(); await bad.stop();
    }
  });

  it('a workload token gets a certificate for its own identity only; the static token is development mode', async () => {
    const port = control.ports.discovery;
    const ask = (ns: string, sa: string, token?: string) => csrFor(`spiffe://cluster.local/ns/${ns}/sa/${sa}`)
      .then((csr) => httpJson(port, 'POST', '/v1/certificates', { csr, namespace: ns, serviceAccount: sa }, token));
    const own = await ask('bookinfo', 'reviews', 'good');
    expect(own.status).toBe(200);
    expect(new X509Certificate(own.json.certChain).subjectAltName).toContain('URI:spiffe://cluster.local/ns/bookinfo/sa/reviews');
    // The reviewed token belongs to bookinfo/reviews: another identity is refused, named.
    const other = await ask('bookinfo', 'productpage', 'good');
    expect(other.status).toBe(403);
    expect(other.json.error).toContain('bookinfo/reviews');
    expect((await ask('bookinfo', 'reviews', 'forged')).status).toBe(401);
    expect((await ask('bookinfo', 'reviews')).status).toBe(401);
    // The static token (outside Kubernetes: --namespace/--service-account) may name any identity.
    expect((await ask('demo', 'sleep', OPS)).status).toBe(200);
  });
});
