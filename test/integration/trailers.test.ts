// HTTP/1.1 chunked trailers through two sidecars (client -> outbound -> inbound -> app), both
// directions, with Node's own HTTP client and server as the peers: request trailers reach the app,
// response trailers (a gRPC-style status) reach the client, also when the request body was
// buffered for a retry and the first try failed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, type IncomingMessage } from 'node:http';
import { Fixtures, serviceYaml, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const fx = new Fixtures();
let app: Upstream;
let outbound: RunningProxy;
let inbound: RunningProxy;
let failNext = 0;

interface Result { status: number; body: string; trailers: NodeJS.Dict<string>; rawTrailers: string[] }

function post(port: number, host: string, path: string, reqTrailers: Record<string, string>): Promise<Result> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { host, 'transfer-encoding': 'chunked', trailer: Object.keys(reqTrailers).join(', ') } }, (res: IncomingMessage) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body, trailers: res.trailers, rawTrailers: res.rawTrailers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.write('part one, ');
    req.write('part two');
    req.addTrailers(reqTrailers);
    req.end();
  });
}

beforeAll(async () => {
  app = await fx.upstream((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c; });
    req.on('end', () => {
      if (req.url === '/flaky' && failNext > 0) { failNext--; res.statusCode = 503; res.end('try again'); return; }
      res.setHeader('trailer', 'grpc-status, grpc-message, x-seen-trailers');
      res.write(`got ${body.length} bytes`);
      // The request's trailers as the app saw them, echoed in a response trailer.
      res.addTrailers({ 'grpc-status': '0', 'grpc-message': 'OK', 'x-seen-trailers': JSON.stringify(req.trailers) });
      res.end();
    });
  });
  inbound = await fx.proxy(serviceYaml('unused', [1]), { appPort: app.port, service: 'svc' });
  outbound = await fx.proxy(serviceYaml('svc', [inbound.ports.inbound], `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc }
spec:
  hosts: [svc]
  http:
    - match: [{ uri: { prefix: /flaky } }]
      retries: { attempts: 2, retryOn: 5xx }
      route: [{ destination: { host: svc } }]
    - route: [{ destination: { host: svc } }]
      retries: { attempts: 0 }
`));
});
afterAll(() => fx.closeAll());

describe('chunked trailers through outbound -> inbound', () => {
  it('request trailers reach the app and response trailers reach the client (streamed body)', async () => {
    const r = await post(outbound.ports.outbound, 'svc', '/stream', { 'x-checksum': 'abc123', 'x-count': '2' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('got 18 bytes');
    expect(r.trailers['grpc-status']).toBe('0');
    expect(r.trailers['grpc-message']).toBe('OK');
    expect(JSON.parse(r.trailers['x-seen-trailers']!)).toEqual({ 'x-checksum': 'abc123', 'x-count': '2' });
  });

  it('survive a body buffered for a retry: the second try gets the trailers too, the client the second answer\'s', async () => {
    failNext = 1;
    const r = await post(outbound.ports.outbound, 'svc', '/flaky', { 'x-checksum': 'retried' });
    expect(r.status).toBe(200);
    expect(failNext).toBe(0);
    expect(r.body).toBe('got 18 bytes');
    expect(JSON.parse(r.trailers['x-seen-trailers']!)).toEqual({ 'x-checksum': 'retried' });
    expect(r.trailers['grpc-status']).toBe('0');
  });

  it('prohibited trailer fields are dropped on the way, the others kept', async () => {
    const r = await post(outbound.ports.outbound, 'svc', '/prohibited', { 'content-length': '99', 'x-fine': 'yes' });
    expect(JSON.parse(r.trailers['x-seen-trailers']!)).toEqual({ 'x-fine': 'yes' });
  });
});
