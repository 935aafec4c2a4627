// Peer: node-http-proxy with a keep-alive agent (its best configuration).
import { createServer, Agent } from 'node:http';
import httpProxy from 'http-proxy';
import { announce, peerArgs } from './args.ts';

const { port, upstream } = peerArgs();
const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: `http://${upstream.host}:${upstream.port}`, agent, xfwd: true });
proxy.on('error', (_e, _req, res) => { const r = res as import('node:http').ServerResponse; if (!r.headersSent) { r.writeHead(502); } r.end(); });
const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => announce(server));
