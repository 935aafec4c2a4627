// Traffic mirroring: a fire-and-forget copy to the mirror cluster. It never delays, fails or
// alters the primary; its concurrency is capped and overflow drops the copy (counted).
import type { ResponseHandler } from '../engine/client.ts';
import type { Cluster } from '../upstream/cluster.ts';
import type { Conn, EndpointPool, PoolFailure, Waiter } from '../upstream/pool.ts';
import type { HttpStats } from '../telemetry/stats.ts';
import { chargeCode } from '../telemetry/stats.ts';

export interface MirrorOptions {
  maxInFlight: number;
  /** Istio >= 1.28 default: no `-shadow` Host suffix (DISABLE_SHADOW_HOST_SUFFIX=true). */
  shadowSuffix: boolean;
}

/** Copies in flight per proxy (its options object): one module-wide count would let one proxy's dead mirror starve another's. */
const inFlight = new WeakMap<MirrorOptions, { n: number }>();

/** `httpbin:8000` -> `httpbin-shadow:8000` (Envoy inserts before any port). */
export function shadowHost(host: string): string {
  const colon = host.lastIndexOf(':');
  if (colon > 0 && host.indexOf(']') < colon) return `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
  return `${host}-shadow`;
}

class MirrorRequest implements Waiter, ResponseHandler {
  readonly fresh = false;
  private cluster: Cluster;
  private method: string;
  private path: string;
  private headers: string[];
  private body: Buffer | null;
  private stats: HttpStats;
  private conn: Conn | null = null;
  private done = false;
  private timer: NodeJS.Timeout | null = null;
  private pool: EndpointPool;
  private count: { n: number };

  constructor(cluster: Cluster, pool: EndpointPool, count: { n: number }, method: string, path: string, headers: string[], body: Buffer | null, stats: HttpStats, timeoutMs: number) {
    this.cluster = cluster;
    this.pool = pool;
    this.count = count;
    this.method = method;
    this.path = path;
    this.headers = headers;
    this.body = body;
    this.stats = stats;
    if (timeoutMs > 0) { this.timer = setTimeout(() => this.finish(false), timeoutMs); this.timer.unref(); }
  }

  private finish(ok: boolean): void {
    if (this.done) return;
    this.done = true;
    this.count.n--;
    if (this.timer) clearTimeout(this.timer);
    if (!ok) this.stats['mirror.failed']++;
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

export function sendMirror(
  cluster: Cluster, method: string, path: string, headers: string[], body: Buffer | null,
  stats: HttpStats, opts: MirrorOptions, timeoutMs: number,
): void {
  let count = inFlight.get(opts);
  if (count === undefined) { count = { n: 0 }; inFlight.set(opts, count); }
  if (count.n >= opts.maxInFlight) { stats['mirror.dropped']++; return; }
  const ep = cluster.pick(null);
  if (!ep) { stats['mirror.failed']++; return; }
  count.n++;
  stats['mirror.sent']++;
  let h = headers;
  if (opts.shadowSuffix) {
    h = headers.slice();
    for (let i = 0; i < h.length; i += 2) if (h[i].toLowerCase() === 'host') h[i + 1] = shadowHost(h[i + 1]);
  }
  ep.pool.request(new MirrorRequest(cluster, ep.pool, count, method, path, h, body, stats, timeoutMs));
}
