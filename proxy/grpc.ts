// gRPC facts the proxy needs, in one place: is a request gRPC, Envoy's HTTP -> gRPC status mapping
// for local replies (Envoy Grpc::Utility::httpToGrpcStatus), the grpc-timeout header (parse and
// format, https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md), and grpc-status
// from a header list.

/** `content-type: application/grpc` or `application/grpc+<codec>` / `;...` (Envoy's Grpc::Common::isGrpcRequestHeaders). */
export function isGrpcContentType(ct: string | undefined): boolean {
  if (ct === undefined || ct.length < 16) return false;
  if (ct.charCodeAt(0) !== 0x61 && ct.charCodeAt(0) !== 0x41) return false;
  const l = ct.toLowerCase();
  if (!l.startsWith('application/grpc')) return false;
  if (l.length === 16) return true;
  const c = l.charCodeAt(16);
  return c === 0x2b /* + */ || c === 0x3b /* ; */;
}

/** The request's content-type from raw headers (first one). */
export function contentTypeOf(raw: string[]): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 12 && raw[i].toLowerCase() === 'content-type') return raw[i + 1];
  return undefined;
}

/** Envoy's httpToGrpcStatus: the gRPC status a local reply with this HTTP status becomes. */
export function httpToGrpcStatus(http: number): number {
  switch (http) {
    case 400: return 13; // INTERNAL
    case 401: return 16; // UNAUTHENTICATED
    case 403: return 7;  // PERMISSION_DENIED
    case 404: return 12; // UNIMPLEMENTED
    case 429: case 502: case 503: case 504: return 14; // UNAVAILABLE
    default: return 2;   // UNKNOWN
  }
}

/** The gRPC status names Envoy's retry_grpc_on / Istio's retryOn use. */
export const GRPC_RETRY_CODES: Record<string, number> = {
  'cancelled': 1, 'deadline-exceeded': 4, 'resource-exhausted': 8, 'internal': 13, 'unavailable': 14,
};

/** grpc-message is percent-encoded (anything outside printable ASCII, and '%'). */
export function encodeGrpcMessage(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout` (1-8 digits and a unit H M S m u n) in ms; undefined if absent or malformed (Envoy ignores those). */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (v === undefined || v.length < 2 || v.length > 9) return undefined;
  const unit = UNIT_MS[v[v.length - 1]];
  const digits = v.slice(0, -1);
  if (unit === undefined || !/^\d{1,8}$/.test(digits)) return undefined;
  return Number(digits) * unit;
}

/** A timeout in ms as grpc-timeout (whole milliseconds, at least 1: 0 would mean "already expired"). */
export function formatGrpcTimeout(ms: number): string {
  const n = Math.max(1, Math.ceil(ms));
  return n < 100_000_000 ? `${n}m` : `${Math.ceil(n / 1000)}S`;
}

/** grpc-status in a flat header list; -1 when absent or not a number. */
export function grpcStatusOf(raw: string[] | null): number {
  if (raw === null) return -1;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 11 && raw[i].toLowerCase() === 'grpc-status') {
      const v = raw[i + 1];
      return /^\d{1,3}$/.test(v) ? Number(v) : -1;
    }
  }
  return -1;
}

export function grpcMessageOf(raw: string[] | null): string | null {
  if (raw === null) return null;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 12 && raw[i].toLowerCase() === 'grpc-message') return raw[i + 1];
  return null;
}

/** A grpc-message as text (it is percent-encoded on the wire); a malformed escape is kept as is. */
export function decodeGrpcMessage(v: string): string {
  if (!v.includes('%')) return v;
  try { return decodeURIComponent(v); } catch { return v; }
}
