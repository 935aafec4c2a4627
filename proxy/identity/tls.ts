// Mutual TLS between sidecars: the inbound side (termination, PeerAuthentication, first-bytes
// detection) and the outbound side (origination to endpoints with a sidecar, server identity
// verified against the destination's service account, Istio's subjectAltNames).
import { connect as netConnect, type Socket } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { ConnPeer } from '../engine/server.ts';
import type { Connector } from '../upstream/pool.ts';
import type { ClusterSpec, EndpointSpec, Snapshot } from '../config/schema.ts';
import { tls as nodeTls, type Identity } from './identity.ts';
import { selects, ROOT_NAMESPACE, type AuthzPolicyEntry } from '../filters/authz/policy.ts';

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** How long the inbound side waits for a connection's first bytes to tell TLS from plaintext. */
const DETECT_TIMEOUT_MS = 10_000;

/**
 * Istio's effective PeerAuthentication for a workload port: the workload policy (selector
 * matching; its portLevelMtls for this port first), else the namespace's (no selector), else the
 * mesh's (root namespace, no selector); UNSET inherits from the next level; nothing set = PERMISSIVE.
 * Several at one level: the first by name (Istio: the oldest).
 */
export function peerAuthMode(sec: Snapshot['security'], namespace: string, labels: Record<string, string>, port: number): MtlsMode {
  if (!sec) return 'PERMISSIVE';
  const root = sec.rootNamespace || ROOT_NAMESPACE;
  const all = [...sec.peerAuthentications].sort((a, b) => a.name.localeCompare(b.name));
  const workload = all.find((p) => p.namespace === namespace && p.spec.selector?.matchLabels && selects(p as unknown as AuthzPolicyEntry, namespace, labels, root));
  const ns = all.find((p) => p.namespace === namespace && !p.spec.selector);
  const mesh = all.find((p) => p.namespace === root && !p.spec.selector);
  const chain = [workload?.spec.portLevelMtls?.[String(port)]?.mode, workload?.spec.mtls?.mode, ns?.spec.mtls?.mode, mesh?.spec.mtls?.mode];
  for (const m of chain) if (m !== undefined && m !== 'UNSET') return m;
  return 'PERMISSIVE';
}

export interface InboundTlsStats {
  'ssl.handshake': number;
  'ssl.connection_error': number;
  /** Plaintext refused by STRICT. */
  'ssl.plaintext_refused': number;
  'ssl.no_certificate': number;
}

/**
 * The inbound listener's accept hook (engine ServerOptions.accept). Reads the first bytes: a TLS
 * ClientHello (0x16) is terminated with the workload certificate, the client's certificate
 * required and verified against the mesh root (TLS 1.3, ALPN http/1.1); anything else is
 * plaintext, refused under STRICT. DISABLE serves plaintext only (TLS bytes then fail as HTTP).
 */
export function inboundAccept(identity: () => Identity | null, mode: () => MtlsMode, stats: InboundTlsStats) {
  let server: ReturnType<typeof import('node:tls').createServer> | null = null;
  let serverFor: Identity | null = null;
  const ready = new WeakMap<Socket, (s: Socket, peer: ConnPeer | null) => void>();
  const tlsServer = (id: Identity) => {
    if (server !== null && serverFor === id) return server;
    serverFor = id;
    const cur = id.current;
    server = nodeTls().createServer({
      key: cur.keyPem, cert: cur.chainPem, ca: cur.rootPem, requestCert: true, rejectUnauthorized: true,
      minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'], handshakeTimeout: 10_000,
    }, (t) => {
      stats['ssl.handshake']++;
      const cb = ready.get((t as unknown as { _parent?: Socket })._parent ?? t);
      const pc = t.getPeerCertificate();
      const peer: ConnPeer = {
        identity: uriSan(pc), sni: (t as TLSSocket & { servername?: string | false }).servername || null, localIdentity: id.spiffeId,
        certHash: pc?.raw ? createHash('sha256').update(pc.raw).digest('hex') : undefined,
      };
      if (peer.identity === null) { stats['ssl.no_certificate']++; t.destroy(); return; }
      (cb ?? (() => t.destroy()))(t, peer);
    });
    server.on('tlsClientError', () => { stats['ssl.connection_error']++; });
    // A rotation changes the certificate for new handshakes; connections open keep theirs.
    const s = server;
    id.onRotate(() => { const c = id.current; s.setSecureContext({ key: c.keyPem, cert: c.chainPem, ca: c.rootPem, minVersion: 'TLSv1.3' }); });
    return server;
  };
  return (socket: Socket, done: (s: Socket, peer: ConnPeer | null) => void): void => {
    const m = mode();
    const id = identity();
    if (m === 'DISABLE' || (id === null && m !== 'STRICT')) { done(socket, null); return; }
    if (id === null) { stats['ssl.plaintext_refused']++; socket.destroy(); return; }
    // Nothing sent within the detection timeout: STRICT closes; otherwise it is served as
    // plaintext (Istio: continue_on_listener_filters_timeout), the engine's idle timeout applies.
    const onFirst = (first: Buffer) => {
      clearTimeout(timer);
      socket.pause();
      socket.unshift(first);
      if (first[0] !== 0x16) {
        if (m === 'STRICT') { stats['ssl.plaintext_refused']++; socket.destroy(); return; }
        done(socket, null);
        socket.resume();
        return;
      }
      ready.set(socket, done);
      tlsServer(id).emit('connection', socket);
    };
    const timer = setTimeout(() => {
      socket.off('data', onFirst);
      if (m === 'STRICT') { socket.destroy(); return; }
      done(socket, null);
    }, DETECT_TIMEOUT_MS);
    socket.once('close', () => clearTimeout(timer));
    socket.once('data', onFirst);
  };
}

/** `spiffe://…` from a peer certificate's URI SANs, or null. */
export function uriSan(c: PeerCertificate | null | undefined): string | null {
  const alt = c?.subjectaltname;
  if (!alt) return null;
  for (const part of alt.split(', ')) if (part.startsWith('URI:spiffe://')) return part.slice(4);
  return null;
}

export interface OutboundTlsStats {
  'ssl.handshake': number;
  'ssl.fail_verify_san': number;
  'ssl.session_reused': number;
}

/**
 * The upstream connect hook for one endpoint of a cluster: plaintext, ISTIO_MUTUAL (auto mTLS
 * when the endpoint has a sidecar and the DestinationRule sets no tls), SIMPLE or MUTUAL.
 * Returns undefined for plaintext (the pool's own net.connect).
 */
export function outboundConnector(identity: () => Identity | null, cluster: ClusterSpec, ep: EndpointSpec, stats: OutboundTlsStats): Connector | undefined {
  const tls = cluster.tls;
  const mode = tls?.mode ?? (ep.tlsMode === 'istio' ? 'ISTIO_MUTUAL' : 'DISABLE');
  if (mode === 'DISABLE') return undefined;
  let sessions: Buffer | undefined;
  const want = tls?.subjectAltNames && tls.subjectAltNames.length > 0
    ? tls.subjectAltNames
    : mode === 'ISTIO_MUTUAL' && ep.serviceAccount
      ? [`spiffe://${identity()?.trustDomain ?? 'cluster.local'}/ns/${ep.namespace ?? 'default'}/sa/${ep.serviceAccount}`]
      : null;
  let userCtx: ReturnType<typeof import('node:tls').createSecureContext> | null = null;
  if (mode === 'SIMPLE' || mode === 'MUTUAL') {
    userCtx = nodeTls().createSecureContext({
      ...(tls?.caCertificates ? { ca: readFileSync(tls.caCertificates) } : {}),
      ...(mode === 'MUTUAL' && tls?.clientCertificate ? { cert: readFileSync(tls.clientCertificate) } : {}),
      ...(mode === 'MUTUAL' && tls?.privateKey ? { key: readFileSync(tls.privateKey) } : {}),
    });
  }
  // Istio's SNI for sidecar-to-sidecar: outbound_.<port>_.<subset>_.<host>.
  const sni = tls?.sni ?? (mode === 'ISTIO_MUTUAL' ? `outbound_.${cluster.port}_.${cluster.subset}_.${cluster.service}` : (isIpLike(cluster.service) ? undefined : cluster.service));
  return (host: string, port: number) => {
    const id = identity();
    if (mode === 'ISTIO_MUTUAL' && id === null) {
      // No workload certificate: an mTLS endpoint cannot be reached (never silently plaintext).
      const s = netConnect({ host: '0.0.0.0', port: 0 });
      process.nextTick(() => s.destroy(new Error('no workload certificate for ISTIO_MUTUAL')));
      return { socket: s, ready: 'secureConnect' };
    }
    const sock = nodeTls().connect({
      host, port, servername: sni, ALPNProtocols: ['http/1.1'], session: sessions,
      secureContext: mode === 'ISTIO_MUTUAL' ? id!.clientContext() : userCtx!,
      minVersion: mode === 'ISTIO_MUTUAL' ? 'TLSv1.3' : 'TLSv1.2',
      rejectUnauthorized: !(tls?.insecureSkipVerify ?? false),
      checkServerIdentity: (h, cert) => {
        const err = checkIdentity(mode, want, h, cert, sni);
        if (err) stats['ssl.fail_verify_san']++;
        return err;
      },
    });
    sock.on('session', (s: Buffer) => { sessions = s; });
    sock.once('secureConnect', () => { stats['ssl.handshake']++; if (sock.isSessionReused()) stats['ssl.session_reused']++; });
    return { socket: sock, ready: 'secureConnect' };
  };
}

function checkIdentity(mode: string, want: string[] | null, _host: string, cert: PeerCertificate, sni: string | undefined): Error | undefined {
  const alt = cert.subjectaltname ?? '';
  const names = alt.split(', ').map((p) => p.replace(/^(URI|DNS|IP Address):/, ''));
  if (want !== null) {
    if (want.some((w) => names.includes(w))) return undefined;
    return new Error(`server identity ${names.join(', ') || '(none)'} is not ${want.join(' or ')}`);
  }
  if (mode === 'ISTIO_MUTUAL') return uriSan(cert) !== null ? undefined : new Error('the server certificate has no SPIFFE identity');
  // SIMPLE / MUTUAL without subjectAltNames: the host name, as any TLS client.
  if (sni && !names.some((n) => n === sni || (n.startsWith('*.') && sni.endsWith(n.slice(1)) && !sni.slice(0, -n.length + 1).includes('.')))) {
    return new Error(`server certificate does not name ${sni}`);
  }
  return undefined;
}

function isIpLike(h: string): boolean { return /^[\d.]+$/.test(h) || h.includes(':'); }
