// Peer: fastify + @fastify/reply-from (undici underneath).
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';
import { peerArgs } from './args.ts';

const { port, upstream } = peerArgs();
const app = Fastify({ logger: false, keepAliveTimeout: 65_000 });
// A proxy passes bodies through unparsed, whatever their content type (or none).
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => { done(null, payload); });
await app.register(replyFrom, { base: `http://${upstream.host}:${upstream.port}`, undici: { connections: 128, pipelining: 1 } });
// reply-from sets Host to the upstream's; keep the client's, as every other arm does.
app.all('/*', (req, reply) => { reply.from(req.url, { rewriteRequestHeaders: (r, h) => ({ ...h, host: r.headers.host }) }); });
await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`${JSON.stringify({ port: (app.server.address() as { port: number }).port })}\n`);
