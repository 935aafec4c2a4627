// makeCsr (proxy/identity/identity.ts): the key and CSR come from a child process (csr.ts), so the
// CSR library never loads into the sidecar. The CSR must carry exactly the SPIFFE ID as its URI
// SAN, be signed by the returned key, and each call must make a new key.
import { describe, expect, it } from 'vitest';
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { makeCsr } from '../../proxy/identity/identity.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

describe('makeCsr', () => {
  it('returns a P-256 key and a CSR for the SPIFFE ID, signed by that key; a new key every call', async () => {
    const id = 'spiffe://cluster.local/ns/shop/sa/cart';
    const a = await makeCsr(id);
    const b = await makeCsr(id);
    const csr = new x509.Pkcs10CertificateRequest(a.csrPem);
    expect(await csr.verify()).toBe(true);
    const ext = csr.extensions.find((e) => e.type === '2.5.29.17'); // subjectAltName
    expect(ext).toBeDefined();
    expect(new x509.SubjectAlternativeNameExtension(ext!.rawData).names.toJSON()).toEqual([{ type: 'url', value: id }]);
    const key = createPrivateKey(a.keyPem);
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    // The CSR's public key is the returned private key's.
    const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
    expect(Buffer.from(csr.publicKey.rawData).equals(fromKey)).toBe(true);
    expect(b.keyPem).not.toBe(a.keyPem);
  }, 30_000);

  it('a child that fails is an error with its message, not a hang', async () => {
    await expect(makeCsr('spiffe://x/ns/a/sa/b', 1)).rejects.toThrow(/CSR/);
  });
});
