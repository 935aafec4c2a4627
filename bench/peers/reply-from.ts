// Peer: fastify + @fastify/reply-from (undici underneath).
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';
import { peerArgs } from './args.ts';

const { port, upstream } = peerArgs();
const app = Fastify({ logger: false, keepAliveTimeout: 65_000 });
await app.register(replyFrom, { base: `http://${upstream.host}:${upstream.port}`, undici: { connections: 128, pipelining: 1 } });
app.all('/*', (req, reply) => { reply.from(req.url); });
await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`${JSON.stringify({ port: (app.server.address() as { port: number }).port })}\n`);
