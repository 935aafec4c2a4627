// A small mesh on loopback for the security tests: a real CA (control/ca), real sidecars with
// workload identities, a real httpbin-like app behind the server sidecar.
import { CertificateAuthority } from '../../control/ca/ca.ts';
import { grantIdentity } from '../../control/ca/identity.ts';
import { Identity, type CertSource } from '../../proxy/identity/identity.ts';
import { echo, Fixtures, snapshotFromYaml } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

export function caSource(ca: CertificateAuthority): CertSource {
  return async (csr, who) => ca.sign(csr, grantIdentity({ kind: 'bootstrap', requested: who }), who.ttlSeconds ? who.ttlSeconds * 1000 : undefined);
}

export async function identity(ca: CertificateAuthority, namespace: string, serviceAccount: string, ttlMs?: number): Promise<Identity> {
  return Identity.start({ namespace, serviceAccount, source: caSource(ca), ttlMs });
}

/** The httpbin ServiceEntry (namespace demo) whose one endpoint is the server sidecar's inbound port. */
export function httpbinEntry(inboundPort: number, opts: { tlsMode?: string; serviceAccount?: string } = {}): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: httpbin, namespace: demo }
spec:
  hosts: [httpbin]
  ports: [{ number: 8000, name: http }]
  endpoints:
  - address: 127.0.0.1
    ports: { http: ${inboundPort} }
    serviceAccount: ${opts.serviceAccount ?? 'httpbin'}
    labels: { app: httpbin, security.istio.io/tlsMode: ${opts.tlsMode ?? 'istio'} }
`;
}

export interface Mesh {
  ca: CertificateAuthority;
  app: { port: number; hits: number };
  server: RunningProxy;
  serverId: Identity;
  /** A client sidecar with `ns/sa` whose outbound listener reaches httpbin. */
  client(ns: string, sa: string, extraYaml?: string): Promise<RunningProxy>;
  /** Apply policies (YAML) to the server sidecar. */
  policies(yaml: string): void;
}

export async function mesh(fx: Fixtures, opts: { serverYaml?: string; ttlMs?: number } = {}): Promise<Mesh> {
  const ca = await CertificateAuthority.load(undefined, { leafTtlMs: opts.ttlMs });
  const app = await fx.upstream(echo('httpbin'));
  const serverId = await identity(ca, 'demo', 'httpbin', opts.ttlMs);
  fx.add(async () => serverId.close());
  const base = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: local, namespace: demo }
spec:
  hosts: [local]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${app.port} } }]
`;
  const server = await fx.proxy(base + (opts.serverYaml ? `---\n${opts.serverYaml}` : ''), {
    appPort: app.port, namespace: 'demo', serviceAccount: 'httpbin', labels: { app: 'httpbin' }, identity: serverId, service: 'httpbin',
  });
  let version = 1;
  return {
    ca, app, server, serverId,
    async client(ns, sa, extraYaml = '') {
      const id = await identity(ca, ns, sa, opts.ttlMs);
      fx.add(async () => id.close());
      return fx.proxy(httpbinEntry(server.ports.inbound) + extraYaml, { namespace: ns, serviceAccount: sa, identity: id, service: sa });
    },
    policies(yaml) {
      server.apply(snapshotFromYaml(base + (yaml ? `---\n${yaml}` : ''), String(++version)));
    },
  };
}
