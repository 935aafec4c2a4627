// RequestAuthentication on real sockets: a valid token passes and names the request principal,
// an invalid one is 401 `Jwt verification fails`, an expired one 401 `Jwt is expired`, a missing
// one passes with no identity (and an AuthorizationPolicy on requestPrincipals then denies it);
// jwks inline and jwksUri (fetched once, cached), fromHeaders / fromParams, forwardOriginalToken,
// outputClaimToHeaders.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
import { Fixtures, send } from '../helpers.ts';
import { mesh, type Mesh } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const ISS = 'https://issuer.example';
let m: Mesh;
let priv: CryptoKey;
let otherPriv: CryptoKey;
let jwks: string;
let jwksHits = 0;
let jwksUrl = '';

beforeAll(async () => {
  const kp = await generateKeyPair('ES256');
  priv = kp.privateKey;
  otherPriv = (await generateKeyPair('ES256')).privateKey;
  const pub = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  jwks = JSON.stringify({ keys: [pub] });
  const srv = await fx.upstream((_q, r) => { jwksHits++; r.setHeader('content-type', 'application/json'); r.end(jwks); });
  jwksUrl = `http://127.0.0.1:${srv.port}/jwks.json`;
  m = await mesh(fx);
}, 30_000);

const token = (claims: Record<string, unknown> = {}, opts: { key?: CryptoKey; exp?: string | number; iss?: string } = {}) =>
  new SignJWT({ ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(opts.iss ?? ISS).setSubject('user-1')
    .setAudience('httpbin').setIssuedAt().setExpirationTime(opts.exp ?? '1h').sign(opts.key ?? priv);

const ra = (rule: string) => `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: demo }
spec:
  selector: { matchLabels: { app: httpbin } }
  jwtRules:
  - issuer: "${ISS}"
${rule}
`;

const call = (headers: Record<string, string> = {}, path = '/get') => send(m.server.ports.inbound, { host: 'httpbin', path, headers });

describe('RequestAuthentication', () => {
  it('valid passes (token not forwarded, claims copied to headers); invalid 401; expired 401; missing passes', async () => {
    m.policies(ra(`    jwks: '${jwks}'
    outputClaimToHeaders: [{ header: x-jwt-group, claim: group }]`));
    const ok = await call({ authorization: `Bearer ${await token({ group: 'admins' })}` });
    expect(ok.status).toBe(200);
    const seen = JSON.parse(ok.body).headers;
    expect(seen.authorization).toBeUndefined();
    expect(seen['x-jwt-group']).toBe('admins');

    const forged = await call({ authorization: `Bearer ${await token({}, { key: otherPriv })}` });
    expect(forged.status).toBe(401);
    expect(forged.body).toBe('Jwt verification fails');
    expect(forged.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    expect((await call({ authorization: 'Bearer not.a.jwt' })).body).toBe('Jwt verification fails');

    const expired = await call({ authorization: `Bearer ${await token({}, { exp: Math.floor(Date.now() / 1000) - 3600 })}` });
    expect(expired.status).toBe(401);
    expect(expired.body).toBe('Jwt is expired');

    expect((await call({ authorization: `Bearer ${await token({}, { iss: 'https://other' })}` })).body).toBe('Jwt issuer is not configured');
    expect((await call()).status).toBe(200);
  });

  it('a missing token is denied once an AuthorizationPolicy wants a request principal', async () => {
    m.policies(ra(`    jwks: '${jwks}'`) + `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: require-jwt, namespace: demo }
spec:
  selector: { matchLabels: { app: httpbin } }
  rules:
  - from: [{ source: { requestPrincipals: ["${ISS}/user-1"] } }]
    when: [{ key: "request.auth.claims[group]", values: ["admins"] }]
`);
    const missing = await call();
    expect(missing.status).toBe(403);
    expect(missing.body).toBe('RBAC: access denied');
    expect((await call({ authorization: `Bearer ${await token({ group: 'admins' })}` })).status).toBe(200);
    expect((await call({ authorization: `Bearer ${await token({ group: 'users' })}` })).status).toBe(403);
  });

  it('jwksUri: fetched once and cached; fromHeaders with a prefix, fromParams; audiences checked; forwardOriginalToken', async () => {
    m.policies(ra(`    jwksUri: "${jwksUrl}"
    audiences: [httpbin]
    forwardOriginalToken: true
    fromHeaders: [{ name: x-token, prefix: "Token " }]
    fromParams: [tok]`));
    const t = await token();
    const before = jwksHits;
    for (let i = 0; i < 3; i++) {
      const r = await call({ 'x-token': `Token ${t}` });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).headers['x-token']).toBe(`Token ${t}`);
    }
    expect((await call({}, `/get?tok=${t}`)).status).toBe(200);
    expect(jwksHits - before).toBe(1);
    const wrongAud = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISS).setSubject('u').setAudience('other').setExpirationTime('1h').sign(priv);
    const r = await call({ 'x-token': `Token ${wrongAud}` });
    expect(r.status).toBe(401);
    expect(r.body).toBe('Audiences in Jwt are not allowed');
    // The default location (Authorization: Bearer) is not read when fromHeaders is set.
    expect((await call({ authorization: `Bearer ${wrongAud}` })).status).toBe(200);
  });

  it('several rules: the token is checked by the rule of its issuer', async () => {
    const second = await generateKeyPair('ES256');
    const jwks2 = JSON.stringify({ keys: [{ ...(await exportJWK(second.publicKey)), kid: 'k1', alg: 'ES256' }] });
    m.policies(ra(`    jwks: '${jwks}'
  - issuer: "https://second.example"
    jwks: '${jwks2}'`));
    const t2 = await token({}, { iss: 'https://second.example', key: second.privateKey });
    expect((await call({ authorization: `Bearer ${t2}` })).status).toBe(200);
    expect((await call({ authorization: `Bearer ${await token()}` })).status).toBe(200);
    // The first issuer's claim signed with the second issuer's key: refused.
    expect((await call({ authorization: `Bearer ${await token({}, { key: second.privateKey })}` })).body).toBe('Jwt verification fails');
  });
});
