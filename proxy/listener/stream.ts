// One request through a listener's filter chain (Envoy's ActiveStream). The stream owns what
// every filter shares: the chain cursor, the request being built for the upstream, the routing
// decisions filters hand on (route, destination, cluster), the request body once some filter
// needs it settled, the response on its way back, StreamInfo, and the error boundary. Each
// filter keeps its own per-request state in its slot (allocated only by filters that have any).
import type { ServerRequest, ServerResponse } from '../engine/server.ts';
import { grpcMessageOf, grpcStatusOf, httpToGrpcStatus } from '../grpc.ts';
import type { Dtab } from '../dtab/index.ts';
import type { Cluster } from '../upstream/cluster.ts';
import type { CompiledRoute, CompiledVHost, Destination } from '../filters/route/table.ts';
import type { TraceContext, Tracing } from '../telemetry/tracing.ts';
import type { JwtFacts } from '../filters/authz/policy.ts';
import { Flag, StreamInfo } from '../core/stream-info.ts';
import { localReply } from '../local-reply.ts';
import { downstreamResponseHeaders } from './headers.ts';

/**
 * An HTTP filter: one module that owns its config, its per-request state and its stats. The
 * listener calls `onRequest` in chain order; the filter returns true to go on at once, or false
 * when it holds the stream (it replied, or it will call `s.continue()` later: a timer, a body).
 */
export interface HttpFilter {
  readonly name: string;
  /** Request headers reached this filter. */
  onRequest(s: HttpStream): boolean;
  /** The body this filter asked for (`s.bufferBody(this)`) is settled (buffered, or streaming). */
  onBody?(s: HttpStream): void;
  /** Response headers on their way downstream (reverse chain order), before they are written. */
  onResponseHeaders?(s: HttpStream, headers: string[]): void;
  /** The stream ended, however it ended: drop timers and per-request state. Called once per filter the stream reached. */
  onDone?(s: HttpStream): void;
  /** The filter's counters and gauges, shown as `http.<listener>.<key>` (keys carry Envoy's filter prefix, e.g. `fault.`). */
  readonly stats?: Record<string, number>;
}

/** A listener's chain, resolved once: which filters encode responses and which clean up. */
export class FilterChain {
  readonly filters: readonly HttpFilter[];
  /** Filters with onResponseHeaders, in reverse chain order, with their chain positions. */
  readonly encoders: ReadonlyArray<{ f: HttpFilter; at: number }>;
  readonly stats: FilterStatSource[];
  constructor(filters: HttpFilter[]) {
    if (filters.length === 0) throw new Error('a filter chain needs a terminal filter');
    this.filters = filters;
    this.encoders = filters.map((f, at) => ({ f, at })).filter((e) => e.f.onResponseHeaders !== undefined).reverse();
    this.stats = [];
    for (const f of filters) if (f.stats !== undefined) this.stats.push({ filter: f.name, stats: f.stats });
  }
  indexOf(f: HttpFilter): number { return this.filters.indexOf(f); }
}

export interface FilterStatSource { filter: string; stats: Record<string, number> }

/** What a stream needs from its listener (Envoy: the connection manager). */
export interface StreamOwner {
  /** Listener options the filters read. */
  readonly trustEnvoyHeaders: boolean;
  /** A filter threw: counted, logged once per distinct error. */
  filterError(filter: string, err: unknown): void;
  /** Called once when the stream ends. */
  streamDone(s: HttpStream): void;
}

/** Envoy's per_connection_buffer_limit_bytes default: the most of a body kept for a replay or a copy. */
export const BODY_BUFFER_LIMIT = 1024 * 1024;

export class HttpStream {
  readonly req: ServerRequest;
  readonly res: ServerResponse<HttpStream>;
  readonly info: StreamInfo;
  readonly owner: StreamOwner;
  readonly chain: FilterChain;
  /** The filter running or holding the stream (its chain index). */
  private pos = -1;
  /**
   * Per-filter state: the first filter to keep some uses the inline slot (usually the router: no
   * allocation beyond its own state), others a lazily made array by chain index.
   */
  private slotOwner: HttpFilter | null = null;
  private slotValue: unknown = undefined;
  private slots: unknown[] | null = null;

  // --- the request for the upstream ---
  method: string;
  /** The request target sent upstream (a route rewrite or a consuming identifier changes it). */
  path: string;
  /** Request headers for the upstream (already sanitised by the listener). */
  headers: string[];

  // --- decisions filters hand on ---
  /** The dtab override of this request (l5d-ctx-dtab ++ l5d-dtab), parsed by the dtab filter. */
  localDtab: Dtab | null = null;
  /** Raw dtab header values the listener found (trusted callers only), for the dtab filter. */
  dtabCtx: string[] | null = null;
  dtabUser: string[] | null = null;
  vhost: CompiledVHost | null = null;
  route: CompiledRoute | null = null;
  dest: Destination | null = null;
  /** The concrete target the router sends to. */
  cluster: Cluster | null = null;
  /** Outbound, sampled: the tracer and the parent of this hop's client spans (the router makes one per attempt). */
  tracing: Tracing | null = null;
  traceParent: TraceContext | null = null;
  /** The request's verified JWT (the jwt filter), for the authz filter's requestPrincipals and claims. */
  jwt: JwtFacts | null = null;

  // --- the body ---
  /** undefined: not settled yet; null: none; a Buffer: buffered (replayable); the request: streamed, single use. */
  body: Buffer | ServerRequest | null | undefined = undefined;
  bodyUsed = false;
  private bodyWaiter: HttpFilter | null = null;

  // --- the response ---
  /** Response headers were sent downstream: a failure now can only reset. */
  committed = false;
  done = false;
  /** The downstream side ended the stream itself (idle timeout, body over the limit): not the upstream's doing. */
  downstreamEnded = false;
  /** An edge (strip) listener also removes l5d-* response headers: they reveal mesh internals. */
  stripL5dResponse = false;

  constructor(req: ServerRequest, res: ServerResponse<HttpStream>, info: StreamInfo, headers: string[], chain: FilterChain, owner: StreamOwner) {
    this.req = req;
    this.res = res;
    this.info = info;
    this.headers = headers;
    this.chain = chain;
    this.owner = owner;
    this.method = req.method;
    this.path = req.url;
  }

  // --- running the chain ---

  /** Run the chain from the filter after the current one (the first, at the start). */
  continue(): void {
    const fs = this.chain.filters;
    while (!this.done) {
      const i = ++this.pos;
      if (i >= fs.length) { this.fail(fs[fs.length - 1].name, new Error('the terminal filter passed the request on')); return; }
      let go: boolean;
      try { go = fs[i].onRequest(this); } catch (e) { this.fail(fs[i].name, e); return; }
      if (!go) return;
    }
  }

  /** This filter's per-request state (undefined until it set some). */
  state<T>(f: HttpFilter): T | undefined {
    if (this.slotOwner === f) return this.slotValue as T;
    return this.slots === null ? undefined : this.slots[this.chain.indexOf(f)] as T | undefined;
  }

  setState(f: HttpFilter, v: unknown): void {
    if (this.slotOwner === null || this.slotOwner === f) { this.slotOwner = f; this.slotValue = v; return; }
    (this.slots ??= new Array(this.chain.filters.length))[this.chain.indexOf(f)] = v;
  }

  // --- the body service ---

  /**
   * Settle the body so it can be replayed or copied: read up to BODY_BUFFER_LIMIT into one
   * Buffer; a larger one is streamed (prefix first) and counted once as retry_or_shadow_abandoned
   * on the target cluster. Calls `f.onBody(this)` when settled (at once if it already is).
   */
  bufferBody(f: HttpFilter): void {
    if (this.body !== undefined) { this.runBody(f); return; }
    const req = this.req;
    if (!req.hasBody) { this.body = null; this.runBody(f); return; }
    if (req.contentLength > BODY_BUFFER_LIMIT) { this.abandonBuffer(); this.runBody(f); return; }
    this.bodyWaiter = f;
    req.collect(BODY_BUFFER_LIMIT, (body) => {
      const w = this.bodyWaiter;
      this.bodyWaiter = null;
      if (this.done || w === null) return;
      if (body === null) this.abandonBuffer(); // longer than the limit (chunked): streamed, prefix first
      else this.body = body;
      this.runBody(w);
    });
  }

  /** The body as it comes (no replay needed): streamed from the request, unless already settled. */
  streamBody(): Buffer | ServerRequest | null {
    if (this.body === undefined) this.body = this.req.hasBody ? this.req : null;
    return this.body;
  }

  /** A buffered body can be sent again; a streamed one only until it was used. */
  canReplay(): boolean {
    return !this.bodyUsed || this.body === null || Buffer.isBuffer(this.body);
  }

  private abandonBuffer(): void {
    this.body = this.req;
    if (this.cluster !== null) this.cluster.stats.retry_or_shadow_abandoned++;
  }

  private runBody(f: HttpFilter): void {
    try { f.onBody!(this); } catch (e) { this.fail(f.name, e); }
  }

  // --- the response ---

  /** A reply made by the proxy (no upstream response): Envoy's statuses, bodies and flags. */
  /** `grpcStatus` (>= 0): the status a gRPC request gets instead of the mapping of `status` (fault aborts). */
  sendLocalReply(status: number, body: string, flag: number, extra?: Record<string, string>, grpcStatus = -1): void {
    if (this.done) return;
    const info = this.info;
    if (flag !== 0) info.addFlag(flag);
    info.status = status;
    if (this.committed) this.res.destroy(); // a reply already started cannot be replaced: reset it
    else if (info.grpc) {
      // A gRPC caller gets a gRPC error (HTTP 200, grpc-status), as Envoy answers gRPC requests.
      const gs = grpcStatus >= 0 ? grpcStatus : httpToGrpcStatus(status);
      info.status = localReply(this.res, status, body, info.flags !== 0 ? info.flagString() : null, extra, gs);
      info.grpcStatus = gs;
      info.grpcMessage = body;
    } else localReply(this.res, status, body, info.flags !== 0 ? info.flagString() : null, extra);
    this.end();
  }

  /** The upstream's response head: hop-by-hop fields go, the filters' response work runs, then it is written. */
  sendHeaders(status: number, reason: string, rawHeaders: string[]): void {
    if (this.done) return;
    const out = downstreamResponseHeaders(rawHeaders);
    if (this.stripL5dResponse) {
      for (let i = out.length - 2; i >= 0; i -= 2) if (out[i].length > 4 && out[i].toLowerCase().startsWith('l5d-')) out.splice(i, 2);
    }
    const enc = this.chain.encoders;
    for (let i = 0; i < enc.length; i++) {
      // Only filters the request reached (a held stream's later filters never saw it).
      if (enc[i].at > this.pos) continue;
      try { enc[i].f.onResponseHeaders!(this, out); } catch (e) { this.fail(enc[i].f.name, e); return; }
    }
    const info = this.info;
    if (info.flags !== 0) out.push('x-meshlet-flags', info.flagString());
    this.committed = true;
    info.status = status;
    if (info.grpc) {
      // A trailers-only response carries grpc-status in its headers.
      info.grpcStatus = grpcStatusOf(rawHeaders);
      if (info.grpcStatus >= 0) info.grpcMessage = grpcMessageOf(rawHeaders);
    }
    const res = this.res;
    if (res.destroyed) return;
    res.writeHead(status, reason || undefined, out);
  }

  /** Response body bytes; false = the client is slow (wait for `onceDrain`). */
  sendData(chunk: Buffer): boolean {
    this.info.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  /** The response is complete (trailers, e.g. gRPC status, pass through). */
  sendEnd(trailers: string[] | null): void {
    if (this.done) return;
    if (this.info.grpc && trailers !== null) {
      const gs = grpcStatusOf(trailers);
      if (gs >= 0) { this.info.grpcStatus = gs; this.info.grpcMessage = grpcMessageOf(trailers); }
    }
    this.res.end(undefined, trailers);
    this.end();
  }

  /** Reset the downstream (the response cannot complete); the status already sent stays. */
  reset(flag: number): void {
    if (this.done) return;
    if (flag !== 0) this.info.addFlag(flag);
    this.res.destroy();
    this.end();
  }

  // --- how streams end from the downstream side ---

  /** The client went away before the response finished: Envoy's DC. */
  downstreamReset(): void {
    if (this.done) return;
    this.info.addFlag(Flag.DC);
    this.end();
  }

  /**
   * The server ends the stream itself: 408 `stream timeout` with SI (Envoy's stream idle
   * timeout), or 413 for a body over the limit. Nothing is charged to the upstream; a
   * response already started is reset.
   */
  streamError(status: 408 | 413): void {
    if (this.done) return;
    this.downstreamEnded = true;
    if (this.committed) this.reset(status === 408 ? Flag.SI : 0);
    else if (status === 408) this.sendLocalReply(408, 'stream timeout', Flag.SI);
    else this.sendLocalReply(413, 'Payload Too Large', 0);
  }

  /**
   * The error boundary: a filter threw. The request is answered 500 (or reset, if its response
   * started), counted and logged by the listener, and every filter it reached cleans up; the
   * process and the other requests go on.
   */
  fail(filter: string, err: unknown): void {
    this.owner.filterError(filter, err);
    if (this.done) return;
    if (this.committed) this.reset(0);
    else this.sendLocalReply(500, 'internal error', 0);
  }

  private end(): void {
    if (this.done) return;
    this.done = true;
    const fs = this.chain.filters;
    const last = Math.min(this.pos, fs.length - 1);
    for (let i = 0; i <= last; i++) {
      const f = fs[i];
      if (f.onDone === undefined) continue;
      try { f.onDone(this); } catch (e) { this.owner.filterError(f.name, e); }
    }
    this.owner.streamDone(this);
  }
}
