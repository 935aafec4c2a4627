// An upstream that closes each connection shortly after its response without saying
// `Connection: close` (some HTTP/1.1 servers and load balancers do): the proxy may reuse such a
// connection just before the close arrives. An idempotent request must not fail because of it.
import { createServer, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, send, serviceYaml, type Reply } from '../helpers.ts';
import { stats } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

/** Answers the first request of each connection, ignores anything after it, closes `closeMs` later. */
async function closingUpstream(closeMs: number): Promise<number> {
  const socks = new Set<Socket>();
  const srv = createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => {});
    let buf = '';
    let answered = false;
    s.on('data', (c) => {
      if (answered) return;
      buf += c.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      answered = true;
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      setTimeout(() => s.destroy(), closeMs);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  fx.add(() => new Promise<void>((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }));
  return (srv.address() as { port: number }).port;
}

describe('stale keep-alive connections', () => {
  it('GETs reusing connections the upstream is about to close all succeed (bounded resends)', async () => {
    const port = await closingUpstream(15);
    const p = await fx.proxy(serviceYaml('ratings', [port]));
    const replies: Reply[] = [];
    const loop = async () => { for (let i = 0; i < 80; i++) replies.push(await send(p.ports.outbound, { host: 'ratings' })); };
    await Promise.all([loop(), loop(), loop()]);
    const failed = replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.headers['x-meshlet-flags']}`);
    expect(failed).toEqual([]);
    expect(replies.length).toBe(240);
    // Each connection carries one answered request, so at least one connection per reply: the
    // reuses that raced the close were resent on new connections, never answered with 503 UC.
    const s = await stats(p.ports.admin);
    expect(s.get('cluster.outbound|80||ratings;.upstream_cx_total')!).toBeGreaterThanOrEqual(240);
    expect(s.get('cluster.outbound|80||ratings;.upstream_rq_5xx') ?? 0).toBe(0);
  });
});
