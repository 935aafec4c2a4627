// Request/response header hygiene on the raw header arrays Node gives us (no header objects on
// the forwarding path): hop-by-hop removal per RFC 9110 section 7.6.1, plus headers the proxy owns.
import type { HeaderOpsSpec } from '../config/schema.ts';
import { fieldValue, listTokens } from '../engine/http1.ts';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection',
  'proxy-authenticate', 'proxy-authorization', 'expect', 'http2-settings']);

/** Request headers the proxy always recomputes (never forwarded as received). */
const OWNED_REQUEST = new Set(['x-forwarded-proto', 'x-envoy-attempt-count', 'x-envoy-expected-rq-timeout-ms']);

/** Envoy control headers: honoured only from trusted callers, never forwarded (spec section 4.2). */
export const ENVOY_CONTROL = new Set(['x-envoy-retry-on', 'x-envoy-retry-grpc-on', 'x-envoy-max-retries', 'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-rq-per-try-timeout-ms', 'x-envoy-retriable-status-codes', 'x-envoy-retriable-header-names',
  'x-envoy-upstream-rq-timeout-alt-response', 'x-envoy-hedge-on-per-try-timeout']);

/**
 * Request headers the proxy itself is responsible for: a `Connection` header naming one of them
 * does not remove it (RFC 9110 section 7.6.1 lets a client drop its own hop-by-hop fields, not the
 * ones this hop computes or routes by): Host, X-Forwarded-For/-Proto, X-Request-Id, the trace
 * context and the l5d-/x-envoy- families (read or rewritten by the proxy, never the client's to
 * unset).
 */
const PROXY_OWNED = new Set(['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'forwarded', 'via',
  'traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags',
  'content-length']);

function isProxyOwned(lower: string): boolean {
  return PROXY_OWNED.has(lower) || lower.startsWith('l5d-') || lower.startsWith('x-envoy-');
}

/** The field names a Connection header nominates (SP/HTAB-trimmed, ASCII-lower-cased), minus the proxy's own. */
function connectionTokens(raw: string[], request: boolean): Set<string> | null {
  let out: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === 'connection') {
      for (const v of listTokens(raw[i + 1])) {
        if (request && isProxyOwned(v)) continue;
        (out ??= new Set()).add(v);
      }
    }
  }
  return out;
}

export function isHopByHop(lower: string, named: Set<string> | null): boolean {
  return HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || (named !== null && named.has(lower));
}

/**
 * Filter raw request headers for the upstream. `drop` names further lower-case headers to remove
 * (e.g. l5d-* when stripping context, or route header ops). Returns a flat [name, value, …] array.
 */
export function upstreamRequestHeaders(raw: string[], drop: ((lower: string) => boolean) | null): string[] {
  const named = connectionTokens(raw, true);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (isHopByHop(lower, named) || OWNED_REQUEST.has(lower) || ENVOY_CONTROL.has(lower)) {
      // As Envoy: TE is hop-by-hop, but `te: trailers` goes on (gRPC's check for proxies that drop trailers).
      if (lower === 'te' && raw[i + 1].toLowerCase() === 'trailers') out.push(name, raw[i + 1]);
      continue;
    }
    if (drop !== null && drop(lower)) continue;
    out.push(name, raw[i + 1]);
  }
  return out;
}

/**
 * Filter raw upstream response headers for the downstream response. Nominated fields go (the
 * upstream's own hop-by-hop fields); what the proxy adds to a response (Date when missing,
 * x-meshlet-flags, framing) is added after this, so a nomination cannot remove it.
 */
export function downstreamResponseHeaders(raw: string[]): string[] {
  const named = connectionTokens(raw, false);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    if (isHopByHop(lower, named)) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** The first value of header `lower` (engine/http1.ts fieldValue, under the name the listener's callers use). */
export const getRaw: (raw: readonly string[], lower: string) => string | undefined = fieldValue;

export function removeRaw(raw: string[], lower: string): void {
  for (let i = raw.length - 2; i >= 0; i -= 2) if (raw[i].toLowerCase() === lower) raw.splice(i, 2);
}

/** VirtualService header operations: remove, then set (replacing every occurrence), then add. */
export function applyOps(headers: string[], ops: HeaderOpsSpec | undefined): void {
  if (!ops) return;
  if (ops.remove) for (const n of ops.remove) removeRaw(headers, n.toLowerCase());
  if (ops.set) for (const [n, v] of Object.entries(ops.set)) { removeRaw(headers, n.toLowerCase()); headers.push(n, v); }
  if (ops.add) for (const [n, v] of Object.entries(ops.add)) headers.push(n, v);
}
