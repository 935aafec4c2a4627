// The per-request error boundary: a filter that throws fails its own request (500, or a reset
// once the response started), is counted (http.<listener>.downstream_rq_filter_error) and logged
// once per distinct error, and the process and every other request go on. The filter is inserted
// through the documented embedding hook (ProxyOptions.chains), in front of the real router.
import { afterAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { connect } from 'node:net';
import { once } from 'node:events';
import pino from 'pino';
import { Fixtures, send, serviceYaml } from '../helpers.ts';
import { stats } from '../resilience/lib.ts';
import type { HttpFilter, HttpStream } from '../../proxy/listener/stream.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());


/** Throws where the request's `x-throw` header says; otherwise passes everything on. */
class Thrower implements HttpFilter {
  readonly name = 'thrower';
  done = 0;
  onRequest(s: HttpStream): boolean {
    const where = s.req.header('x-throw');
    if (where === 'request') throw new Error('boom in onRequest');
    if (where === 'body') { s.bufferBody(this); return false; }
    if (where === 'after-headers') {
      // The response has started: the boundary can only reset it.
      s.sendHeaders(200, 'OK', ['content-length', '100']);
      s.sendData(Buffer.from('partial'));
      throw new Error('boom after the response started');
    }
    return true;
  }
  onBody(_s: HttpStream): void { throw new Error('boom in onBody'); }
  onResponseHeaders(s: HttpStream): void {
    if (s.req.header('x-throw') === 'response') throw new Error('boom in onResponseHeaders');
  }
  onDone(s: HttpStream): void {
    this.done++;
    if (s.req.header('x-throw') === 'done') throw new Error('boom in onDone');
  }
}

function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk, _e, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { logger: pino({ level: 'info' }, sink), lines };
}

describe('a filter that throws', () => {
  it('fails only its own request: 500 before the response, counted, logged once per distinct error; others are served', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const thrower = new Thrower();
    const { logger, lines } = capture();
    const p = await fx.proxy(serviceYaml('s', [u.port]), {
      logger, chains: { outbound: (fs) => [...fs.slice(0, -1), thrower, fs[fs.length - 1]] },
    });
    const at = (throwAt?: string, method = 'GET') => send(p.ports.outbound, { host: 's', method, headers: throwAt ? { 'x-throw': throwAt } : {}, body: method === 'POST' ? 'payload' : undefined });

    for (let i = 0; i < 3; i++) {
      const r = await at('request');
      expect(r.status).toBe(500);
      expect(r.body).toBe('internal error');
    }
    expect((await at('body', 'POST')).status).toBe(500);
    // Thrown on the way back, after the upstream answered (an async entry: the router's handler).
    expect((await at('response')).status).toBe(500);
    // Thrown while the stream ends: the response was already complete and stays so.
    const done = await at('done');
    expect(done.status).toBe(200);
    expect(done.body).toBe('ok');
    // The process is alive and every other request is untouched.
    for (let i = 0; i < 5; i++) expect((await at()).body).toBe('ok');

    const s = await stats(p.ports.admin);
    expect(s.get('http.outbound.downstream_rq_filter_error')).toBe(6);
    expect(s.get('http.outbound.downstream_rq_5xx')).toBe(5);
    expect(s.get('http.outbound.downstream_rq_active')).toBe(0);
    // Only the requests that reached the upstream were counted there (the thrown ones never left).
    expect(u.hits).toBe(7);
    // Every stream that reached the filter was cleaned up once.
    expect(thrower.done).toBe(11);
    const errors = lines.filter((l) => l.msg?.toString().startsWith('filter error'));
    // Four distinct errors (the three identical onRequest throws are one), each with its stack.
    expect(errors.map((l) => (l.err as { message: string }).message).sort()).toEqual(['boom in onBody', 'boom in onDone', 'boom in onRequest', 'boom in onResponseHeaders']);
    for (const l of errors) { expect(l.filter).toBe('thrower'); expect(String((l.err as { stack: string }).stack)).toContain('filter-chain.test.ts'); }
  });

  it('resets the request when its response had started (never a truncated body passed off as complete)', async () => {
    const u = await fx.upstream((_q, r) => r.end('ok'));
    const p = await fx.proxy(serviceYaml('s', [u.port]), {
      chains: { outbound: (fs) => [...fs.slice(0, -1), new Thrower(), fs[fs.length - 1]] },
    });
    const sock = connect(p.ports.outbound, '127.0.0.1');
    await once(sock, 'connect');
    let got = '';
    sock.on('data', (c) => { got += c.toString('latin1'); });
    sock.write('GET / HTTP/1.1\r\nHost: s\r\nx-throw: after-headers\r\n\r\n');
    await Promise.race([once(sock, 'close'), new Promise((r) => setTimeout(r, 3000))]);
    expect(sock.destroyed || sock.readableEnded).toBe(true);
    expect(got.startsWith('HTTP/1.1 200')).toBe(true);
    expect(got.endsWith('partial')).toBe(true); // 7 of the 100 declared bytes, then the connection closed
    sock.destroy();
    expect((await send(p.ports.outbound, { host: 's' })).body).toBe('ok');
    expect((await stats(p.ports.admin)).get('http.outbound.downstream_rq_filter_error')).toBe(1);
  });
});
