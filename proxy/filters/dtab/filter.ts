// The dtab filter (Linkerd's per-request delegation): the trusted l5d-ctx-dtab / l5d-dtab values
// the listener found are parsed on both listeners (a malformed value is a 400 with the parser's
// message, URL-encoded in l5d-err, before any routing) and passed on as l5d-ctx-dtab = show(ctx ++
// user), so the override follows the call graph. On the outbound listener the request's logical
// name is then bound through base ++ override (naming.ts) to a virtual host, a subset or an
// address; skipped entirely when there is no override and the base dtab is the default.
// Stats: `http.<listener>.dtab_override`, `dtab_error`.
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import type { Runtime } from '../../runtime.ts';
import { Flag } from '../../core/stream-info.ts';
import { Dtab, javaUrlEncode, parseDtabHeaders } from '../../dtab/index.ts';

export interface DtabFilterOptions {
  /** Bind the name (outbound); the inbound listener only parses and forwards the context. */
  bind: boolean;
  runtime: () => Runtime | null;
}

export class DtabFilter implements HttpFilter {
  readonly name = 'dtab';
  readonly stats = { dtab_override: 0, dtab_error: 0 };
  private readonly opts: DtabFilterOptions;

  constructor(opts: DtabFilterOptions) { this.opts = opts; }

  onRequest(s: HttpStream): boolean {
    let local: Dtab | null = null;
    if (s.dtabCtx !== null || s.dtabUser !== null) {
      const h = parseDtabHeaders(s.dtabCtx ?? [], s.dtabUser ?? []);
      if (!h.ok) { this.error(s, 400, h.message, 0); return false; }
      if (h.local.size > 0) { s.info.dtabOverride = true; this.stats.dtab_override++; }
      if (h.forwardCtx !== null) s.headers.push('l5d-ctx-dtab', h.forwardCtx);
      local = h.local;
      s.localDtab = local;
    }
    if (!this.opts.bind) return true;
    const rt = this.opts.runtime();
    if (rt === null || (local === null && rt.naming.trivial)) return true;
    const req = s.req;
    const t = rt.naming.resolveRequest({ method: s.method, uri: s.path, httpVersion: req.httpVersion, header: (n) => req.header(n) }, local ?? Dtab.empty);
    switch (t.kind) {
      case 'error': this.error(s, t.status, t.message, Flag.NR); return false;
      case 'vhost': s.vhost = t.vhost; break;
      case 'route': s.route = t.route; break;
      case 'address': {
        const r = rt.addressRoute(t.host, t.port);
        if (typeof r === 'string') { this.error(s, 502, r, Flag.NR); return false; }
        s.route = r;
        break;
      }
    }
    if (t.uri !== undefined) s.path = t.uri; // a consuming identifier
    return true;
  }

  /** Linkerd: the message in the body and URL-encoded in l5d-err. */
  private error(s: HttpStream, status: number, message: string, flag: number): void {
    this.stats.dtab_error++;
    s.sendLocalReply(status, message, flag, { 'l5d-err': javaUrlEncode(message).slice(0, 8192) });
  }
}
