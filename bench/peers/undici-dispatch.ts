// Peer: the honest baseline — http.createServer + undici Pool.dispatch, streaming both ways,
// hop-by-hop headers dropped. What "a Node proxy that merely wraps undici" costs.
import { createServer } from 'node:http';
import { Pool } from 'undici';
import { announce, peerArgs } from './args.ts';

const { port, upstream } = peerArgs();
const pool = new Pool(`http://${upstream.host}:${upstream.port}`, { connections: 128, pipelining: 1 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);
const server = createServer((req, res) => {
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (!HOP.has(req.rawHeaders[i].toLowerCase())) headers.push(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.dispatch({ path: req.url ?? '/', method: req.method ?? 'GET', headers, body: hasBody ? req : null }, {
    onRequestStart() {},
    onResponseStart(c, status) {
      const out: string[] = [];
      const raw = c.rawHeaders as Buffer[];
      for (let i = 0; i < raw.length; i += 2) { const k = raw[i].toString(); if (!HOP.has(k.toLowerCase())) out.push(k, raw[i + 1].toString()); }
      res.writeHead(status, out);
    },
    onResponseData(c, chunk) { if (!res.write(chunk)) { c.pause(); res.once('drain', () => c.resume()); } },
    onResponseEnd() { res.end(); },
    onResponseError() { if (!res.headersSent) res.writeHead(502); res.end(); },
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => announce(server));
