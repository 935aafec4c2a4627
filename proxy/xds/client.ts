// The proxy's side of the discovery protocol (docs/control-protocol.md): one long-lived
// POST /v1/discovery whose response is NDJSON, one line per snapshot. Each snapshot is checked
// (validate-snapshot.ts), applied with proxy.apply() — atomic; in-flight requests keep the old
// runtime; unchanged clusters keep their pools and outlier state — and answered with an ACK, or
// a NACK carrying the error while the old config stays in force. When the control server goes
// away the proxy keeps serving its last good snapshot and reconnects with jittered backoff.
// With `register`, the sidecar's inbound address is registered and kept alive by heartbeats.
import type { Logger } from 'pino';
import type { Snapshot } from '../config/schema.ts';
import type { EdgeReport } from '../telemetry/edges.ts';
import { snapshotProblems } from './validate-snapshot.ts';
import { ControlChannel, controlStream } from './http.ts';
import { fieldValue } from '../engine/http1.ts';

type Stream = ReturnType<typeof controlStream>;

/**
 * What the control client needs of a proxy, and nothing more: it is defined here, at the xds
 * level, so xds/ does not depend on the composition root (proxy/main.ts). `RunningProxy`
 * satisfies it as it is; the CLI passes its proxy.
 */
export interface ControlledProxy {
  /** Registered with the control server (the sidecar's own outbound and admin ports are never endpoints). */
  readonly ports: { readonly outbound: number; readonly admin: number };
  /** The config in force: its version is ACKed and, with its hash, sent when the stream opens. */
  runtime(): { readonly snapshot: Pick<Snapshot, 'version' | 'hash'> } | null;
  /** Validate and apply a snapshot atomically; throws with the validation message (-> NACK). */
  apply(snapshot: Snapshot): void;
  /** A snapshot refused here (NACKed): shown as /config_dump's last_error until the next good apply. */
  rejected(error: string): void;
  /** The outbound edges' traffic since the last call, for POST /v1/report. */
  edgeReports(): EdgeReport[];
}

export interface ControlClientOptions { url: string; nodeId: string; service?: string; labels: Record<string, string>; token?: string | (() => string | undefined); register?: { address: string; port: number }; /** The workload identity registered with the endpoint (it has a sidecar: mTLS to it). */ identity?: { serviceAccount: string }; log: import('pino').Logger; reportMs?: number }

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 5_000;
/** The server sends a keepalive every 10 s; silence for this long means a dead connection. */
const IDLE_MS = 35_000;
const MAX_LINE_BYTES = 64 << 20;

interface Status {
  url: string; node: string; connected: boolean; reconnects: number;
  version: string | null; nonce: string | null; acks: number; nacks: number;
  last_nack: { version: string; nonce: string; error: string; at: string } | null;
  last_message_at: string | null; last_disconnect: string | null;
  registered: boolean; register_error: string | null;
}

export function startControlClient(proxy: ControlledProxy, opts: ControlClientOptions): { stop(): Promise<void>; status(): unknown } {
  // host:port means http://host:port (what people type, as for `meshlet ctl --server`).
  let base: URL;
  try { base = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(opts.url) ? opts.url : `http://${opts.url}`); } catch {
    throw new Error(`--control '${opts.url}': not a valid URL (expected http://host:port or host:port)`);
  }
  if (base.protocol !== 'http:') throw new Error(`--control ${opts.url}: only http:// URLs are supported`);
  const log: Logger = opts.log.child({ component: 'xds' });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // A function token is read again for every request: a projected service-account token is
  // rotated by the kubelet (a file read once would expire under a long-lived sidecar).
  const auth = (): void => {
    const t = typeof opts.token === 'function' ? opts.token() : opts.token;
    if (t) headers.authorization = `Bearer ${t}`; else delete headers.authorization;
  };
  auth();
  const node = { id: opts.nodeId, ...(opts.service ? { service: opts.service } : {}), labels: opts.labels };
  // One connection for ACKs keeps them in order; registrations get their own.
  const ackChannel = new ControlChannel(base);
  const regChannel = new ControlChannel(base);
  const self = { address: opts.register?.address ?? '127.0.0.1', ports: [proxy.ports.outbound, proxy.ports.admin] };
  const st: Status = {
    url: opts.url, node: opts.nodeId, connected: false, reconnects: 0, version: null, nonce: null, acks: 0, nacks: 0,
    last_nack: null, last_message_at: null, last_disconnect: null, registered: false, register_error: null,
  };
  let stopped = false;
  let attempt = 0;
  let req: Stream | null = null;
  let reconnectTimer: NodeJS.Timeout | null = null;
  let regTimer: NodeJS.Timeout | null = null;
  let heartbeatMs = 5_000;
  let aliveTimer: NodeJS.Timeout | null = null;

  const post = (path: string, body: unknown, channel: ControlChannel, method = 'POST', timeoutMs = 5_000): Promise<{ status: number; body: string }> => {
    auth();
    return channel.request(method, path, { ...headers }, body === undefined ? '' : JSON.stringify(body), timeoutMs);
  };

  const answer = (nonce: string, error?: string): void => {
    const version = proxy.runtime()?.snapshot.version ?? '';
    const body = { node: { id: opts.nodeId }, version_info: version, response_nonce: nonce, ...(error ? { error_detail: { message: error } } : {}) };
    post('/v1/ack', body, ackChannel).then((r) => {
      if (r.status !== 200) log.warn({ status: r.status, body: r.body.slice(0, 200) }, 'control server refused ACK/NACK');
    }, (e) => log.warn({ err: (e as Error).message }, 'ACK/NACK not delivered; the server resends on reconnect'));
  };

  const onSnapshotMessage = (m: Record<string, unknown>): void => {
    const nonce = typeof m.nonce === 'string' ? m.nonce : '';
    if (!nonce) { log.warn('snapshot message without a nonce ignored'); return; }
    const version = typeof m.version_info === 'string' ? m.version_info : '';
    const fail = (error: string): void => {
      st.nacks++;
      st.last_nack = { version, nonce, error, at: new Date().toISOString() };
      log.error({ version, error }, 'snapshot rejected (NACK); the previous config stays in force');
      proxy.rejected(`control snapshot ${version || '(no version)'}: ${error}`);
      answer(nonce, error);
    };
    if (!Array.isArray(m.resources) || m.resources.length !== 1) { fail(`resources: expected exactly one snapshot, got ${Array.isArray(m.resources) ? m.resources.length : typeof m.resources}`); return; }
    const problems = snapshotProblems(m.resources[0], self);
    if (problems.length > 0) { fail(problems.join('; ')); return; }
    const snap = m.resources[0] as Snapshot;
    if (snap.version !== version) { fail(`resources[0].version "${snap.version}" differs from version_info "${version}"`); return; }
    try {
      proxy.apply({ ...snap, source: `control:${opts.url} (${snap.source})` });
    } catch (e) {
      fail((e as Error).message);
      return;
    }
    st.acks++;
    st.version = version;
    st.nonce = nonce;
    answer(nonce);
  };

  const scheduleReconnect = (why: string): void => {
    if (stopped || reconnectTimer) return;
    if (st.connected) { st.last_disconnect = new Date().toISOString(); log.warn({ why }, 'control stream lost; serving the last good snapshot'); }
    st.connected = false;
    req = null;
    // Full jitter in [d/2, d): a restarted control server is not hit by every proxy at once.
    const d = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    attempt = Math.min(attempt + 1, 20);
    const delay = Math.round(d / 2 + Math.random() * (d / 2));
    log.debug({ why, delay }, 'reconnecting to control');
    reconnectTimer = setTimeout(() => { reconnectTimer = null; st.reconnects++; connect(); }, delay);
  };

  /** The NDJSON body of an open discovery stream `s`: snapshots applied, keepalives noted, heartbeats sent. */
  const readStream = (s: Stream, raw: string[]): { text(chunk: string): void; end(why: string): void } => {
    let buf = '';
    let idle: NodeJS.Timeout = setTimeout(() => s.destroy(new Error('no data from control for 35 s')), IDLE_MS);
    // The server asks for a heartbeat while the stream is open (x-meshlet-heartbeat-ms): without
    // one it cannot tell this proxy frozen or cut off from a quiet one until TCP gives up.
    const every = Number(fieldValue(raw, 'x-meshlet-heartbeat-ms'));
    let alive: NodeJS.Timeout | null = null;
    if (Number.isFinite(every) && every >= 50) {
      let inFlight = false; // one beat at a time: a slow server must not queue them up
      const beat = (): void => {
        if (inFlight) return;
        inFlight = true;
        post('/v1/heartbeat', { node: { id: opts.nodeId } }, ackChannel)
          .catch((e) => log.debug({ err: (e as Error).message }, 'heartbeat failed'))
          .finally(() => { inFlight = false; });
      };
      beat();
      alive = setInterval(beat, every);
      alive.unref();
      if (aliveTimer) clearInterval(aliveTimer);
      aliveTimer = alive;
    }
    return {
      text(chunk: string): void {
        clearTimeout(idle);
        idle = setTimeout(() => s.destroy(new Error('no data from control for 35 s')), IDLE_MS);
        buf += chunk;
        if (buf.length > MAX_LINE_BYTES) { s.destroy(new Error('discovery line over 64 MiB')); return; }
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let m: unknown;
          try { m = JSON.parse(line); } catch (e) { log.warn({ err: (e as Error).message }, 'unparseable discovery line ignored'); continue; }
          if (m === null || typeof m !== 'object') continue;
          st.last_message_at = new Date().toISOString();
          const type = (m as { type?: unknown }).type;
          if (type === 'snapshot') { attempt = 0; onSnapshotMessage(m as Record<string, unknown>); }
          // keepalive and unknown types (newer servers) are ignored by design.
        }
      },
      end(why: string): void {
        clearTimeout(idle);
        if (alive) { clearInterval(alive); if (aliveTimer === alive) aliveTimer = null; alive = null; }
        if (req === s) scheduleReconnect(why);
      },
    };
  };

  const connect = (): void => {
    if (stopped) return;
    auth();
    const cur = proxy.runtime()?.snapshot;
    let refused: { status: number; body: string } | null = null;
    let reader: ReturnType<typeof readStream> | null = null;
    const s: Stream = controlStream(base, 'POST', '/v1/discovery', { ...headers }, JSON.stringify({ node, version_info: cur?.version ?? '', hash: cur?.hash ?? '' }), {
      onStart: (status, raw) => {
        if (status !== 200) { refused = { status, body: '' }; return; }
        st.connected = true;
        log.info({ url: opts.url, node: opts.nodeId }, 'control stream open');
        reader = readStream(s, raw);
        // A restarted control server has forgotten our endpoint: re-register now, not at the next heartbeat.
        if (opts.register && opts.service) { if (regTimer) clearTimeout(regTimer); void register(); }
      },
      onText: (t) => { if (refused !== null) refused.body += t; else reader?.text(t); },
      onEnd: (err) => {
        if (refused !== null) {
          log.error({ status: refused.status, body: refused.body.slice(0, 300) }, 'control server refused the discovery stream');
          if (req === s) scheduleReconnect(`status ${refused.status}`);
        } else if (reader !== null) reader.end(err ? err.message : 'stream closed');
        else if (req === s) scheduleReconnect(err ? err.message : 'stream closed');
      },
    });
    req = s;
  };

  const register = async (): Promise<void> => {
    if (stopped || !opts.register || !opts.service) return;
    try {
      const r = await post('/v1/register', { node, address: opts.register.address, port: opts.register.port, ...(opts.identity ? { serviceAccount: opts.identity.serviceAccount } : {}) }, regChannel);
      if (r.status !== 200) throw new Error(`status ${r.status}: ${r.body.slice(0, 200)}`);
      const hb = (JSON.parse(r.body) as { heartbeat_ms?: unknown }).heartbeat_ms;
      if (typeof hb === 'number' && hb >= 50) heartbeatMs = hb;
      if (!st.registered) log.info({ service: opts.service, address: `${opts.register.address}:${opts.register.port}` }, 'endpoint registered');
      st.registered = true;
      st.register_error = null;
    } catch (e) {
      st.registered = false;
      st.register_error = (e as Error).message;
    }
    if (stopped) return;
    if (regTimer) clearTimeout(regTimer);
    regTimer = setTimeout(() => { regTimer = null; void register(); }, st.registered ? heartbeatMs : Math.min(heartbeatMs, 1_000));
  };

  // Per-edge traffic for the mesh view, drained from the proxy and posted every reportMs.
  const reportChannel = new ControlChannel(base);
  const reportMs = opts.reportMs ?? 5_000;
  const reportTimer = setInterval(() => {
    const edges = proxy.edgeReports();
    if (edges.length === 0) return;
    post('/v1/report', { node: opts.nodeId, service: opts.service ?? opts.nodeId, version: opts.labels.version ?? '', edges }, reportChannel)
      .catch((e) => log.debug({ err: (e as Error).message }, 'edge report failed'));
  }, reportMs);
  reportTimer.unref();

  connect();
  void register();

  return {
    status: () => ({ ...st }),
    async stop() {
      if (stopped) return;
      stopped = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      if (regTimer) clearTimeout(regTimer);
      if (aliveTimer) clearInterval(aliveTimer);
      clearInterval(reportTimer);
      if (opts.register && opts.service) {
        // Deregister first so callers stop picking this endpoint while the proxy drains.
        try {
          await post(`/v1/register?node=${encodeURIComponent(opts.nodeId)}`, undefined, regChannel, 'DELETE', 2_000);
          log.info('endpoint deregistered');
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'deregistration failed; the endpoint expires after its TTL');
        }
      }
      const r = req;
      req = null;
      r?.destroy(new Error('stopped'));
      ackChannel.close();
      regChannel.close();
      reportChannel.close();
    },
  };
}
