// The engine's upstream connection against a real upstream server on loopback.
import { afterAll, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { ClientConnection, type ResponseHandler } from '../../proxy/engine/client.ts';

const servers: Server[] = [];
const sockets: Socket[] = [];
afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
});

/** An upstream answering GET /big with `size` bytes and anything else with "ok". */
async function upstream(size: number): Promise<number> {
  const big = Buffer.alloc(size, 'b');
  const s = createServer((c) => {
    sockets.push(c);
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        const body = head.startsWith('GET /big') ? big : Buffer.from('ok');
        c.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
      }
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as { port: number }).port;
}

async function connected(port: number): Promise<ClientConnection> {
  const sock = connect({ host: '127.0.0.1', port });
  sockets.push(sock);
  await new Promise((r) => sock.once('connect', r));
  return new ClientConnection(sock, `127.0.0.1:${port}`);
}

function get(conn: ClientConnection, path: string, onData?: (c: ClientConnection, n: number) => void): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let bytes = 0;
    const h: ResponseHandler = {
      onResponseStart: (_c, s) => { status = s; },
      onResponseData: (c, chunk) => { bytes += chunk.length; onData?.(c as ClientConnection, bytes); },
      onResponseEnd: () => resolve({ status, bytes }),
      onResponseError: (_c, e) => reject(e),
    };
    conn.dispatch({ method: 'GET', path, headers: ['host', 'x'], body: null }, h);
  });
}

describe('engine client connection', () => {
  it('a response that ends while its reader is paused leaves the connection reading for the next request', async () => {
    const size = 100_000;
    const conn = await connected(await upstream(size));
    // The router pauses a connection when the downstream is backed up; here the response's
    // last bytes arrive while paused, and the downstream never drains.
    const first = await get(conn, '/big', (c, n) => { if (n === size) c.pause(); });
    expect(first).toEqual({ status: 200, bytes: size });
    expect(conn.closed).toBe(false);
    const second = await Promise.race([
      get(conn, '/small'),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the reused connection never read its response')), 2000)),
    ]);
    expect(second).toEqual({ status: 200, bytes: 2 });
  });

  it('keeps framing across keep-alive requests and reports an upstream close before a response as an error', async () => {
    const conn = await connected(await upstream(10));
    for (let i = 0; i < 5; i++) expect(await get(conn, i % 2 ? '/big' : '/small')).toEqual({ status: 200, bytes: i % 2 ? 10 : 2 });
    for (const s of sockets) if (s !== conn.socket && s.remotePort === conn.socket.localPort) s.destroy();
    await new Promise((r) => setTimeout(r, 50));
    await expect(get(conn, '/small')).rejects.toThrow();
  });
});
