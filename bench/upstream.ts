// The benchmark's upstream: a plain node http server answering a fixed body. Its own process,
// so it never competes with the harness or the proxy under test for an event loop.
import { createServer } from 'node:http';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const small = Buffer.alloc(Number(args.get('size') ?? 1024), 'a');
const big = Buffer.alloc(64 * 1024, 'b');
// Faults for the balancing bench (bench/lb.ts): --delay-ms adds latency to every answer,
// --error-percent answers that share with 503 (every (100/p)-th request: deterministic).
const delayMs = Number(args.get('delay-ms') ?? 0);
const errorEvery = Number(args.get('error-percent') ?? 0) > 0 ? Math.round(100 / Number(args.get('error-percent'))) : 0;
let served = 0;
const server = createServer((req, res) => {
  const body = req.url === '/64k' ? big : small;
  const status = errorEvery > 0 && ++served % errorEvery === 0 ? 503 : 200;
  const answer = () => { res.writeHead(status, { 'content-type': 'text/plain', 'content-length': body.length }); res.end(body); };
  if (delayMs > 0) setTimeout(answer, delayMs); else answer();
});
server.keepAliveTimeout = 65_000;
server.listen(Number(args.get('port') ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
