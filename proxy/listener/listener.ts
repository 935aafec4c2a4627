// A listener: an HTTP/1.1 server whose requests run through the proxy's stages in one
// direction: sanitize -> route (logical) -> fault -> body/mirror -> router (concrete, endpoint).
import { randomUUID } from 'node:crypto';
import { HttpServer, type ServerRequest, type ServerResponse } from '../engine/server.ts';
import { applyOps, getRaw, upstreamRequestHeaders } from './headers.ts';
import { Exchange, finishLocal, forward, onDownstreamReset, onStreamError, prepareBody, type ExchangeHooks } from '../filters/router.ts';
import { matchRoute, pickDestination, type CompiledRoute, type RequestView } from '../filters/route.ts';
import { policyFrom, routePolicy } from '../filters/retry.ts';
import { rollFault } from '../filters/fault.ts';
import { sendMirror, type MirrorOptions } from '../filters/mirror.ts';
import { BODY } from '../local-reply.ts';
import type { Runtime } from '../runtime.ts';
import type { Cluster } from '../upstream/cluster.ts';
import { extractContext, injectHeaders, isTraceHeader, randomHex, type Tracing } from '../telemetry/tracing.ts';
import { Dtab, javaUrlEncode, parseDtabHeaders } from '../dtab/index.ts';
import type { Target } from '../filters/naming.ts';
import { chargeDownstream, newHttpStats, type HttpStats } from '../telemetry/stats.ts';

export interface ListenerOptions {
  name: 'outbound' | 'inbound';
  maxHeaderBytes: number;
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  /** Envoy's stream_idle_timeout (0 = off). */
  streamIdleTimeoutMs: number;
  /** Request bodies above this are refused with 413 (0 = no limit). */
  maxRequestBytes: number;
  /** Honour x-envoy-* control headers from callers (off by default, as Istio sidecars). */
  trustEnvoyHeaders: boolean;
  /**
   * `trust`: read l5d-ctx-dtab / l5d-dtab (the app and the mesh's own sidecars); `strip`: remove
   * every l5d-* request header unread (Linkerd's clearContext: edges facing untrusted clients).
   */
  dtabHeaders: 'trust' | 'strip';
  mirror: MirrorOptions;
}

/** What a listener needs from the proxy: the current runtime and the inbound cluster. */
export interface ListenerContext {
  runtime(): Runtime | null;
  inboundCluster(): Cluster | null;
  onStart(): void;
  onDone(ex: Exchange, listener: Listener): void;
  draining(): boolean;
  /** The tracer when tracing is on, else null (then requests do no tracing work at all). */
  tracing(): Tracing | null;
}

export class Listener implements ExchangeHooks {
  readonly opts: ListenerOptions;
  readonly server: HttpServer;
  readonly stats: HttpStats = newHttpStats();
  readonly prefix: string;
  private ctx: ListenerContext;

  constructor(opts: ListenerOptions, ctx: ListenerContext) {
    this.opts = opts;
    this.ctx = ctx;
    this.prefix = `http.${opts.name}`;
    // Malformed requests get a clear status from the engine (400, 408, 431), never a crash.
    this.server = new HttpServer({
      maxHeaderBytes: opts.maxHeaderBytes, idleTimeoutMs: opts.idleTimeoutMs, headersTimeoutMs: opts.headersTimeoutMs,
      streamIdleTimeoutMs: opts.streamIdleTimeoutMs, maxRequestBytes: opts.maxRequestBytes,
    }, {
      onRequest: (req, res) => this.handle(req, res),
      onAbort: (res) => {
        const ex = res.exchange as Exchange | null;
        if (ex === null) return;
        this.stats.downstream_rq_rx_reset++;
        onDownstreamReset(ex);
      },
      onStreamError: (res, status) => {
        if (status === 408) this.stats.downstream_rq_idle_timeout++; else this.stats.downstream_rq_too_large++;
        const ex = res.exchange as Exchange | null;
        if (ex !== null) onStreamError(ex, status);
      },
      onConnection: (open) => {
        if (open) { this.stats.downstream_cx_total++; this.stats.downstream_cx_active++; } else this.stats.downstream_cx_active--;
      },
    });
  }

  listen(port: number, host = '127.0.0.1', reusePort = false): Promise<number> {
    return this.server.listen(port, host, reusePort);
  }

  /** Stop accepting; open connections get `Connection: close` on their next response (draining). */
  close(): Promise<void> { return this.server.close(); }

  /** Draining: close (FIN) connections idle for `quietMs`. */
  closeIdle(quietMs: number): void { this.server.closeIdle(quietMs); }

  destroyConnections(): void { this.server.destroyConnections(); }

  onDone(ex: Exchange): void {
    this.stats.downstream_rq_active--;
    if (ex.status > 0) chargeDownstream(this.stats, ex.status);
    this.ctx.onDone(ex, this);
  }

  private handle(req: ServerRequest, res: ServerResponse): void {
    const st = this.stats;
    st.downstream_rq_total++;
    st.downstream_rq_active++;
    this.ctx.onStart();
    if (this.ctx.draining()) res.shouldKeepAlive = false;
    const raw = req.rawHeaders;
    const trust = this.opts.trustEnvoyHeaders;
    const tracing = this.ctx.tracing();
    let sampled = false;
    let parent = null;
    if (tracing !== null) {
      parent = extractContext(raw);
      sampled = tracing.decide(parent);
    }
    // Dtab context headers: read (trust) or removed unread (strip).
    let ctxDtab: string[] | null = null;
    let userDtab: string[] | null = null;
    let anyL5d = false;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      if (n.length < 4 || n.charCodeAt(1) !== 0x35 || (n.charCodeAt(0) | 0x20) !== 0x6c) continue; // 'l5'
      const l = n.toLowerCase();
      if (!l.startsWith('l5d-')) continue;
      anyL5d = true;
      if (l === 'l5d-dtab') (userDtab ??= []).push(raw[i + 1]);
      else if (l === 'l5d-ctx-dtab') (ctxDtab ??= []).push(raw[i + 1]);
    }
    const strip = this.opts.dtabHeaders === 'strip';
    if (strip) { ctxDtab = null; userDtab = null; }
    const dropDtab = strip ? anyL5d : ctxDtab !== null || userDtab !== null;
    // A sampled request gets our span ids downstream, so the incoming trace headers are replaced.
    const drop = sampled
      ? (dropDtab ? (l: string) => isTraceHeader(l) || dropsL5d(l, strip) : isTraceHeader)
      : (dropDtab ? (l: string) => dropsL5d(l, strip) : null);
    const headers = upstreamRequestHeaders(raw, drop);
    let requestId = getRaw(raw, 'x-request-id');
    if (!requestId) { requestId = randomUUID(); headers.push('x-request-id', requestId); }
    const xff = getRaw(raw, 'x-forwarded-for');
    const remote = req.remoteAddress;
    if (xff !== undefined) {
      for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() === 'x-forwarded-for') { headers[i + 1] = `${xff}, ${remote}`; break; }
    } else headers.push('x-forwarded-for', remote);
    headers.push('x-forwarded-proto', 'http');

    const ex = new Exchange(req, res, headers, this);
    res.exchange = ex;
    if (this.opts.maxRequestBytes > 0 && req.contentLength > this.opts.maxRequestBytes) {
      // Refused before anything is forwarded (Envoy's buffer filter: 413 for a declared length).
      st.downstream_rq_too_large++;
      ex.downstreamEnded = true;
      finishLocal(ex, 413, 'Payload Too Large', null);
      return;
    }
    ex.requestId = requestId;
    if (req.upgrade !== null && !isH2cOnly(req.upgrade)) {
      // No route has upgrades configured (tunnels are not built yet): Envoy's answer for an
      // upgrade on a route without upgrade_configs is 403 (details upgrade_failed), never a
      // plain request with the upgrade silently dropped. Like Envoy, the connection then closes:
      // bytes after a refused upgrade may be upgrade payload hiding a smuggled request.
      st.downstream_rq_ws_on_non_ws_route++;
      res.shouldKeepAlive = false;
      finishLocal(ex, 403, '', null);
      return;
    }
    ex.stripL5dResponse = strip;
    if (sampled) {
      if (this.opts.name === 'inbound') {
        // One server span per inbound request; the app sees it as its parent.
        const s = tracing!.startSpan(ex.method, 'server', parent, {
          'http.request.method': ex.method, 'url.path': ex.path, 'network.peer.address': remote,
          'user_agent.original': getRaw(raw, 'user-agent') ?? '',
        });
        ex.serverSpan = s;
        injectHeaders(headers, s.ctx, s.spanId, true);
      } else {
        // Outbound: one client span per attempt, made by the router.
        ex.tracing = tracing;
        ex.traceParent = parent;
      }
    } else if (tracing !== null && parent === null) {
      // An unsampled root: pass the decision on so the next hops do not roll again.
      ex.traceId = randomHex(16);
      headers.push('traceparent', `00-${ex.traceId}-${randomHex(8)}-00`);
    }
    if (parent !== null) ex.traceId = parent.traceId;
    else if (ex.serverSpan !== null) ex.traceId = ex.serverSpan.ctx.traceId;

    // Dtab context (trust): parsed on both listeners (a malformed value is a 400 before routing)
    // and passed on as l5d-ctx-dtab = show(ctx ++ user), so the override follows the call graph.
    let local: Dtab | null = null;
    if (ctxDtab !== null || userDtab !== null) {
      const h = parseDtabHeaders(ctxDtab ?? [], userDtab ?? []);
      if (!h.ok) {
        // Linkerd: the parser message in the body and URL-encoded in l5d-err.
        st.dtab_error++;
        finishLocal(ex, 400, h.message, null, { 'l5d-err': javaUrlEncode(h.message).slice(0, 8192) });
        return;
      }
      if (h.local.size > 0) { ex.dtabOverride = true; st.dtab_override++; }
      if (h.forwardCtx !== null) headers.push('l5d-ctx-dtab', h.forwardCtx);
      local = h.local;
    }

    if (this.opts.name === 'inbound') {
      const cluster = this.ctx.inboundCluster();
      if (!cluster) { finishLocal(ex, 503, BODY.noHealthy, 'UH'); return; }
      ex.cluster = cluster;
      this.dispatch(ex, null, trust);
      return;
    }

    const rt = this.ctx.runtime();
    const host = req.host ?? '';
    let target: Target | null = null;
    if (rt !== null && (local !== null || !rt.naming.trivial)) {
      target = rt.naming.resolveRequest({ method: ex.method, uri: ex.path, httpVersion: req.httpVersion, header: (n) => req.header(n) }, local ?? Dtab.empty);
    }
    let vh = null;
    if (target === null) vh = rt?.routes.forHost(host);
    else if (target.kind === 'error') {
      st.dtab_error++;
      finishLocal(ex, target.status, target.message, 'NR', { 'l5d-err': javaUrlEncode(target.message).slice(0, 8192) });
      return;
    } else if (target.kind === 'vhost') vh = target.vhost;
    if (target !== null && target.uri !== undefined) ex.path = target.uri; // a consuming identifier
    const url = ex.path;
    const q = url.indexOf('?');
    const view: RequestView = {
      method: ex.method, path: q < 0 ? url : url.slice(0, q), query: q < 0 ? '' : url.slice(q + 1),
      authority: host, req,
    };
    if (target !== null && target.kind === 'route') { this.routeTo(ex, target.route, view, trust); return; }
    if (!vh) { st.no_route++; finishLocal(ex, 404, '', 'NR'); return; }
    const route = matchRoute(vh, view);
    if (!route) { st.no_route++; finishLocal(ex, 404, '', 'NR'); return; }
    this.routeTo(ex, route, view, trust);
  }

  private routeTo(ex: Exchange, route: CompiledRoute, view: RequestView, trust: boolean): void {
    const dest = pickDestination(route);
    if (!dest) { this.stats.no_cluster++; finishLocal(ex, 503, '', 'NC'); return; }
    ex.route = route;
    ex.dest = dest;
    ex.cluster = dest.cluster;
    if (route.rewrite) {
      if (route.rewrite.uri !== undefined) {
        // Istio: with a prefix match the matched prefix is replaced, otherwise the whole path.
        const p = route.prefixMatch !== undefined && view.path.startsWith(route.prefixMatch)
          ? route.rewrite.uri + view.path.slice(route.prefixMatch.length) : route.rewrite.uri;
        ex.path = view.query ? `${p || '/'}?${view.query}` : p || '/';
      }
      if (route.rewrite.authority !== undefined) {
        const h = ex.headers;
        for (let i = 0; i < h.length; i += 2) if (h[i].toLowerCase() === 'host') h[i + 1] = route.rewrite.authority;
      }
    }
    if (route.headers?.request) applyOps(ex.headers, route.headers.request);
    if (dest.headers?.request) applyOps(ex.headers, dest.headers.request);
    if (route.headers?.response || dest.headers?.response) {
      ex.responseOps = [route.headers?.response, dest.headers?.response].filter((x) => x !== undefined);
    }
    ex.globalTimeoutMs = route.timeoutMs;
    const fault = route.fault ? rollFault(route.fault) : null;
    if (fault) {
      const st = this.stats;
      if (fault.delayMs > 0) {
        ex.addFlag('DI');
        st['fault.delays_injected']++;
        st['fault.active_faults']++;
        setTimeout(() => {
          st['fault.active_faults']--;
          if (ex.done) return;
          if (fault.abortStatus > 0) { st['fault.aborts_injected']++; finishLocal(ex, fault.abortStatus, BODY.faultAbort, 'FI'); return; }
          this.dispatch(ex, route, trust);
        }, fault.delayMs);
        return;
      }
      st['fault.aborts_injected']++;
      finishLocal(ex, fault.abortStatus, BODY.faultAbort, 'FI');
      return;
    }
    this.dispatch(ex, route, trust);
  }

  private dispatch(ex: Exchange, route: CompiledRoute | null, trust: boolean): void {
    const raw = ex.req.rawHeaders;
    if (trust) {
      const t = getRaw(raw, 'x-envoy-upstream-rq-timeout-ms');
      if (t !== undefined && /^\d+$/.test(t)) ex.globalTimeoutMs = Number(t);
    }
    const retryOnHdr = trust ? getRaw(raw, 'x-envoy-retry-on') : undefined;
    const maxRetriesHdr = trust ? getRaw(raw, 'x-envoy-max-retries') : undefined;
    const perTryHdr = trust ? getRaw(raw, 'x-envoy-upstream-rq-per-try-timeout-ms') : undefined;
    if (retryOnHdr === undefined && maxRetriesHdr === undefined && perTryHdr === undefined) {
      ex.retry = routePolicy(route?.retries ?? null); // compiled once per route
    } else {
      ex.retry = policyFrom(route?.retries ?? null, retryOnHdr, maxRetriesHdr);
      if (ex.retry && perTryHdr !== undefined && /^\d+$/.test(perTryHdr)) ex.retry.perTryTimeoutMs = Number(perTryHdr);
    }
    ex.cluster!.budget?.onRequest();
    const mirrors = route && route.mirrors.length > 0 ? route.mirrors : null;
    // Buffer the body only when a retry could need to replay it after it was sent, or a mirror copies it.
    const wantReplay = mirrors !== null || (ex.retry !== null && ex.retry.replayNeeded);
    prepareBody(ex, wantReplay, () => {
      if (ex.done) return;
      if (mirrors) {
        const body = Buffer.isBuffer(ex.body) ? ex.body : null;
        for (const m of mirrors) {
          if (m.percent < 100 && Math.random() * 100 >= m.percent) continue;
          if (ex.body !== null && body === null) { m.cluster.stats.retry_or_shadow_abandoned++; continue; }
          sendMirror(m.cluster, ex.method, ex.path, ex.headers, body, this.stats, this.opts.mirror, ex.globalTimeoutMs);
        }
      }
      forward(ex);
    });
  }
}

/** `Upgrade: h2c` alone: Envoy strips it and serves the request as plain HTTP/1.1 (the headers are hop-by-hop). */
function isH2cOnly(protocols: string[]): boolean {
  return protocols.length === 1 && protocols[0] === 'h2c';
}

/** Dtab headers the proxy consumes (trust) or every l5d-* header (strip). */
function dropsL5d(lower: string, strip: boolean): boolean {
  return strip ? lower.startsWith('l5d-') : lower === 'l5d-dtab' || lower === 'l5d-ctx-dtab';
}

