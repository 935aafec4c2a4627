// A new P-256 key and a PKCS#10 CSR for one SPIFFE ID, made with @peculiar/x509. identity.ts runs
// this file as a short-lived child process (makeCsr): loaded into the sidecar, the library and its
// ASN.1 schema stack would hold ~16 MB of RSS for work done once per rotation (every 12 h by
// default). A worker thread does not give that memory back (the sidecar measured 11 MB more
// private RSS with one, not less); a process exit does.
import { webcrypto, KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface KeyAndCsr { keyPem: string; csrPem: string }

export async function keyAndCsr(spiffeId: string): Promise<KeyAndCsr> {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { keyPem, csrPem: csr.toString('pem') };
}

// As a process (`node csr.ts <spiffe-id>`): one JSON answer on stdout, then exit.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  keyAndCsr(process.argv[2] ?? '').then(
    (r) => { process.stdout.write(JSON.stringify(r)); },
    (e: unknown) => { process.stderr.write(e instanceof Error ? e.message : String(e)); process.exitCode = 1; },
  );
}
