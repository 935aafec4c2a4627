// The benchmark's upstream: a plain node http server answering a fixed body. Its own process,
// so it never competes with the harness or the proxy under test for an event loop.
import { createServer } from 'node:http';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const small = Buffer.alloc(Number(args.get('size') ?? 1024), 'a');
const big = Buffer.alloc(64 * 1024, 'b');
const server = createServer((req, res) => {
  const body = req.url === '/64k' ? big : small;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(args.get('port') ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
