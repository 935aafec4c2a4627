// HTTP/1.1 done right through the proxy: streaming both ways, aborts, resets, HEAD/204/304,
// Expect: 100-continue, malformed and oversized requests, and every typed error path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { Fixtures, deadPort, echo, send, serviceYaml, stat, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

/** Raw request over a socket; resolves with everything the proxy sent before closing. */
async function raw(port: number, text: string | Buffer, waitMs = 1000): Promise<string> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write(text);
  const chunks: Buffer[] = [];
  s.on('data', (c) => chunks.push(c));
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, waitMs))]);
  s.destroy();
  return Buffer.concat(chunks).toString('latin1');
}

describe('typed errors (Envoy statuses, bodies and flags)', () => {
  it('no route: 404 NR with an empty body', async () => {
    const u = await fx.upstream(echo('a'));
    const p = await fx.proxy(serviceYaml('a', [u.port]));
    const r = await send(p.ports.outbound, { host: 'unknown.example' });
    expect(r.status).toBe(404);
    expect(r.body).toBe('');
    expect(r.headers['x-meshlet-flags']).toBe('NR');
    expect(await stat(p.ports.admin, 'http.outbound.no_route')).toBe(1);
  });

  it('no endpoints: 503 UH no healthy upstream', async () => {
    const p = await fx.proxy(serviceYaml('empty', []));
    const r = await send(p.ports.outbound, { host: 'empty' });
    expect(r.status).toBe(503);
    expect(r.body).toBe('no healthy upstream');
    expect(r.headers['x-meshlet-flags']).toBe('UH');
  });

  it('connect failure: 503 UF with the reset body (retried by Istio\'s default connect-failure policy)', async () => {
    const port = await deadPort();
    const p = await fx.proxy(serviceYaml('dead', [port]));
    const r = await send(p.ports.outbound, { host: 'dead' });
    expect(r.status).toBe(503);
    expect(r.headers['x-meshlet-flags']).toBe('UF,URX');
    expect(r.body).toMatch(/^upstream connect error or disconnect\/reset before headers\. retried and the latest reset reason: remote connection failure, transport failure reason: /);
    expect(await stat(p.ports.admin, `cluster.outbound|80||dead;.upstream_cx_connect_fail`)).toBe(3);
    expect(await stat(p.ports.admin, `cluster.outbound|80||dead;.upstream_rq_retry`)).toBe(2);
  });

  it('upstream closes before headers: 503 UC', async () => {
    const u = await fx.upstream((req) => req.socket.destroy());
    const p = await fx.proxy(serviceYaml('closer', [u.port]));
    const r = await send(p.ports.outbound, { host: 'closer' });
    expect(r.status).toBe(503);
    expect(r.headers['x-meshlet-flags']).toBe('UC');
    expect(r.body).toBe('upstream connect error or disconnect/reset before headers. reset reason: connection termination');
  });

  it('malformed request: 400; oversized head: 431; nothing forwarded', async () => {
    const u = await fx.upstream(echo('m'));
    const p = await fx.proxy(serviceYaml('m', [u.port]));
    expect(await raw(p.ports.outbound, 'GET / HTTP/1.1\r\nHost: m\r\nBad Header\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(p.ports.outbound, 'GARBAGE\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    // Request smuggling forms: CL + TE, duplicate differing CL.
    expect(await raw(p.ports.outbound, 'POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(p.ports.outbound, 'POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde')).toMatch(/^HTTP\/1\.1 400 /);
    const big = `GET / HTTP/1.1\r\nHost: m\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`;
    expect(await raw(p.ports.outbound, big)).toMatch(/^HTTP\/1\.1 431 /);
    expect(u.hits).toBe(0);
  });
});

describe('streaming and framing', () => {
  let p: RunningProxy;
  let u: Upstream;
  const seen: { aborted: number; uploaded: number[] } = { aborted: 0, uploaded: [] };
  beforeAll(async () => {
    u = await fx.upstream((req, res) => {
      const path = req.url ?? '/';
      if (path === '/upload') {
        let n = 0;
        req.on('data', (c) => { n += c.length; });
        req.on('end', () => { seen.uploaded.push(n); res.end(String(n)); });
        req.on('aborted', () => { seen.aborted++; });
        req.on('close', () => { if (!req.complete) seen.aborted++; });
        return;
      }
      if (path === '/head') { res.setHeader('content-length', '1234'); res.end(); return; }
      if (path === '/204') { res.writeHead(204); res.end(); return; }
      if (path === '/304') { res.writeHead(304, { etag: '"x"' }); res.end(); return; }
      if (path === '/reset-mid-body') {
        res.writeHead(200, { 'content-length': '100000' });
        res.write(Buffer.alloc(10_000, 97));
        setTimeout(() => res.socket?.destroy(), 50);
        return;
      }
      if (path === '/chunked') { res.write('a'); setTimeout(() => res.end('b'), 10); return; }
      echo('s')(req, res);
    });
    p = await fx.proxy(serviceYaml('s', [u.port]));
  });

  it('streams a chunked response', async () => {
    const r = await send(p.ports.outbound, { host: 's', path: '/chunked' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('ab');
  });

  it('HEAD carries content-length and no body; 204 and 304 have no body', async () => {
    const h = await send(p.ports.outbound, { host: 's', path: '/head', method: 'HEAD' });
    expect(h.status).toBe(200);
    expect(h.headers['content-length']).toBe('1234');
    expect(h.body).toBe('');
    const r204 = await send(p.ports.outbound, { host: 's', path: '/204' });
    expect(r204.status).toBe(204);
    expect(r204.body).toBe('');
    const r304 = await send(p.ports.outbound, { host: 's', path: '/304' });
    expect(r304.status).toBe(304);
    expect(r304.headers.etag).toBe('"x"');
  });

  it('Expect: 100-continue works', async () => {
    const status = await new Promise<{ cont: boolean; status: number; body: string }>((resolve, reject) => {
      let cont = false;
      const req = httpRequest({ host: '127.0.0.1', port: p.ports.outbound, path: '/upload', method: 'POST', agent: false, headers: { host: 's', expect: '100-continue', 'content-length': '5' } });
      req.on('continue', () => { cont = true; req.end('hello'); });
      req.on('response', (res) => { let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve({ cont, status: res.statusCode!, body: b })); });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(status).toEqual({ cont: true, status: 200, body: '5' });
  });

  it('an upstream reset mid-response is not presented as a complete response', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.ports.outbound, path: '/reset-mid-body', agent: false, headers: { host: 's' } }, (res) => {
        let n = 0;
        res.on('data', (c) => { n += c.length; });
        res.on('end', () => resolve(res.complete ? `complete ${n}` : `incomplete ${n}`));
        res.on('error', () => resolve('error'));
        res.on('aborted', () => resolve('aborted'));
      });
      req.on('error', () => resolve('error'));
      req.end();
    });
    expect(outcome).not.toMatch(/^complete/);
  });

  it('a client abort mid-upload aborts the upstream request', async () => {
    const before = seen.aborted;
    const req = httpRequest({ host: '127.0.0.1', port: p.ports.outbound, path: '/upload', method: 'POST', agent: false, headers: { host: 's', 'content-length': String(10 * 1024 * 1024) } });
    req.on('error', () => {});
    req.write(Buffer.alloc(256 * 1024));
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    const deadline = Date.now() + 3000;
    while (seen.aborted === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(seen.aborted).toBeGreaterThan(before);
  });
});
