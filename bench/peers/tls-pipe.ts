// Reference for the mutual-TLS hop, not a proxy: tcp-pipe.ts with TLS 1.3 on one side. Two of them
// make the hop with no HTTP in it: the outbound one (`--tls connect`) takes plaintext and opens a
// TLS connection that presents its certificate and verifies the server's name (inbound.bench);
// the inbound one (`--tls listen`) accepts only clients whose certificate the CA signed and
// copies plaintext to the upstream. One TLS connection per client connection, kept open, so the
// handshakes happen in the warm-up and what is measured is the record work of Node's TLS: the
// floor of any Node sidecar pair with mutual TLS.
//   --tls connect|listen --cert <pem> --key <pem> --ca <pem> [--servername <name>]
import { readFileSync } from 'node:fs';
import { createServer as netServer, connect as netConnect, type Server } from 'node:net';
import { createServer as tlsServer, connect as tlsConnect } from 'node:tls';
import { announce, peerArgs } from './args.ts';
import { splice } from './pipe.ts';

const { port, upstream, extra } = peerArgs();
const need = (k: string): string => {
  const v = extra.get(k);
  if (!v) { process.stderr.write(`tls-pipe: --${k} is required\n`); process.exit(2); }
  return v;
};
const mode = need('tls');
const creds = { cert: readFileSync(need('cert')), key: readFileSync(need('key')), ca: readFileSync(need('ca')), minVersion: 'TLSv1.3' as const };

let server: Server;
if (mode === 'connect') {
  const servername = extra.get('servername') ?? 'inbound.bench';
  server = netServer({ noDelay: true }, (c) => {
    const u = tlsConnect({ ...creds, host: upstream.host, port: upstream.port, servername });
    u.setNoDelay(true);
    splice(c, u);
  });
} else if (mode === 'listen') {
  server = tlsServer({ ...creds, requestCert: true, rejectUnauthorized: true, noDelay: true }, (c) => {
    splice(c, netConnect({ host: upstream.host, port: upstream.port, noDelay: true }));
  });
} else {
  process.stderr.write(`tls-pipe: --tls must be connect or listen, not ${mode}\n`);
  process.exit(2);
}
server.listen(port, '127.0.0.1', () => announce(server));
