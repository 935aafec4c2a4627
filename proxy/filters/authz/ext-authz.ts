// CUSTOM authorization through an HTTP ext-authz service (Envoy's ext_authz filter, HTTP mode, as
// Istio's `envoyExtAuthzHttp` extension provider configures it): the check request carries the
// original method and path (after `pathPrefix`), Host, and the request headers the provider lists
// (`includeRequestHeadersInCheck`), no body. A 2xx answer allows (headers named in
// `headersToUpstreamOnAllow` are copied onto the request); any other status denies with the
// service's status, body and the headers named in `headersToDownstreamOnDeny`. A failure to get an
// answer (connect error, timeout, a 5xx from the service counts as an answer) is `statusOnError`
// (403) unless `failOpen`.
import type { HttpStream } from '../../listener/stream.ts';

export interface ExtAuthzProvider {
  name: string;
  /** http://host:port of the service. */
  service: string;
  pathPrefix?: string;
  timeoutMs?: number;
  failOpen?: boolean;
  statusOnError?: number;
  includeRequestHeadersInCheck?: string[];
  headersToUpstreamOnAllow?: string[];
  headersToDownstreamOnDeny?: string[];
}

export type Verdict =
  | { kind: 'ok' }
  | { kind: 'deny'; status: number; body: string; headers: Record<string, string> }
  | { kind: 'error' };

export class ExtAuthz {
  readonly p: ExtAuthzProvider;
  constructor(p: ExtAuthzProvider) { this.p = p; }

  check(s: HttpStream, done: (v: Verdict) => void): void {
    const p = this.p;
    const include = new Set((p.includeRequestHeadersInCheck ?? []).map((h) => h.toLowerCase()));
    const headers: Record<string, string> = {};
    const raw = s.req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i].toLowerCase();
      if (include.has(n)) headers[n] = headers[n] ? `${headers[n]},${raw[i + 1]}` : raw[i + 1];
    }
    // Envoy always sends these (the Host as x-forwarded-host: the check goes to the service's own host).
    if (s.req.host) headers['x-forwarded-host'] = s.req.host;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), p.timeoutMs ?? 600_000);
    const onError = () => {
      if (p.failOpen) done({ kind: 'error' });
      else done({ kind: 'deny', status: p.statusOnError ?? 403, body: '', headers: {} });
    };
    fetch(`${p.service.replace(/\/$/, '')}${p.pathPrefix ?? ''}${s.req.url}`, { method: s.req.method, headers, signal: ctl.signal, redirect: 'manual' })
      .then(async (r) => {
        const body = await r.text();
        clearTimeout(timer);
        if (r.status >= 200 && r.status < 300) {
          for (const h of p.headersToUpstreamOnAllow ?? []) {
            const v = r.headers.get(h);
            if (v === null) continue;
            const lh = h.toLowerCase();
            for (let i = s.headers.length - 2; i >= 0; i -= 2) if (s.headers[i].toLowerCase() === lh) s.headers.splice(i, 2);
            s.headers.push(lh, v);
          }
          done({ kind: 'ok' });
          return;
        }
        const out: Record<string, string> = {};
        for (const h of p.headersToDownstreamOnDeny ?? []) { const v = r.headers.get(h); if (v !== null) out[h.toLowerCase()] = v; }
        done({ kind: 'deny', status: r.status, body, headers: out });
      }, () => { clearTimeout(timer); onError(); })
      .catch((e) => s.fail('authz', e));
  }
}
