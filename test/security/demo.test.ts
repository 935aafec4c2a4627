// The zero-trust demo end to end (examples/zero-trust, what docs/security.md walks through): real
// `meshlet control` with its CA and real `meshlet proxy` children with identities from it; the
// steps copied into the watched directory give the seed's answers; `meshlet ctl authz check`
// explains them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startZeroTrust, STEPS, type ZeroTrust } from '../../examples/zero-trust/run.ts';
import { call } from '../../examples/lib/app.ts';
import { ctlRun, waitFor } from '../control/lib.ts';
import { send } from '../helpers.ts';

let z: ZeroTrust;
beforeAll(async () => { z = await startZeroTrust(); }, 60_000);
afterAll(() => z?.stop());

const get = (port: number, path = '/get', headers: Record<string, string> = {}) => call(port, 'httpbin.demo', path, headers);
const step = (file: string, as = 'authz.yaml') => copyFileSync(join(STEPS, file), join(z.configDir, as));
/** Poll (bounded) until the answer for `f` is `status`: the control server pushes after a debounce. */
const until = (what: string, f: () => Promise<{ status: number; body: string }>, status: number) =>
  waitFor(what, async () => { const r = await f(); return r.status === status ? r : undefined; }, 15_000);

describe('examples/zero-trust', () => {
  it('the CA root is kept in --ca-dir; sidecars hold SPIFFE identities (/certs)', async () => {
    expect(existsSync(join(z.caDir, 'root-cert.pem'))).toBe(true);
    const certs = JSON.parse((await send(z.httpbin.ports.admin, { path: '/certs' })).body);
    expect(certs.certificates[0].cert_chain[0].subject_alt_names).toEqual([{ uri: 'spiffe://cluster.local/ns/demo/sa/httpbin' }]);
  });

  it('walks the seed: STRICT mTLS, deny-all, principal, GET /get, header', async () => {
    expect((await get(z.sleep.ports.outbound)).status).toBe(200);
    step('0-strict.yaml', '0-strict.yaml');
    // Plaintext straight to httpbin's sidecar is refused once STRICT is in force; sidecars still talk.
    await waitFor('STRICT applied', async () => (await send(z.httpbin.ports.inbound, { host: 'httpbin' }).then(() => false, () => true)), 15_000);
    expect((await get(z.sleep.ports.outbound)).status).toBe(200);

    step('1-deny-all.yaml');
    const denied = await until('deny-all', () => get(z.sleep.ports.outbound), 403);
    expect(denied.body).toBe('RBAC: access denied');
    expect((await get(z.otherSleep.ports.outbound)).status).toBe(403);

    step('2-allow-sleep.yaml');
    await until('allow sleep', () => get(z.sleep.ports.outbound), 200);
    expect((await get(z.otherSleep.ports.outbound)).status).toBe(403);

    step('3-get-only.yaml');
    await until('get only', () => get(z.sleep.ports.outbound, '/ip'), 403);
    expect((await get(z.sleep.ports.outbound, '/get')).status).toBe(200);

    step('4-token.yaml');
    await until('token', () => get(z.sleep.ports.outbound, '/get'), 403);
    expect((await get(z.sleep.ports.outbound, '/get', { 'x-rfma-token': 'test1' })).status).toBe(200);
    expect((await get(z.sleep.ports.outbound, '/get', { 'x-rfma-token': 'prod' })).status).toBe(403);
  }, 90_000);

  it('meshlet ctl authz check says allow or deny and which policy decided', async () => {
    const server = ['--server', `127.0.0.1:${z.api}`];
    const allow = await ctlRun([...server, 'authz', 'check', '--to', 'httpbin.demo', '--from-principal', 'cluster.local/ns/demo/sa/sleep', '--path', '/get', '--header', 'x-rfma-token=test9']);
    expect(allow.stderr).toBe('');
    expect(allow.stdout).toMatch(/^ALLOW  httpbin\.demo\.svc\.cluster\.local \(demo\/app=httpbin,version=v1\): allowed by ALLOW policy demo\/httpbin, rule 0/m);
    expect(allow.code).toBe(0);
    const deny = await ctlRun([...server, 'authz', 'check', '--to', 'httpbin.demo', '--from-principal', 'cluster.local/ns/other/sa/sleep', '--path', '/get']);
    expect(deny.stdout).toMatch(/^DENY  .*no ALLOW policy matched \(demo\/httpbin apply\)/m);
    expect(deny.code).toBe(3);
    const bad = await ctlRun([...server, 'authz', 'check', '--to', 'nothing']);
    expect(bad.stderr).toContain('no service "nothing"');
  }, 30_000);
});
