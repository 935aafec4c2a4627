// The access log: off, errors (status >= 500 or any flag) or all; Envoy-like JSON fields.
import { afterAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { proxyFor, send, startUpstream, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const closers: Array<() => Promise<void>> = [];
afterAll(async () => { for (const c of closers.reverse()) await c(); });

function capture(): { lines: Array<Record<string, unknown>>; stream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { lines, stream };
}

let up: Upstream;
async function proxy(mode: 'off' | 'errors' | 'all') {
  up ??= await startUpstream((req, res) => { res.statusCode = req.url === '/fail' ? 500 : 200; res.end('x'); });
  const cap = capture();
  const p: RunningProxy = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: s }
spec:
  hosts: [s]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${up.port} } }]
`, { accessLog: mode, logger: pino({ level: 'info' }, cap.stream) });
  closers.push(() => p.drain(100));
  await send(p.ports.outbound, { host: 's', path: '/ok', headers: { 'x-request-id': 'rid-1' } });
  await send(p.ports.outbound, { host: 's', path: '/fail' });
  await send(p.ports.outbound, { host: 'nowhere', path: '/nr' });
  return cap.lines.filter((l) => l.log === 'access');
}
afterAll(async () => { await up?.close(); });

describe('access log', () => {
  it('off logs nothing', async () => {
    expect(await proxy('off')).toEqual([]);
  });

  it('errors logs 5xx and flagged responses only', async () => {
    const lines = await proxy('errors');
    expect(lines.map((l) => [l.path, l.response_code, l.response_flags])).toEqual([['/fail', 500, '-'], ['/nr', 404, 'NR']]);
  });

  it('all logs every request with Envoy-like fields', async () => {
    const lines = await proxy('all');
    expect(lines.length).toBe(3);
    const ok = lines[0];
    expect(ok).toMatchObject({ method: 'GET', path: '/ok', protocol: 'HTTP/1.1', response_code: 200, response_flags: '-', bytes_sent: 1, upstream_cluster: 'outbound|80||s', x_request_id: 'rid-1' });
    expect(ok.upstream_host).toBe(`127.0.0.1:${up.port}`);
    expect(typeof ok.duration_ms).toBe('number');
    expect(Date.parse(String(ok.start_time))).not.toBeNaN();
  });
});
