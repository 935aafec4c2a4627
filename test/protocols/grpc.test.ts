// gRPC through the mesh with @grpc/grpc-js as the real client and server: client -> outbound
// sidecar A -> (h2c, the port is GRPC) -> inbound sidecar B -> (h2c, the caller's protocol) -> app.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Writable } from 'node:stream';
import pino from 'pino';
import { getText, proxyFor } from '../helpers.ts';
import { stats, until } from '../resilience/lib.ts';
import { echoClient, startGrpcApp, twoSidecars, unary, type GrpcApp, type Msg } from './lib.ts';
import type { RunningProxy } from '../../proxy/main.ts';

let app: GrpcApp;
let a: RunningProxy;
let b: RunningProxy;
let client: ReturnType<typeof echoClient>;
const CL = 'cluster.outbound|9090||echo;.';

beforeAll(async () => {
  app = await startGrpcApp();
  ({ a, b } = await twoSidecars(app.port));
  client = echoClient(a.ports.outbound);
});

afterAll(async () => {
  client?.close();
  await a?.drain(200);
  await b?.drain(200);
  await app?.close();
});

let seq = 0;
const key = () => `k${++seq}`;

describe('gRPC through two sidecars', () => {
  it('unary: the reply, custom metadata both ways, and a non-OK status with its trailers', async () => {
    const md = new grpc.Metadata();
    md.set('x-caller', 'test');
    const ok = await unary(client, { text: 'hi', key: key() }, { metadata: md });
    expect(ok.err).toBeNull();
    expect(ok.res!.text).toBe('echo:hi');
    expect(app.lastMetadata!.get('x-caller')).toEqual(['test']);
    // Both sidecars saw it as HTTP/2 and forwarded it as HTTP/2 (the app is h2-only: grpc-js).
    const k = key();
    const bad = await unary(client, { text: 'x', key: k, fail_code: grpc.status.NOT_FOUND, fail_times: 1 });
    expect(bad.err!.code).toBe(grpc.status.NOT_FOUND);
    expect(bad.err!.details).toBe('failing 1/1');
    expect(bad.trailers!.get('x-app-detail')).toEqual(['failure 1']);
    expect(app.calls.get(k)).toBe(1); // NOT_FOUND is not a retry condition
  });

  it('server streaming: every message in order, then the trailers', async () => {
    const call = client.ServerStream({ text: 's', count: 50 });
    const got: Msg[] = [];
    let trailers: grpc.Metadata | null = null;
    await new Promise<void>((ok, fail) => {
      call.on('data', (m: Msg) => got.push(m));
      call.on('status', (s: grpc.StatusObject) => { trailers = s.metadata; });
      call.on('error', fail);
      call.on('end', () => setImmediate(ok));
    });
    expect(got.map((m) => m.text)).toEqual(Array.from({ length: 50 }, (_, i) => `s#${i}`));
    expect(trailers!.get('x-trailer')).toEqual(['server-stream-done']);
  });

  it('client streaming: the server sees every message and the end of the stream', async () => {
    const res = await new Promise<Msg>((ok, fail) => {
      const call = client.ClientStream((err: grpc.ServiceError | null, m: Msg) => (err ? fail(err) : ok(m)));
      for (let i = 0; i < 20; i++) call.write({ text: `m${i}` });
      call.end();
    });
    expect(res.count).toBe(20);
    expect(res.text).toBe(Array.from({ length: 20 }, (_, i) => `m${i}`).join(','));
  });

  it('bidirectional: ping-pong in lockstep, then cancellation reaches the server', async () => {
    const call = client.Bidi();
    const replies: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = new Promise<string>((ok) => call.once('data', (m: Msg) => ok(m.text)));
      call.write({ text: `p${i}` });
      replies.push(await r);
    }
    expect(replies).toEqual(Array.from({ length: 10 }, (_, i) => `bidi:p${i}`));
    const before = app.cancelled;
    call.on('error', () => {});
    call.cancel();
    // The client's RST_STREAM(CANCEL) crosses both sidecars as a stream reset.
    expect(await until(async () => app.cancelled > before, 5000)).toBe(true);
  });

  it('retries on UNAVAILABLE (Istio\'s default retryOn) until the call succeeds; the deadline goes on less the time spent', async () => {
    const k = key();
    // The first attempt fails after 300 ms: the second must carry a grpc-timeout at least that much smaller.
    const r = await unary(client, { text: 'r', key: k, fail_code: grpc.status.UNAVAILABLE, fail_times: 1, sleep_ms: 300 }, { deadlineMs: 5000 });
    expect(r.err).toBeNull();
    expect(app.calls.get(k)).toBe(2);
    // sleep_ms in the reply: the deadline the server saw on the attempt that answered (ms left).
    expect(r.res!.sleep_ms).toBeGreaterThan(0);
    expect(r.res!.sleep_ms).toBeLessThanOrEqual(5000 - 300);
    const s = await stats(a.ports.admin);
    expect(s.get(`${CL}upstream_rq_retry`)).toBeGreaterThanOrEqual(1);
    // Twice UNAVAILABLE and the default 2 retries: the third attempt answers.
    const k2 = key();
    const r2 = await unary(client, { text: 'r', key: k2, fail_code: grpc.status.UNAVAILABLE, fail_times: 2 });
    expect(r2.err).toBeNull();
    expect(app.calls.get(k2)).toBe(3);
  });

  it('a deadline shorter than the call: DEADLINE_EXCEEDED at the client and the server call is cancelled', async () => {
    const before = app.cancelled;
    const r = await unary(client, { text: 'slow', key: key(), sleep_ms: 3000 }, { deadlineMs: 300 });
    expect(r.err!.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(await until(async () => app.cancelled > before, 5000)).toBe(true);
  });

  it('grpc_response_status in istio_requests_total', async () => {
    const prom = await getText(a.ports.admin, '/stats/prometheus');
    expect(prom).toMatch(/istio_requests_total\{[^}]*response_code="200"[^}]*grpc_response_status="0"[^}]*\} \d+/);
    expect(prom).toMatch(/istio_requests_total\{[^}]*response_code="200"[^}]*grpc_response_status="5"[^}]*\} 1/);
  });

  it('the client\'s session is one multiplexed connection: 30 concurrent calls, one upstream HTTP/2 connection per hop', async () => {
    const before = (await stats(a.ports.admin)).get(`${CL}upstream_cx_http2_total`) ?? 0;
    const rs = await Promise.all(Array.from({ length: 30 }, () => unary(client, { text: 'c', key: key(), sleep_ms: 50 })));
    expect(rs.every((r) => r.err === null)).toBe(true);
    const after = (await stats(a.ports.admin)).get(`${CL}upstream_cx_http2_total`) ?? 0;
    expect(after - before).toBe(0); // the session from the earlier tests took them all
    expect(after).toBe(1);
  });
});

describe('gRPC local replies and faults', () => {
  it('no healthy upstream: HTTP 200 with grpc-status 14 UNAVAILABLE and Envoy\'s text as grpc-message', async () => {
    const p = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec: { hosts: [echo], ports: [{ number: 9090, name: grpc }] }
`);
    const c = echoClient(p.ports.outbound);
    try {
      const r = await unary(c, { text: 'x' });
      expect(r.err!.code).toBe(grpc.status.UNAVAILABLE);
      expect(r.err!.details).toBe('no healthy upstream');
    } finally { c.close(); await p.drain(100); }
  });

  it('overflow (http2MaxRequests) is UNAVAILABLE, never retried; a fault abort with grpcStatus answers that status', async () => {
    const p = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo]
  ports: [{ number: 9090, name: grpc }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${app.port} } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo }
spec:
  host: echo
  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 1 } } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo }
spec:
  hosts: [echo]
  http:
  - match: [{ headers: { x-fault: { exact: deny } } }]
    fault: { abort: { grpcStatus: PERMISSION_DENIED, percentage: { value: 100 } } }
    route: [{ destination: { host: echo } }]
  - route: [{ destination: { host: echo } }]
`);
    const c = echoClient(p.ports.outbound);
    try {
      const slow = unary(c, { text: 'a', key: key(), sleep_ms: 800 });
      // Wait until the first call holds the one request slot.
      await until(async () => ((await stats(p.ports.admin)).get(`${CL}upstream_rq_active`) ?? 0) >= 1, 5000);
      const k = key();
      const over = await unary(c, { text: 'b', key: k });
      expect(over.err!.code).toBe(grpc.status.UNAVAILABLE);
      expect(over.err!.details).toContain('overflow');
      expect(app.calls.get(k)).toBeUndefined();
      expect((await slow).err).toBeNull();
      const md = new grpc.Metadata();
      md.set('x-fault', 'deny');
      const denied = await unary(c, { text: 'c', key: key() }, { metadata: md });
      expect(denied.err!.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(denied.err!.details).toBe('fault filter abort');
    } finally { c.close(); await p.drain(100); }
  });

  it('the access log has grpc_status and grpc_message, the protocol HTTP/2, and the 200 a gRPC error is sent with', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
    const p = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo]
  ports: [{ number: 9090, name: grpc }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${app.port} } }]
`, { accessLog: 'all', logger: pino({ level: 'info' }, stream) });
    const c = echoClient(p.ports.outbound);
    try {
      expect((await unary(c, { text: 'ok', key: key() })).err).toBeNull();
      expect((await unary(c, { text: 'no', key: key(), fail_code: grpc.status.INVALID_ARGUMENT, fail_times: 1 })).err!.code).toBe(grpc.status.INVALID_ARGUMENT);
      const access = () => lines.filter((l) => l.log === 'access');
      await until(async () => access().length >= 2, 5000);
      const [ok, bad] = access();
      expect(ok).toMatchObject({ protocol: 'HTTP/2', response_code: 200, grpc_status: 0, path: '/meshlet.test.Echo/Unary' });
      expect(bad).toMatchObject({ protocol: 'HTTP/2', response_code: 200, grpc_status: 3, grpc_message: 'failing 1/1' });
    } finally { c.close(); await p.drain(100); }
  });

  it('maxConcurrentStreams: a new upstream connection only when the streams of the open ones are exhausted', async () => {
    const p = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo]
  ports: [{ number: 9090, name: grpc }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${app.port} } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo }
spec:
  host: echo
  trafficPolicy: { connectionPool: { http: { maxConcurrentStreams: 2 } } }
`);
    const c = echoClient(p.ports.outbound);
    try {
      const rs = await Promise.all(Array.from({ length: 6 }, () => unary(c, { text: 'x', key: key(), sleep_ms: 400 })));
      expect(rs.every((r) => r.err === null)).toBe(true);
      const s = await stats(p.ports.admin);
      expect(s.get(`${CL}upstream_cx_http2_total`)).toBe(3);
      // Sequential calls afterwards reuse them: no new connection.
      for (let i = 0; i < 5; i++) expect((await unary(c, { text: 'y', key: key() })).err).toBeNull();
      expect((await stats(p.ports.admin)).get(`${CL}upstream_cx_http2_total`)).toBe(3);
    } finally { c.close(); await p.drain(100); }
  });
});
