// https:// with fortio's TLS flags: -k / -https-insecure, -cacert, -cert + -key (mutual TLS),
// against real node:https servers whose CA, server and client certificates are made here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:https';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { run } from './lib.ts';

// Certificates from the openssl CLI (what a fortio user would make them with).
const dir = mkdtempSync(join(tmpdir(), 'meshlet-tls-'));
const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client-key.pem') };
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function makeCerts(): { serverKey: string; serverCert: string; ca: string } {
  ssl('req', '-x509', ...EC, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=meshlet-load-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const leaf = (name: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    ssl('req', ...EC, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', name === 'server' ? '2' : '3', '-days', '1', '-out', `${name}.pem`, '-extfile', `${name}.ext`);
  };
  leaf('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'load-client', 'extendedKeyUsage=clientAuth\n');
  const r = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { serverKey: r('server-key.pem'), serverCert: r('server.pem'), ca: r('ca.pem') };
}

let tlsSrv: Server, mtlsSrv: Server;
let tlsPort = 0, mtlsPort = 0;
const clientNames: string[] = [];
beforeAll(async () => {
  const c = makeCerts();
  const server = { key: c.serverKey, cert: c.serverCert };
  tlsSrv = createServer({ key: server.key, cert: server.cert }, (_q, r) => r.end('tls'));
  mtlsSrv = createServer({ key: server.key, cert: server.cert, ca: c.ca, requestCert: true, rejectUnauthorized: true }, (q, r) => {
    clientNames.push(String((q.socket as TLSSocket).getPeerCertificate().subject.CN));
    r.end('mtls');
  });
  await new Promise<void>((r) => tlsSrv.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => mtlsSrv.listen(0, '127.0.0.1', r));
  tlsPort = (tlsSrv.address() as { port: number }).port;
  mtlsPort = (mtlsSrv.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((r) => tlsSrv.close(r));
  await new Promise((r) => mtlsSrv.close(r));
});

const base = ['load', '-qps', '0', '-n', '2', '-c', '1', '-json', '-'];

describe('https:// (HTTP/1.1 over TLS)', () => {
  it('an unknown CA fails the handshake (Code -1); -k and -https-insecure skip the check; -cacert trusts the CA', async () => {
    const u = `https://127.0.0.1:${tlsPort}/`;
    const [plain, k, longK, cacert, byName] = await Promise.all([
      run([...base, u]),
      run([...base, '-k', u]),
      run([...base, '-https-insecure', u]),
      run([...base, '-cacert', files.ca, u]),
      run([...base, '-cacert', files.ca, `https://localhost:${tlsPort}/`]),
    ]);
    expect(JSON.parse(plain.out).RetCodes).toEqual({ '-1': 2 });
    expect(plain.err).toMatch(/"msg":"Unable to TLS connect","dest":"127\.0\.0\.1:\d+","err":".*(self.signed|unable to (verify|get)|certificate)/i);
    for (const r of [k, longK]) {
      const j = JSON.parse(r.out);
      expect(j.RetCodes).toEqual({ 200: 2 });
      expect(j.Insecure).toBe(true);
    }
    const c = JSON.parse(cacert.out);
    expect(c.RetCodes).toEqual({ 200: 2 });
    expect([c.Insecure, c.CACert]).toEqual([false, files.ca]);
    expect(JSON.parse(byName.out).RetCodes).toEqual({ 200: 2 }); // SNI + hostname check against the SAN
  });
  it('-cert and -key give mutual TLS: refused without them, accepted with them', async () => {
    const u = `https://127.0.0.1:${mtlsPort}/`;
    const [without, withCert] = await Promise.all([
      run([...base, '-cacert', files.ca, u]),
      run([...base, '-cacert', files.ca, '-cert', files.cert, '-key', files.key, u]),
    ]);
    expect(JSON.parse(without.out).RetCodes).toEqual({ '-1': 2 });
    const j = JSON.parse(withCert.out);
    expect(j.RetCodes).toEqual({ 200: 2 });
    expect([j.MTLS, j.Cert, j.Key]).toEqual([true, files.cert, files.key]);
    expect(clientNames).toEqual(['load-client', 'load-client']);
  });
  it('a missing -cacert file aborts with exit 1; meshlet curl -k fetches over TLS', async () => {
    const [missing, curl] = await Promise.all([
      run(['load', '-n', '1', '-cacert', join(dir, 'nope.pem'), `https://127.0.0.1:${tlsPort}/`]),
      run(['curl', '-k', `https://127.0.0.1:${tlsPort}/`]),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('cannot read -cacert');
    expect(curl.code).toBe(0);
    expect(curl.out).toBe('tls');
  });
});
