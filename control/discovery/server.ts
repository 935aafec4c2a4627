// Discovery: state-of-the-world snapshot streaming over HTTP/1.1 (docs/control-protocol.md).
// A proxy POSTs /v1/discovery and keeps the response open; every snapshot is one NDJSON line
// with a fresh nonce. The proxy answers each with POST /v1/ack (ACK, or NACK with error_detail).
// GET /v1/discovery is the long-poll variant for clients that cannot hold a stream.
// Per node we record last sent, last ACK, last NACK (with the error) and last seen.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Snapshot } from '../../proxy/config/schema.ts';
import { HttpError, field, labelsField, readJson, sendError, sendJson } from '../http.ts';
import type { Registry } from '../registry.ts';

export const TYPE_URL = 'meshlet.io/Snapshot/v1';

interface Mark { version: string; nonce: string; at: number }

export interface NodeState {
  id: string;
  service: string;
  labels: Record<string, string>;
  remote: string;
  streams: number;            // open streams (0 = disconnected)
  polls: number;              // long-polls waiting now
  lastPollAt: number;         // when the last long-poll answered (0 = never polled)
  connectedAt: number | null;
  lastSeen: number;
  lastHeard: number;          // last request from the proxy itself (stream, ACK, heartbeat, register)
  lastSent: Mark | null;
  lastAck: Mark | null;
  lastNack: (Mark & { error: string }) | null;  // cleared by a later ACK: the error is history then
  nacks: number;              // NACKs ever received (the history the cleared error leaves)
  staleAcks: number;          // ACK/NACKs whose nonce was not the last one sent
}

// `heartbeating`: the proxy sends POST /v1/heartbeat on this stream, so its silence means it is
// gone even while the TCP connection looks open (a frozen process, a partitioned host).
interface Stream { node: NodeState; res: ServerResponse; busy: boolean; pending: boolean; heartbeating: boolean }

/** A heartbeating proxy silent for this many keepalive periods has its stream closed. */
export const SILENT_PERIODS = 3.5;

export type SyncStatus = 'SYNCED' | 'NACKED' | 'PENDING' | 'NOT_SENT';

export interface NodeView {
  node: string; service: string; labels: Record<string, string>; connected: boolean; remote: string;
  /** DISCONNECTED when no stream is open (nor a long-poll recently): its config state is only what it was. */
  status: SyncStatus | 'DISCONNECTED';
  /** The ACK state of the last push, connected or not (what the proxy ran when last seen). */
  config_status: SyncStatus;
  disconnected_at: string | null;
  sent: { version: string; nonce: string; at: string } | null;
  acked: { version: string; nonce: string; at: string } | null;
  nacked: { version: string; nonce: string; at: string; error: string } | null;
  last_seen: string; stale_acks: number; nacks: number;
}

/**
 * A long-polling proxy holds no stream; it counts as connected while a poll waits and for this
 * long after one answered (the time it takes to ACK and ask again).
 */
export const LONG_POLL_GRACE_MS = 10_000;

const iso = (t: number) => new Date(t).toISOString();

export class Discovery {
  private snapshot: Snapshot | null = null;
  private line: string | null = null;        // the current snapshot serialised once for all streams
  private readonly nodes = new Map<string, NodeState>();
  private readonly streams = new Set<Stream>();
  private readonly waiters = new Set<() => void>();
  private readonly keepalive: NodeJS.Timeout;
  private readonly keepaliveMs: number;
  private nonceSeq = 0;
  private readonly log: Logger;
  private readonly registry: Registry;

  constructor(opts: { log: Logger; keepaliveMs: number; registry: Registry }) {
    this.log = opts.log;
    this.registry = opts.registry;
    // Keepalives let both ends notice a dead peer behind a silent connection.
    this.keepaliveMs = opts.keepaliveMs;
    this.keepalive = setInterval(() => {
      const now = Date.now();
      for (const s of this.streams) {
        // A half-open stream (the proxy frozen or cut off without a FIN) would take the kernel's
        // retransmission timeout (~15 min) to fail; a heartbeating proxy tells us sooner.
        if (s.heartbeating && now - s.node.lastHeard > SILENT_PERIODS * this.keepaliveMs) {
          this.log.warn({ node: s.node.id, silent_ms: now - s.node.lastHeard }, 'proxy stopped heartbeating; closing its stream');
          s.res.destroy();
          continue;
        }
        s.node.lastSeen = now;
        if (!s.busy) s.res.write('{"type":"keepalive"}\n');
      }
    }, opts.keepaliveMs);
    this.keepalive.unref();
  }

  private nonce(): string { return `${(++this.nonceSeq).toString(36)}-${randomBytes(4).toString('hex')}`; }

  private message(nonce: string): string {
    // The snapshot body is serialised once per version; only the nonce differs per proxy.
    return `{"type":"snapshot","type_url":"${TYPE_URL}","version_info":${JSON.stringify(this.snapshot!.version)},"nonce":"${nonce}","resources":[${this.line}]}\n`;
  }

  publish(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.line = JSON.stringify(snapshot);
    for (const s of this.streams) this.push(s);
    for (const w of [...this.waiters]) w();
  }

  /** Send the current snapshot; a slow stream gets only the newest one when it drains. */
  private push(s: Stream): void {
    if (!this.snapshot) return;
    if (s.busy) { s.pending = true; return; }
    const nonce = this.nonce();
    s.node.lastSent = { version: this.snapshot.version, nonce, at: Date.now() };
    if (!s.res.write(this.message(nonce))) {
      s.busy = true;
      s.res.once('drain', () => {
        s.busy = false;
        if (s.pending) { s.pending = false; this.push(s); }
      });
    }
  }

  private nodeFrom(body: Record<string, unknown>, req: IncomingMessage): NodeState {
    const n = body.node;
    if (n === null || typeof n !== 'object' || Array.isArray(n)) throw new HttpError(400, 'field "node" must be an object with an "id"');
    const nb = n as Record<string, unknown>;
    const id = field(nb, 'id');
    if (id.length > 253) throw new HttpError(400, 'node.id is longer than 253 characters');
    const service = nb.service === undefined ? '' : field(nb, 'service');
    const labels = labelsField(nb.labels, 'node.labels');
    let st = this.nodes.get(id);
    if (!st) {
      st = { id, service, labels, remote: '', streams: 0, polls: 0, lastPollAt: 0, connectedAt: null, lastSeen: Date.now(), lastHeard: Date.now(), lastSent: null, lastAck: null, lastNack: null, nacks: 0, staleAcks: 0 };
      this.nodes.set(id, st);
    }
    st.service = service;
    st.labels = labels;
    st.remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    st.lastSeen = Date.now();
    st.lastHeard = st.lastSeen;
    return st;
  }

  /** Routes of the discovery port; returns false for paths it does not own. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    try {
      if (url.pathname === '/v1/discovery' && req.method === 'POST') { await this.stream(req, res); return true; }
      if (url.pathname === '/v1/discovery' && req.method === 'GET') { await this.longPoll(req, res, url); return true; }
      if (url.pathname === '/v1/ack' && req.method === 'POST') { this.ack(await readJson(req), res); return true; }
      if (url.pathname === '/v1/heartbeat' && req.method === 'POST') { this.heartbeat(await readJson(req), res); return true; }
      if (url.pathname === '/v1/register' && req.method === 'POST') { this.register(await readJson(req), req, res); return true; }
      if (url.pathname === '/v1/register' && req.method === 'DELETE') {
        const node = url.searchParams.get('node');
        if (!node) throw new HttpError(400, 'query parameter "node" is required');
        sendJson(res, 200, { removed: this.registry.remove(node) });
        return true;
      }
      if (['/v1/discovery', '/v1/ack', '/v1/heartbeat', '/v1/register'].includes(url.pathname)) throw new HttpError(405, `method ${req.method} not allowed on ${url.pathname}`);
      return false;
    } catch (e) {
      sendError(res, e);
      return true;
    }
  }

  private async stream(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const node = this.nodeFrom(await readJson(req), req);
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', 'x-meshlet-heartbeat-ms': String(this.keepaliveMs) });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, 10_000);
    // One stream per node: a reconnecting proxy's old stream may linger half-open; ACKs must
    // answer the pushes of the stream it now reads.
    for (const o of this.streams) if (o.node === node) o.res.destroy();
    const s: Stream = { node, res, busy: false, pending: false, heartbeating: false };
    this.streams.add(s);
    node.streams++;
    node.connectedAt = Date.now();
    this.log.info({ node: node.id, service: node.service, remote: node.remote }, 'proxy connected');
    res.on('close', () => {
      this.streams.delete(s);
      node.streams--;
      node.lastSeen = Date.now();
      this.log.info({ node: node.id }, 'proxy disconnected');
    });
    this.push(s);
  }

  private async longPoll(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const id = url.searchParams.get('node');
    if (!id) throw new HttpError(400, 'query parameter "node" is required');
    const labels: Record<string, string> = {};
    for (const part of (url.searchParams.get('labels') ?? '').split(',').filter(Boolean)) {
      const [k, ...v] = part.split('=');
      labels[k] = v.join('=');
    }
    const node = this.nodeFrom({ node: { id, labels, ...(url.searchParams.get('service') ? { service: url.searchParams.get('service') } : {}) } }, req);
    const have = url.searchParams.get('version_info') ?? '';
    const waitMs = Math.min(Math.max(Number(url.searchParams.get('wait_ms') ?? 30_000) || 0, 0), 300_000);
    node.polls++;
    if (!this.snapshot || this.snapshot.version === have) {
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(t); this.waiters.delete(done); resolve(); };
        const t = setTimeout(done, waitMs);
        this.waiters.add(done);
        res.on('close', done);
      });
    }
    node.polls--;
    node.lastPollAt = Date.now();
    if (res.destroyed) return;
    node.lastSeen = Date.now();
    if (!this.snapshot || this.snapshot.version === have) { res.writeHead(304).end(); return; }
    const nonce = this.nonce();
    node.lastSent = { version: this.snapshot.version, nonce, at: Date.now() };
    const body = this.message(nonce);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' });
    res.end(body);
  }

  private known(body: Record<string, unknown>): NodeState {
    const n = body.node as Record<string, unknown> | undefined;
    const id = n && typeof n === 'object' ? field(n, 'id') : field({}, 'node.id');
    const node = this.nodes.get(id);
    if (!node) throw new HttpError(409, `unknown node "${id}": open a discovery stream first`);
    node.lastHeard = Date.now();
    return node;
  }

  /** The proxy is alive; from its first heartbeat on, its silence closes its stream. */
  private heartbeat(body: Record<string, unknown>, res: ServerResponse): void {
    const node = this.known(body);
    let streams = 0;
    for (const s of this.streams) if (s.node === node) { s.heartbeating = true; streams++; }
    sendJson(res, streams > 0 ? 200 : 409, streams > 0 ? { status: 'ok' } : { error: `node "${node.id}" has no open discovery stream` });
  }

  private ack(body: Record<string, unknown>, res: ServerResponse): void {
    const node = this.known(body);
    const nonce = field(body, 'response_nonce');
    const version = typeof body.version_info === 'string' ? body.version_info : '';
    const err = body.error_detail as { message?: unknown } | undefined;
    node.lastSeen = Date.now();
    // Only the answer to the newest push counts (xDS semantics): an older nonce was overtaken.
    if (!node.lastSent || node.lastSent.nonce !== nonce) {
      node.staleAcks++;
      sendJson(res, 200, { status: 'stale', expected_nonce: node.lastSent?.nonce ?? null });
      return;
    }
    const at = Date.now();
    if (err !== undefined && err !== null) {
      const message = typeof err === 'object' && typeof err.message === 'string' ? err.message : JSON.stringify(err);
      node.lastNack = { version: node.lastSent.version, nonce, at, error: message.slice(0, 4096) };
      node.nacks++;
      this.log.warn({ node: node.id, version: node.lastSent.version, running: version, error: node.lastNack.error }, 'proxy NACKed snapshot');
      sendJson(res, 200, { status: 'nack' });
      return;
    }
    node.lastAck = { version, nonce, at };
    // The proxy now runs the newest push: an earlier NACK's error no longer describes it (it is
    // still counted in `nacks` and was logged when it came).
    if (node.lastNack) {
      this.log.info({ node: node.id, version, nacked: node.lastNack.version }, 'proxy ACKed a snapshot after a NACK');
      node.lastNack = null;
    }
    sendJson(res, 200, { status: 'ack' });
  }

  private register(body: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): void {
    const node = this.nodeFrom(body, req);
    if (!node.service) throw new HttpError(400, 'field "node.service" is required to register an endpoint');
    const address = field(body, 'address');
    const port = body.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new HttpError(400, 'field "port" must be an integer 1..65535');
    // Registered endpoints become STATIC hosts, and STATIC needs IP addresses (as Istio's
    // ServiceEntry validation): a name would fail every request with ENOTFOUND at the proxies.
    if (isIP(address) === 0) throw new HttpError(400, `field "address" must be an IP address (registered endpoints are STATIC): ${JSON.stringify(address)}`);
    const sa = body.serviceAccount;
    if (sa !== undefined && (typeof sa !== 'string' || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(sa))) throw new HttpError(400, 'field "serviceAccount" must be a service account name');
    this.registry.upsert({ node: node.id, service: node.service, labels: node.labels, address, port, ...(typeof sa === 'string' ? { serviceAccount: sa } : {}) });
    const ttl = this.registry.ttlMs;
    sendJson(res, 200, { ttl_ms: ttl, heartbeat_ms: Math.max(50, Math.floor(ttl / 3)) });
  }

  views(): NodeView[] {
    const out: NodeView[] = [];
    const now = Date.now();
    for (const n of this.nodes.values()) {
      const sent = n.lastSent;
      const sync: SyncStatus = !sent ? 'NOT_SENT'
        : n.lastNack?.nonce === sent.nonce ? 'NACKED'
        : n.lastAck?.nonce === sent.nonce ? 'SYNCED' : 'PENDING';
      const connected = this.connected(n, now);
      out.push({
        node: n.id, service: n.service, labels: n.labels, connected, remote: n.remote,
        status: connected ? sync : 'DISCONNECTED', config_status: sync,
        disconnected_at: connected ? null : iso(n.lastSeen),
        sent: sent ? { version: sent.version, nonce: sent.nonce, at: iso(sent.at) } : null,
        acked: n.lastAck ? { version: n.lastAck.version, nonce: n.lastAck.nonce, at: iso(n.lastAck.at) } : null,
        nacked: n.lastNack ? { version: n.lastNack.version, nonce: n.lastNack.nonce, at: iso(n.lastNack.at), error: n.lastNack.error } : null,
        last_seen: iso(n.streams > 0 ? now : n.lastSeen), stale_acks: n.staleAcks, nacks: n.nacks,
      });
    }
    return out.sort((a, b) => a.node.localeCompare(b.node));
  }

  private connected(n: NodeState, now: number): boolean {
    return n.streams > 0 || n.polls > 0 || (n.lastPollAt > 0 && now - n.lastPollAt < LONG_POLL_GRACE_MS);
  }

  /** Forget disconnected nodes not seen for `maxAgeMs` (bounded memory with churning pods). */
  gc(maxAgeMs: number): void {
    const cutoff = Date.now() - maxAgeMs;
    for (const [id, n] of this.nodes) if (n.streams === 0 && n.polls === 0 && n.lastSeen < cutoff) this.nodes.delete(id);
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const w of [...this.waiters]) w();
    for (const s of this.streams) s.res.destroy();
  }
}
