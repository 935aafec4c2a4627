// A tiny plain-node HTTP app for the examples. It forwards the headers a mesh needs on its own
// outbound calls (request id, l5d-ctx-*, l5d-dtab when called from outside, trace context), as
// real services behind a sidecar must.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';

const PROPAGATE = /^(x-request-id|l5d-ctx-.*|l5d-dtab|traceparent|tracestate|b3|x-b3-.*|end-user|cookie)$/i;

export function propagated(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (PROPAGATE.test(req.rawHeaders[i])) out[req.rawHeaders[i].toLowerCase()] = req.rawHeaders[i + 1];
  }
  return out;
}

/** Call another service through the local sidecar's outbound listener. */
export function call(outboundPort: number, host: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: outboundPort, path, headers: { ...headers, host }, agent: false }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
    req.end();
  });
}

export function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}
