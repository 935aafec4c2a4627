// HTTP/2 through meshlet with real clients: curl --http2-prior-knowledge, node:http2 against
// HTTP/1.1 and HTTP/2 upstreams (trailers both ways, GOAWAY), HTTP/1.1 -> HTTP/2 upstream, h2
// over TLS via the listener's ALPN hook, and a rapid-reset flood that is cut off alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, createServer as createH2Server, constants, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { webcrypto } from 'node:crypto';
import { proxyFor, send, stat } from '../helpers.ts';
import { stats, until } from '../resilience/lib.ts';
import type { RunningProxy } from '../../proxy/main.ts';

interface H2Reply { status: number; headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders | null }

function h2request(c: ClientHttp2Session, headers: Record<string, string>, body?: Buffer, trailers?: Record<string, string>): Promise<H2Reply> {
  return new Promise((ok, fail) => {
    const r = c.request(headers, { endStream: body === undefined, waitForTrailers: trailers !== undefined });
    if (trailers) r.on('wantTrailers', () => r.sendTrailers(trailers));
    if (body !== undefined) r.end(body);
    const chunks: Buffer[] = [];
    let head: IncomingHttpHeaders = {};
    let tr: IncomingHttpHeaders | null = null;
    r.on('response', (h) => { head = h; });
    r.on('data', (d: Buffer) => chunks.push(d));
    r.on('trailers', (t) => { tr = t; });
    r.on('end', () => ok({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks), trailers: tr }));
    r.on('error', fail);
  });
}

const h2c = (port: number) => connect(`http://127.0.0.1:${port}`);

/** An HTTP/1.1 upstream that echoes what it got (protocol, body length, trailers) and answers with a trailer. */
async function h1Upstream(): Promise<{ port: number; close(): Promise<void> }> {
  const s = createHttpServer((req: IncomingMessage, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('trailer', 'x-upstream-trailer');
      res.write(JSON.stringify({ version: req.httpVersion, bytes: n, trailers: req.trailers, cookie: req.headers.cookie ?? null, host: req.headers.host }));
      res.addTrailers({ 'x-upstream-trailer': 'h1-done' });
      res.end();
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { port: (s.address() as { port: number }).port, close: () => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); }) };
}

/** An HTTP/2 (h2c) upstream; `goawayAfter` streams on a session, it sends GOAWAY (after answering). */
async function h2Upstream(goawayAfter = 0): Promise<{ port: number; sessions: number; streams: number; close(): Promise<void> }> {
  const u = { sessions: 0, streams: 0 } as { port: number; sessions: number; streams: number; close(): Promise<void> };
  const s: Http2Server = createH2Server();
  s.on('session', () => { u.sessions++; });
  s.on('stream', (st, h) => {
    u.streams++;
    const sess = st.session!;
    const count = ((sess as unknown as { n?: number }).n = ((sess as unknown as { n?: number }).n ?? 0) + 1);
    let n = 0;
    let reqTrailers: IncomingHttpHeaders | null = null;
    st.on('data', (c: Buffer) => { n += c.length; });
    st.on('trailers', (t) => { reqTrailers = t; });
    st.on('end', () => {
      st.respond({ ':status': 200, 'content-type': 'application/json' }, { waitForTrailers: true });
      st.on('wantTrailers', () => st.sendTrailers({ 'x-upstream-trailer': 'h2-done' }));
      st.end(JSON.stringify({ version: '2', bytes: n, trailers: reqTrailers, authority: h[':authority'], path: h[':path'] }));
      if (goawayAfter > 0 && count >= goawayAfter) sess.close(); // GOAWAY: streams in flight finish
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  u.port = (s.address() as { port: number }).port;
  u.close = () => new Promise<void>((r) => s.close(() => r()));
  return u;
}

function mesh(h1: number, h2: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web }
spec:
  hosts: [web]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${h1} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api }
spec:
  hosts: [api]
  ports: [{ number: 80, name: http2-api }]
  endpoints: [{ address: 127.0.0.1, ports: { http2-api: ${h2} } }]
`;
}

let up1: Awaited<ReturnType<typeof h1Upstream>>;
let up2: Awaited<ReturnType<typeof h2Upstream>>;
let p: RunningProxy;

beforeAll(async () => {
  up1 = await h1Upstream();
  up2 = await h2Upstream();
  p = await proxyFor(mesh(up1.port, up2.port));
});
afterAll(async () => {
  await p?.drain(200);
  await up1?.close();
  await up2?.close();
});

describe('HTTP/2 downstream (h2c)', () => {
  it('curl --http2-prior-knowledge gets an HTTP/2 answer from an HTTP/1.1 upstream', async () => {
    const out = await new Promise<string>((ok, fail) => execFile('curl', ['-sS', '-i', '--http2-prior-knowledge', '-H', 'Host: web', `http://127.0.0.1:${p.ports.outbound}/curl`],
      { timeout: 20_000 }, (e, stdout) => (e ? fail(e) : ok(stdout))));
    expect(out).toMatch(/^HTTP\/2 200/);
    expect(out).toContain('"version":"1.1"');
    expect(out).toContain('"host":"web"');
  });

  it('node:http2 -> HTTP/1.1 upstream: a 1 MB streamed body, split cookies joined, trailers both ways', async () => {
    const total0 = await stat(p.ports.admin, 'http.outbound.downstream_cx_http2_total');
    const c = h2c(p.ports.outbound);
    try {
      const body = Buffer.alloc(1024 * 1024, 7);
      const r = await h2request(c, { ':method': 'POST', ':path': '/up', ':authority': 'web', cookie: 'a=1', 'x-c': '1' }, body, { 'x-client-trailer': 'sent' });
      // (node:http2 sends two cookie fields as one 'a=1'; the split form is checked below.)
      expect(r.status).toBe(200);
      const seen = JSON.parse(r.body.toString());
      expect(seen.version).toBe('1.1');
      expect(seen.bytes).toBe(body.length);
      expect(seen.trailers).toEqual({ 'x-client-trailer': 'sent' });
      expect(r.trailers?.['x-upstream-trailer']).toBe('h1-done');
      // Many streams on one connection, concurrently.
      const many = await Promise.all(Array.from({ length: 50 }, (_, i) => h2request(c, { ':method': 'GET', ':path': `/m${i}`, ':authority': 'web', cookie: ['x=1', 'y=2'] as unknown as string })));
      expect(many.every((m) => m.status === 200)).toBe(true);
      expect(JSON.parse(many[0].body.toString()).cookie).toBe('x=1; y=2');
      // One HTTP/2 connection carried all of them.
      expect(await stat(p.ports.admin, 'http.outbound.downstream_cx_http2_total')).toBe(total0! + 1);
      expect(await stat(p.ports.admin, 'http.outbound.downstream_cx_http2_active')).toBeGreaterThanOrEqual(1);
    } finally { c.close(); }
  });

  it('node:http2 -> HTTP/2 upstream (port name http2-*): trailers both ways, :authority kept', async () => {
    const c = h2c(p.ports.outbound);
    try {
      const r = await h2request(c, { ':method': 'POST', ':path': '/h2?q=1', ':authority': 'api' }, Buffer.from('hello'), { 'x-client-trailer': 't' });
      expect(r.status).toBe(200);
      const seen = JSON.parse(r.body.toString());
      expect(seen).toMatchObject({ version: '2', bytes: 5, authority: 'api', path: '/h2?q=1' });
      expect(seen.trailers['x-client-trailer']).toBe('t');
      expect(r.trailers?.['x-upstream-trailer']).toBe('h2-done');
    } finally { c.close(); }
  });

  it('an HTTP/1.1 client reaches an HTTP/2 upstream, and gets its trailers only if it could (HTTP/1.1 chunked)', async () => {
    const r = await send(p.ports.outbound, { host: 'api', path: '/from-h1', method: 'POST', body: 'abc' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ version: '2', bytes: 3, authority: 'api' });
  });
});

describe('upstream protocol per DestinationRule', () => {
  it('h2UpgradePolicy UPGRADE sends an HTTP port over HTTP/2; useClientProtocol keeps each caller\'s protocol', async () => {
    const dr = (host: string, http: string) => `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host} }
spec:
  host: ${host}
  trafficPolicy: { connectionPool: { http: ${http} } }
`;
    const se = (host: string, port: number) => `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host} }
spec:
  hosts: [${host}]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} } }]
`;
    const px = await proxyFor(se('up', up2.port) + dr('up', '{ h2UpgradePolicy: UPGRADE }')
      + se('keep2', up2.port) + dr('keep2', '{ useClientProtocol: true }')
      + se('keep1', up1.port) + dr('keep1', '{ useClientProtocol: true, h2UpgradePolicy: UPGRADE }'));
    const c = h2c(px.ports.outbound);
    try {
      // An HTTP/1.1 caller, an HTTP port upgraded: the h2-only upstream answers.
      const r = await send(px.ports.outbound, { host: 'up', path: '/upgraded' });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).version).toBe('2');
      // useClientProtocol: an h2 caller reaches the h2-only upstream over HTTP/2 ...
      const k2 = await h2request(c, { ':method': 'GET', ':path': '/k2', ':authority': 'keep2' });
      expect(JSON.parse(k2.body.toString()).version).toBe('2');
      // ... and an HTTP/1.1 caller stays HTTP/1.1 (h2UpgradePolicy is then ignored).
      const k1 = await send(px.ports.outbound, { host: 'keep1', path: '/k1' });
      expect(JSON.parse(k1.body).version).toBe('1.1');
      const k1h2 = await h2request(c, { ':method': 'GET', ':path': '/k1', ':authority': 'keep2' });
      expect(k1h2.status).toBe(200);
    } finally { c.close(); await px.drain(100); }
  });
});

describe('HTTP/2 upstream pool', () => {
  it('GOAWAY drains a session: streams in flight finish, the next requests open a new connection', async () => {
    const g = await h2Upstream(3);
    const px = await proxyFor(mesh(up1.port, g.port));
    const c = h2c(px.ports.outbound);
    try {
      for (let i = 0; i < 9; i++) {
        const r = await h2request(c, { ':method': 'GET', ':path': `/g${i}`, ':authority': 'api' });
        expect(r.status).toBe(200);
      }
      expect(g.streams).toBe(9);
      expect(g.sessions).toBe(3);
      const s = await stats(px.ports.admin);
      expect(s.get('cluster.outbound|80||api;.upstream_cx_close_notify')).toBeGreaterThanOrEqual(2);
      expect(s.get('cluster.outbound|80||api;.upstream_cx_http2_total')).toBe(3);
    } finally { c.close(); await px.drain(100); await g.close(); }
  });
});

describe('HTTP/2 flood protection', () => {
  it('a rapid-reset flood (HEADERS + RST_STREAM) gets GOAWAY and is closed; another connection is unharmed', async () => {
    const good = h2c(p.ports.outbound);
    try {
      expect((await h2request(good, { ':method': 'GET', ':path': '/before', ':authority': 'web' })).status).toBe(200);
      const frames: Buffer[] = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0))];
      // :method GET, :path /, :scheme http (static table), :authority web (literal, indexed name).
      const block = Buffer.from([0x82, 0x84, 0x86, 0x01, 0x03, ...Buffer.from('web')]);
      const cancel = Buffer.from([0, 0, 0, 8]);
      for (let i = 0; i < 600; i++) {
        const id = 1 + 2 * i;
        frames.push(frame(1, 0x5, id, block), frame(3, 0, id, cancel));
      }
      const got: Buffer[] = [];
      const closed = await new Promise<boolean>((ok) => {
        const s = netConnect(p.ports.outbound, '127.0.0.1', () => s.write(Buffer.concat(frames)));
        s.on('data', (d: Buffer) => got.push(d));
        s.on('error', () => {});
        s.on('close', () => ok(true));
        setTimeout(() => { s.destroy(); ok(false); }, 15_000).unref();
      });
      expect(closed).toBe(true);
      expect(hasGoaway(Buffer.concat(got), constants.NGHTTP2_ENHANCE_YOUR_CALM)).toBe(true);
      expect(await stat(p.ports.admin, 'http.outbound.downstream_rq_too_many_premature_resets')).toBe(1);
      // The well-behaved connection goes on.
      expect((await h2request(good, { ':method': 'GET', ':path': '/after', ':authority': 'web' })).status).toBe(200);
    } finally { good.close(); }
  });
});

describe('h2 over TLS (ALPN)', () => {
  it('the listener\'s ALPN hook serves h2 and http/1.1 on one TLS port', async () => {
    const { cert, key } = await selfSigned();
    // The TLS front is the test's (the zero-trust work owns mTLS): it hands each socket to the
    // outbound listener's ALPN hook, as a TLS listener in the proxy would.
    const outbound = p.listeners.outbound;
    const tls = createTlsServer({ cert, key, ALPNProtocols: ['h2', 'http/1.1'] }, (sock: TLSSocket) => outbound.h2.acceptTls(sock));
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', () => r()));
    const port = (tls.address() as { port: number }).port;
    try {
      const c = connect(`https://127.0.0.1:${port}`, { ca: cert, servername: 'localhost', ALPNProtocols: ['h2'] } as never);
      const r = await h2request(c, { ':method': 'GET', ':path': '/tls', ':authority': 'web' });
      c.close();
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body.toString()).version).toBe('1.1');
      const https = await import('node:https');
      const h1 = await new Promise<{ status: number; alpn: string | false | null }>((ok, fail) => {
        const req = https.request({ host: '127.0.0.1', port, path: '/tls1', headers: { host: 'web' }, ca: cert, servername: 'localhost', ALPNProtocols: ['http/1.1'], agent: false } as never, (res: IncomingMessage) => {
          res.resume();
          res.on('end', () => ok({ status: res.statusCode!, alpn: (res.socket as TLSSocket).alpnProtocol }));
        });
        req.on('error', fail);
        req.end();
      });
      expect(h1).toEqual({ status: 200, alpn: 'http/1.1' });
    } finally { await new Promise<void>((r) => tls.close(() => r())); }
  });
});

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** Is there a GOAWAY frame with this error code among the frames the server sent? */
function hasGoaway(data: Buffer, code: number): boolean {
  let off = 0;
  while (off + 9 <= data.length) {
    const len = data.readUIntBE(off, 3);
    if (data[off + 3] === 7 && off + 9 + 8 <= data.length && data.readUInt32BE(off + 9 + 4) === code) return true;
    off += 9 + len;
  }
  return false;
}

/** A self-signed P-256 certificate for localhost, made here (@peculiar/x509 on WebCrypto). */
async function selfSigned(): Promise<{ cert: string; key: string }> {
  // @peculiar/x509's DI container (tsyringe) needs the Reflect metadata API.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as never);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=localhost', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000),
    keys: keys as never, signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }])],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem'), key };
}
