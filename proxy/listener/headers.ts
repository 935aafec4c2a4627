// Request/response header hygiene on the raw header arrays Node gives us (no header objects on
// the forwarding path): hop-by-hop removal per RFC 9110 section 7.6.1, plus headers the proxy owns.
import type { HeaderOpsSpec } from '../config/schema.ts';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection',
  'proxy-authenticate', 'proxy-authorization', 'expect', 'http2-settings']);

/** Request headers the proxy always recomputes (never forwarded as received). */
const OWNED_REQUEST = new Set(['x-forwarded-proto', 'x-envoy-attempt-count', 'x-envoy-expected-rq-timeout-ms']);

/** Envoy control headers: honoured only from trusted callers, never forwarded (spec section 4.2). */
export const ENVOY_CONTROL = new Set(['x-envoy-retry-on', 'x-envoy-retry-grpc-on', 'x-envoy-max-retries', 'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-rq-per-try-timeout-ms', 'x-envoy-retriable-status-codes', 'x-envoy-retriable-header-names',
  'x-envoy-upstream-rq-timeout-alt-response', 'x-envoy-hedge-on-per-try-timeout']);

function connectionTokens(raw: string[]): Set<string> | null {
  let out: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === 'connection') {
      for (const t of raw[i + 1].split(',')) {
        const v = t.trim().toLowerCase();
        if (v) (out ??= new Set()).add(v);
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
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (isHopByHop(lower, named) || OWNED_REQUEST.has(lower) || ENVOY_CONTROL.has(lower)) continue;
    if (drop !== null && drop(lower)) continue;
    out.push(name, raw[i + 1]);
  }
  return out;
}

/** Filter raw upstream response headers for the downstream response. */
export function downstreamResponseHeaders(raw: string[]): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    if (isHopByHop(lower, named)) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

export function getRaw(raw: string[], lower: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === lower.length && raw[i].toLowerCase() === lower) return raw[i + 1];
  return undefined;
}

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
