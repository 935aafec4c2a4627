// Admin /certs in Envoy's shape ({"certificates":[{"ca_cert":[…],"cert_chain":[…]}]}): each
// certificate's serial, SANs, validity and days until expiration, so an operator sees which
// identity the sidecar holds and when it rotates.
import { X509Certificate } from 'node:crypto';
import type { ServerRequest, ServerResponse } from '../engine/server.ts';
import type { Identity } from './identity.ts';

type Extra = (req: ServerRequest, res: ServerResponse, url: URL) => boolean;

function describe(pem: string, path: string): Record<string, unknown> {
  const c = new X509Certificate(pem);
  const sans = (c.subjectAltName ?? '').split(', ').filter(Boolean).map((s) => {
    const i = s.indexOf(':');
    const kind = s.slice(0, i);
    return kind === 'URI' ? { uri: s.slice(i + 1) } : kind === 'DNS' ? { dns: s.slice(i + 1) } : { ip_address: s.slice(i + 1) };
  });
  const to = new Date(c.validTo);
  return {
    path, serial_number: c.serialNumber.toLowerCase(), subject_alt_names: sans, subject: c.subject || '',
    days_until_expiration: String(Math.max(0, Math.floor((to.getTime() - Date.now()) / 86_400_000))),
    valid_from: new Date(c.validFrom).toISOString(), expiration_time: to.toISOString(),
  };
}

export function certsView(id: Identity | null): { certificates: Array<Record<string, unknown>> } {
  if (id === null) return { certificates: [] };
  const cur = id.current;
  const chain = cur.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const roots = cur.rootPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return {
    certificates: [{
      ca_cert: roots.map((p) => describe(p, '<inline: mesh root>')),
      cert_chain: chain.map((p, i) => describe(p, i === 0 ? `<inline: ${id.spiffeId}>` : '<inline: intermediate>')),
    }],
  };
}

export function certsHandler(identity: () => Identity | null, next: Extra): Extra {
  return (req, res, url) => {
    if (url.pathname !== '/certs') return next(req, res, url);
    const body = JSON.stringify(certsView(identity()), null, 2);
    res.writeHead(200, undefined, ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))]);
    res.end(body);
    return true;
  };
}
