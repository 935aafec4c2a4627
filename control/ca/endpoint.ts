// POST /v1/certificates on the discovery port (after the server's bearer-token check):
//   { "csr": "<PEM PKCS#10>", "namespace": "demo", "serviceAccount": "sleep", "ttlSeconds": 86400 }
// -> 200 { "certChain": "<PEM leaf + intermediates>", "rootCert": "<PEM>", "notAfter": "<ISO>" }
// 400 for a bad CSR, 403 for an identity the credential does not allow.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, readJson, sendError, sendJson } from '../http.ts';
import { CsrError, type CertificateAuthority } from './ca.ts';
import { grantIdentity, IdentityRefused } from './identity.ts';

/**
 * `reviewed(req)`: the workload a Kubernetes token in the request belongs to (TokenReview), or
 * null when the caller came in with the static bootstrap token (development mode). The server's
 * guard has already let the request in by one of the two.
 */
export type CsrCredentialOf = (req: IncomingMessage) => Promise<{ namespace: string; serviceAccount: string } | null>;

export async function handleCsr(ca: CertificateAuthority, req: IncomingMessage, res: ServerResponse, reviewed: CsrCredentialOf = async () => null): Promise<void> {
  let body: unknown;
  try { body = await readJson(req); } catch (e) { return sendError(res, e instanceof HttpError ? e : new HttpError(400, (e as Error).message)); }
  const b = body as { csr?: unknown; namespace?: unknown; serviceAccount?: unknown; ttlSeconds?: unknown };
  if (typeof b?.csr !== 'string') return sendJson(res, 400, { error: 'csr (PEM) is required' });
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  try {
    const who = await reviewed(req);
    const requested = { namespace: str(b.namespace), serviceAccount: str(b.serviceAccount) };
    const id = grantIdentity(who ? { kind: 'token-review', requested, reviewed: who } : { kind: 'bootstrap', requested });
    const ttl = typeof b.ttlSeconds === 'number' && b.ttlSeconds > 0 ? b.ttlSeconds * 1000 : undefined;
    sendJson(res, 200, await ca.sign(b.csr, id, ttl));
  } catch (e) {
    if (e instanceof IdentityRefused) return sendJson(res, 403, { error: e.message });
    if (e instanceof CsrError) return sendJson(res, 400, { error: e.message });
    throw e;
  }
}
