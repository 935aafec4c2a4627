// Replies the proxy makes itself, with Envoy's exact statuses and bodies (envoy-semantics.md
// section 0) and the response flag in `x-meshlet-flags`.
import type { ServerResponse } from './engine/server.ts';
import { httpDate } from './engine/date.ts';
import { encodeGrpcMessage } from './grpc.ts';

export const RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. ';

export const BODY = {
  overflow: `${RESET_PREFIX}reset reason: overflow`,
  noHealthy: 'no healthy upstream',
  timeout: 'upstream request timeout',
  faultAbort: 'fault filter abort',
  bufferLimit: 'exceeded request buffer limit while retrying upstream',
};

/** Envoy's reset body, with its "retried and the latest" wording after a retry. */
export function resetBody(reason: string, retried: boolean, transport?: string): string {
  const head = retried ? `${RESET_PREFIX.slice(0, -2)}. retried and the latest reset reason: ` : `${RESET_PREFIX}reset reason: `;
  return `${head}${reason}${transport ? `, transport failure reason: ${transport}` : ''}`;
}

/**
 * A local reply. For a gRPC request (`grpc` >= 0: the gRPC status, usually httpToGrpcStatus of
 * `status`) it is a gRPC error, as Envoy makes it: HTTP 200, a trailers-only response with
 * `grpc-status` and the body as `grpc-message`; the status actually sent is returned.
 */
export function localReply(
  res: ServerResponse, status: number, body: string, flags: string | null,
  extra?: Record<string, string>, grpc = -1,
): number {
  if (res.headersSent || res.destroyed) { res.destroy(); return status; }
  if (grpc >= 0) {
    const gs = grpc;
    const h = ['content-type', 'application/grpc', 'grpc-status', String(gs), 'grpc-message', encodeGrpcMessage(body || String(status)),
      'content-length', '0', 'date', httpDate(), 'server', 'meshlet'];
    if (flags) h.push('x-meshlet-flags', flags);
    if (extra) for (const k in extra) h.push(k, extra[k]);
    res.writeHead(200, undefined, h);
    res.end();
    return 200;
  }
  const headers = ['content-type', 'text/plain', 'content-length', String(Buffer.byteLength(body)), 'date', httpDate(), 'server', 'meshlet'];
  if (flags) headers.push('x-meshlet-flags', flags);
  if (extra) for (const k in extra) headers.push(k, extra[k]);
  res.writeHead(status, undefined, headers);
  res.end(body);
  return status;
}
