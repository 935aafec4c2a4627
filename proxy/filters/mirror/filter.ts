// The mirror filter: a fire-and-forget copy of the request to each of the route's mirror clusters
// its percentage selects. It never delays, fails or alters the primary. The roll happens when the
// headers arrive; only a request with a copy to send has its body buffered (up to the buffer
// limit: a larger body cancels the copy, `retry_or_shadow_abandoned`). Copies in flight are
// capped per listener; overflow drops the copy. Stats `http.<listener>.mirror.{sent,dropped,failed}`.
import type { ResponseHandler } from '../../engine/client.ts';
import type { Cluster } from '../../upstream/cluster.ts';
import type { Conn, EndpointPool, PoolFailure, Waiter } from '../../upstream/pool.ts';
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import { chargeCode } from '../../telemetry/stats.ts';
import { routeTimeoutMs } from '../router/timeouts.ts';
import type { MirrorTarget } from './config.ts';

export interface MirrorOptions {
  maxInFlight: number;
  /** Istio >= 1.28 default: no `-shadow` Host suffix (DISABLE_SHADOW_HOST_SUFFIX=true). */
  shadowSuffix: boolean;
}

const MIRROR_STATS = ['mirror.sent', 'mirror.dropped', 'mirror.failed'] as const;
type MirrorStats = Record<(typeof MIRROR_STATS)[number], number>;

/** `httpbin:8000` -> `httpbin-shadow:8000` (Envoy inserts before any port). */
export function shadowHost(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon > 0 && host.indexOf(']') < colon) return `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
  return `${host}-shadow`;
}

export class MirrorFilter implements HttpFilter {
  readonly name = 'mirror';
  readonly stats: MirrorStats;
  private readonly opts: MirrorOptions;
  /** Copies in flight from this listener. */
  inFlight = 0;

  constructor(opts: MirrorOptions) {
    this.opts = opts;
    this.stats = Object.fromEntries(MIRROR_STATS.map((k) => [k, 0])) as MirrorStats;
  }

  onRequest(s: HttpStream): boolean {
    const targets = s.route?.mirrors;
    // A tunnel (upgrade, CONNECT) is never shadowed: a copy could not carry its bytes.
    if (!targets || s.method === 'CONNECT' || s.req.upgrade !== null) return true;
    let chosen: MirrorTarget[] | null = null;
    for (const m of targets) {
      if (m.percent < 100 && Math.random() * 100 >= m.percent) continue;
      (chosen ??= []).push(m);
    }
    if (chosen === null) return true;
    if (!s.req.hasBody) { this.send(s, chosen, null); return true; }
    // Envoy sends the copy with its body once the request is complete.
    s.setState(this, chosen);
    s.bufferBody(this);
    return false;
  }

  onBody(s: HttpStream): void {
    const chosen = s.state<MirrorTarget[]>(this)!;
    const body = s.body;
    if (Buffer.isBuffer(body) || body === null) this.send(s, chosen, body ?? null);
    else for (const m of chosen) m.cluster.stats.retry_or_shadow_abandoned++; // too large to copy
    s.continue();
  }

  private send(s: HttpStream, chosen: MirrorTarget[], body: Buffer | null): void {
    const timeoutMs = routeTimeoutMs(s);
    for (const m of chosen) {
      if (this.inFlight >= this.opts.maxInFlight) { this.stats['mirror.dropped']++; continue; }
      const ep = m.cluster.pick(null);
      if (!ep) { this.stats['mirror.failed']++; continue; }
      this.inFlight++;
      this.stats['mirror.sent']++;
      let h = s.headers;
      if (this.opts.shadowSuffix) {
        h = h.slice();
        for (let i = 0; i < h.length; i += 2) if (h[i].toLowerCase() === 'host') h[i + 1] = shadowHost(h[i + 1]);
      }
      ep.pool.request(new MirrorRequest(this, m.cluster, ep.pool, s.method, s.path, h, body, timeoutMs));
    }
  }
}

/** One copy: the pool's waiter and the engine's handler; the response is counted and dropped. */
class MirrorRequest implements Waiter, ResponseHandler {
  readonly fresh = false;
  private readonly filter: MirrorFilter;
  private readonly cluster: Cluster;
  private readonly pool: EndpointPool;
  private readonly method: string;
  private readonly path: string;
  private readonly headers: string[];
  private readonly body: Buffer | null;
  private conn: Conn | null = null;
  private done = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(filter: MirrorFilter, cluster: Cluster, pool: EndpointPool, method: string, path: string, headers: string[], body: Buffer | null, timeoutMs: number) {
    this.filter = filter;
    this.cluster = cluster;
    this.pool = pool;
    this.method = method;
    this.path = path;
    this.headers = headers;
    this.body = body;
    if (timeoutMs > 0) { this.timer = setTimeout(() => this.finish(false), timeoutMs); this.timer.unref(); }
  }

  private finish(ok: boolean): void {
    if (this.done) return;
    this.done = true;
    this.filter.inFlight--;
    if (this.timer) clearTimeout(this.timer);
    if (!ok) this.filter.stats['mirror.failed']++;
    const c = this.conn;
    this.conn = null;
    if (c) c.pool.release(c, ok);
    else this.pool.cancel(this); // timed out while queued: free the pending slot it holds
  }

  onAttached(conn: Conn): void {
    if (this.done) { conn.pool.release(conn, true); return; }
    this.conn = conn;
    conn.h1!.dispatch({ path: this.path, method: this.method, headers: this.headers, body: this.body }, this);
  }
  onPoolFailure(_r: PoolFailure): void { this.finish(false); }
  onResponseStart(_c: unknown, status: number): void { chargeCode(this.cluster.stats, status); }
  onResponseData(): void {}
  onResponseEnd(c: { closed: boolean }): void { this.finish(!c.closed); }
  onResponseError(): void { this.finish(false); }
}
