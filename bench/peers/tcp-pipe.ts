// Reference, not a proxy: each client connection gets its own upstream connection and bytes are
// copied both ways, with no HTTP parsing, routing or pooling. Two reads and two writes per
// request: the floor any Node proxy pays on this machine (its CPU is almost all syscalls).
import { createServer, connect } from 'node:net';
import { announce, peerArgs } from './args.ts';

const { port, upstream } = peerArgs();
const server = createServer({ noDelay: true }, (c) => {
  const u = connect({ host: upstream.host, port: upstream.port, noDelay: true });
  c.on('data', (d) => { if (!u.write(d)) { c.pause(); u.once('drain', () => c.resume()); } });
  u.on('data', (d) => { if (!c.write(d)) { u.pause(); c.once('drain', () => u.resume()); } });
  c.on('error', () => {});
  u.on('error', () => {});
  c.on('close', () => u.destroy());
  u.on('close', () => c.destroy());
});
server.listen(port, '127.0.0.1', () => announce(server));
