// proxy/xds/http.ts, the control client's HTTP on the proxy's own engine, against real servers on
// loopback: requests in order on one kept-alive connection, a new one after the server closed it,
// timeouts, refusals, and a streamed body decoded as UTF-8 across chunk boundaries.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { ControlChannel, controlStream } from '../../proxy/xds/http.ts';
import { getRaw } from '../../proxy/listener/headers.ts';
import { deadPort } from '../helpers.ts';

const servers: Array<Server | NetServer> = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((r) => { if ('closeAllConnections' in s) s.closeAllConnections(); s.close(() => r()); });
});

async function listen<T extends Server | NetServer>(s: T): Promise<URL> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return new URL(`http://127.0.0.1:${(s.address() as { port: number }).port}`);
}

describe('ControlChannel', () => {
  it('sends requests one after another on one kept-alive connection, in the order they were made', async () => {
    const seen: string[] = [];
    let connections = 0;
    const s = createServer((req, res) => {
      let b = '';
      req.on('data', (c) => { b += c; });
      // The first answer is slow: a channel that did not wait would send the others meanwhile.
      req.on('end', () => { seen.push(`${req.method} ${req.url} ${b}`); setTimeout(() => res.end(`ok ${b}`), seen.length === 1 ? 100 : 0); });
    });
    s.on('connection', () => { connections++; });
    const base = await listen(s);
    const ch = new ControlChannel(base);
    const rs = await Promise.all([1, 2, 3].map((i) => ch.request('POST', `/v1/ack?i=${i}`, { 'content-type': 'application/json' }, JSON.stringify({ i }), 2000)));
    expect(rs.map((r) => [r.status, r.body])).toEqual([[200, 'ok {"i":1}'], [200, 'ok {"i":2}'], [200, 'ok {"i":3}']]);
    expect(seen).toEqual(['POST /v1/ack?i=1 {"i":1}', 'POST /v1/ack?i=2 {"i":2}', 'POST /v1/ack?i=3 {"i":3}']);
    expect(connections).toBe(1);
    expect(getRaw(rs[0].headers, 'content-length')).toBe('10');
    ch.close();
    await expect(ch.request('POST', '/v1/ack', {}, '{}', 1000)).rejects.toThrow(/stopped/);
  });

  it('close() fails the request in flight at once and leaves no connection open, however far it got', async () => {
    const held: import('node:net').Socket[] = [];
    const base = await listen(createNetServer((c) => { held.push(c); c.resume(); /* never answers */ }));
    // Closed before the request starts, while it connects, and once it is sent.
    for (const wait of [null, () => new Promise((r) => setImmediate(r)), () => new Promise((r) => setTimeout(r, 50))]) {
      const ch = new ControlChannel(base);
      const p = ch.request('POST', '/v1/ack', {}, '{}', 5000);
      if (wait) await wait();
      const t0 = Date.now();
      ch.close();
      await expect(p).rejects.toThrow(/stopped/);
      expect(Date.now() - t0).toBeLessThan(1000);
    }
    const until = Date.now() + 2000;
    while (held.some((c) => !c.destroyed) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(held.length).toBeGreaterThanOrEqual(1); // the last one was sent
    expect(held.filter((c) => !c.destroyed)).toEqual([]);
  });

  it('opens a new connection when the server closed the idle one', async () => {
    let connections = 0;
    const s = createServer((_req, res) => { res.setHeader('connection', 'close'); res.end('bye'); });
    s.on('connection', () => { connections++; });
    const base = await listen(s);
    const ch = new ControlChannel(base);
    expect((await ch.request('POST', '/a', {}, '', 2000)).body).toBe('bye');
    expect((await ch.request('DELETE', '/b?node=x', {}, '', 2000)).status).toBe(200);
    expect(connections).toBe(2);
    ch.close();
  });

  it('a server that never answers times the request out; a dead port refuses it', async () => {
    const held: import('node:net').Socket[] = [];
    const silent = createNetServer((c) => { held.push(c); c.resume(); /* reads, never answers */ });
    const base = await listen(silent);
    const ch = new ControlChannel(base);
    const t0 = Date.now();
    await expect(ch.request('POST', '/v1/heartbeat', {}, '{}', 200)).rejects.toThrow('POST /v1/heartbeat: timed out');
    expect(Date.now() - t0).toBeLessThan(2000);
    ch.close();
    // The timed-out exchange's connection was closed from our side.
    const until = Date.now() + 2000;
    while (held.some((c) => !c.destroyed) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(held.length).toBe(1);
    expect(held[0].destroyed).toBe(true);
    const dead = new ControlChannel(new URL(`http://127.0.0.1:${await deadPort()}`));
    await expect(dead.request('POST', '/v1/ack', {}, '{}', 2000)).rejects.toThrow(/ECONNREFUSED/);
    dead.close();
  });
});

describe('controlStream', () => {
  it('hands on the body as it streams, decoding a UTF-8 character split across chunks, then ends', async () => {
    const s = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'x-meshlet-heartbeat-ms': '5000' });
      const line = Buffer.from('{"type":"keepalive","note":"é✓"}\n');
      const cut = line.indexOf(0xc3) + 1; // inside the two bytes of 'é'
      res.write(line.subarray(0, cut));
      setTimeout(() => { res.write(line.subarray(cut)); res.end(); }, 30);
    });
    const base = await listen(s);
    const got = await new Promise<{ status: number; hb: string | undefined; text: string; err: Error | null }>((resolve) => {
      let status = 0, hb: string | undefined, text = '';
      controlStream(base, 'POST', '/v1/discovery', { 'content-type': 'application/json' }, '{"node":{}}', {
        onStart: (st, raw) => { status = st; hb = getRaw(raw, 'x-meshlet-heartbeat-ms'); },
        onText: (t) => { text += t; },
        onEnd: (err) => resolve({ status, hb, text, err }),
      });
    });
    expect(got).toEqual({ status: 200, hb: '5000', text: '{"type":"keepalive","note":"é✓"}\n', err: null });
  });

  it('destroy ends it once with the given error; a refused connection ends it with the socket error', async () => {
    const s = createServer((req, res) => { req.resume(); res.writeHead(200); res.write('{}\n'); /* never ends */ });
    const base = await listen(s);
    const ends: Array<Error | null> = [];
    const st = controlStream(base, 'POST', '/v1/discovery', {}, '{}', {
      onStart: () => {},
      onText: () => { st.destroy(new Error('no data from control for 35 s')); st.destroy(new Error('again')); },
      onEnd: (err) => { ends.push(err); },
    });
    const deadline = Date.now() + 3000;
    while (ends.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    expect(ends.map((e) => e?.message)).toEqual(['no data from control for 35 s']);
    const refused = await new Promise<Error | null>(async (resolve) => {
      controlStream(new URL(`http://127.0.0.1:${await deadPort()}`), 'POST', '/v1/discovery', {}, '{}', { onStart: () => {}, onText: () => {}, onEnd: resolve });
    });
    expect(refused?.message).toMatch(/ECONNREFUSED/);
  });
});
