// Reference, not a proxy: each client connection gets its own upstream connection and bytes are
// copied both ways, with no HTTP parsing, routing or pooling. Two reads and two writes per
// request: the floor any Node proxy pays on this machine (its CPU is almost all syscalls).
import { createServer, connect } from 'node:net';
import { announce, peerArgs } from './args.ts';
import { splice } from './pipe.ts';

const { port, upstream } = peerArgs();
const server = createServer({ noDelay: true }, (c) => {
  splice(c, connect({ host: upstream.host, port: upstream.port, noDelay: true }));
});
server.listen(port, '127.0.0.1', () => announce(server));
