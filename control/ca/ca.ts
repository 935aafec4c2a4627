// The mesh's certificate authority (Istio's istiod CA / Linkerd's identity controller), in the
// control server. The root is generated on first start and kept in --ca-dir, or is the user's:
// Istio's plug-in `cacerts` layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) is
// used as given. Proxies make their keys themselves and send a CSR; the CA signs a leaf for the
// identity the credential allows (identity.ts), never for what the CSR asks on its own.
// All X.509 work is @peculiar/x509's (no hand-made ASN.1); keys are node:crypto's WebCrypto.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { webcrypto, randomBytes, KeyObject, createPrivateKey } from 'node:crypto';
// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

// node's WebCrypto types (no DOM lib in this project).
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIG = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Leaves are valid from a little before now: clocks of proxies and the CA differ (Linkerd: 20 s skew allowance). */
const SKEW_MS = 60_000;
export const DEFAULT_LEAF_TTL_MS = 24 * 3600_000;
const ROOT_TTL_MS = 10 * 365 * 24 * 3600_000;

export interface IssuedChain {
  /** PEM: the leaf first, then intermediates up to (not including) the root. */
  certChain: string;
  /** PEM of the root(s) to trust. */
  rootCert: string;
  notAfter: string;
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly leafTtlMs: number;
  private readonly cert: x509.X509Certificate;
  private readonly key: CryptoKey;
  /** The signing cert's chain up to the root (cacerts' cert-chain.pem), without the signing cert itself. */
  private readonly chain: string;
  readonly rootPem: string;

  private constructor(cert: x509.X509Certificate, key: CryptoKey, chain: string, rootPem: string, trustDomain: string, leafTtlMs: number) {
    this.cert = cert; this.key = key; this.chain = chain; this.rootPem = rootPem;
    this.trustDomain = trustDomain; this.leafTtlMs = leafTtlMs;
  }

  /**
   * The CA of `dir`: the user's cacerts when ca-cert.pem and ca-key.pem are there, else a root
   * generated now and written there (the key readable by the owner only). No dir: in memory.
   */
  static async load(dir: string | undefined, opts: { trustDomain?: string; leafTtlMs?: number } = {}): Promise<CertificateAuthority> {
    const td = opts.trustDomain ?? 'cluster.local';
    const ttl = opts.leafTtlMs ?? DEFAULT_LEAF_TTL_MS;
    if (dir !== undefined && existsSync(join(dir, 'ca-cert.pem')) && existsSync(join(dir, 'ca-key.pem'))) {
      const read = (f: string) => readFileSync(join(dir, f), 'utf8');
      const cert = new x509.X509Certificate(read('ca-cert.pem'));
      const key = await importKey(read('ca-key.pem'), cert);
      const root = existsSync(join(dir, 'root-cert.pem')) ? read('root-cert.pem') : cert.toString('pem');
      // cert-chain.pem (Istio) is the signing cert followed by its parents: keep only the parents.
      const chainAll = existsSync(join(dir, 'cert-chain.pem')) ? splitPem(read('cert-chain.pem')) : [];
      const parents = chainAll.filter((p) => new x509.X509Certificate(p).serialNumber !== cert.serialNumber && !samePem(p, root));
      return new CertificateAuthority(cert, key, parents.join(''), root, td, ttl);
    }
    const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(), name: `O=${td}, CN=meshlet root CA`,
      notBefore: new Date(Date.now() - SKEW_MS), notAfter: new Date(Date.now() + ROOT_TTL_MS),
      signingAlgorithm: SIG, keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pem = cert.toString('pem');
    if (dir !== undefined) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'ca-key.pem'), keyPem(keys.privateKey), { mode: 0o600 });
      writeFileSync(join(dir, 'ca-cert.pem'), pem);
      writeFileSync(join(dir, 'root-cert.pem'), pem);
    }
    return new CertificateAuthority(cert, keys.privateKey, '', pem, td, ttl);
  }

  /**
   * Sign `csrPem` for `id` (already granted by identity.ts). The CSR's own signature must verify
   * (the caller holds the key); its subject and SANs are ignored: the leaf names only `id`.
   */
  async sign(csrPem: string, id: { namespace: string; serviceAccount: string }, ttlMs = this.leafTtlMs, now = Date.now()): Promise<IssuedChain> {
    let csr: x509.Pkcs10CertificateRequest;
    try { csr = new x509.Pkcs10CertificateRequest(csrPem); } catch (e) { throw new CsrError(`not a PEM PKCS#10 request: ${(e as Error).message}`); }
    if (!(await csr.verify())) throw new CsrError('the CSR signature does not verify');
    const ttl = Math.min(Math.max(ttlMs, 1000), this.leafTtlMs);
    const uri = spiffeId(this.trustDomain, id.namespace, id.serviceAccount);
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial(), subject: '', issuer: this.cert.subjectName,
      notBefore: new Date(now - SKEW_MS), notAfter: new Date(now + ttl),
      signingAlgorithm: SIG, publicKey: csr.publicKey, signingKey: this.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        // Istio's leaves have an empty subject and the identity as a critical URI SAN.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    const signing = samePem(this.cert.toString('pem'), this.rootPem) ? '' : this.cert.toString('pem');
    return { certChain: leaf.toString('pem') + '\n' + signing + this.chain, rootCert: this.rootPem, notAfter: leaf.notAfter.toISOString() };
  }

  /** A leaf for a key made here (tests, benches, the demo's expired-cert case). */
  async issueLocal(id: { namespace: string; serviceAccount: string }, opts: { ttlMs?: number; now?: number } = {}): Promise<IssuedChain & { keyPem: string }> {
    const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']) as CryptoKeyPair;
    const csr = await makeCsr(keys, spiffeId(this.trustDomain, id.namespace, id.serviceAccount));
    const out = await this.sign(csr, id, opts.ttlMs, opts.now);
    return { ...out, keyPem: keyPem(keys.privateKey) };
  }
}

export class CsrError extends Error {}

/** A PKCS#10 request naming `uri` as its SAN. */
export async function makeCsr(keys: CryptoKeyPair, uri: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: SIG,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }])],
  });
  return csr.toString('pem');
}

export function keyPem(k: CryptoKey): string {
  return KeyObject.from(k).export({ type: 'pkcs8', format: 'pem' }) as string;
}

async function importKey(pem: string, cert: x509.X509Certificate): Promise<CryptoKey> {
  const ko = createPrivateKey(pem);
  const der = ko.export({ type: 'pkcs8', format: 'der' });
  const alg = cert.publicKey.algorithm as { name: string; namedCurve?: string };
  if (alg.name === 'ECDSA') return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: alg.namedCurve ?? 'P-256' }, false, ['sign']);
  throw new Error(`ca-key.pem: only ECDSA CA keys are supported (got ${alg.name})`);
}

function serial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return b.toString('hex');
}

export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/g) ?? [];
}

function samePem(a: string, b: string): boolean {
  return a.replace(/\s+/g, '') === b.replace(/\s+/g, '');
}
