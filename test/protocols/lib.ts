// gRPC fixtures: a real @grpc/grpc-js server for echo.proto on 127.0.0.1:0, clients for it, and
// two sidecars in front of it (client -> outbound A -> inbound B -> app), as the issue asks.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import { proxyFor } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const PROTO = fileURLToPath(new URL('./echo.proto', import.meta.url));
const def = loader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(def) as unknown as { meshlet: { test: { Echo: grpc.ServiceClientConstructor } } };
export const EchoClient = pkg.meshlet.test.Echo;

export interface Msg { text: string; count: number; fail_code: number; fail_times: number; key: string; sleep_ms: number }

export interface GrpcApp {
  port: number;
  /** Unary calls seen, by key; the metadata of the last call. */
  calls: Map<string, number>;
  lastMetadata: grpc.Metadata | null;
  /** Calls the server saw cancelled. */
  cancelled: number;
  close(): Promise<void>;
}

export async function startGrpcApp(): Promise<GrpcApp> {
  const server = new grpc.Server();
  const app = { calls: new Map<string, number>(), lastMetadata: null, cancelled: 0 } as unknown as GrpcApp;
  server.addService(EchoClient.service, {
    Unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      const m = call.request;
      app.lastMetadata = call.metadata;
      const n = (app.calls.get(m.key) ?? 0) + 1;
      app.calls.set(m.key, n);
      call.on('cancelled', () => { app.cancelled++; });
      const answer = () => {
        if (m.fail_code !== 0 && n <= m.fail_times) {
          const md = new grpc.Metadata();
          md.set('x-app-detail', `failure ${n}`);
          cb({ code: m.fail_code, details: `failing ${n}/${m.fail_times}`, metadata: md });
          return;
        }
        const deadline = call.getDeadline();
        const left = deadline instanceof Date ? deadline.getTime() - Date.now() : deadline === Infinity ? -1 : Number(deadline) - Date.now();
        cb(null, { ...m, text: `echo:${m.text}`, count: n, sleep_ms: Math.round(left) });
      };
      if (m.sleep_ms > 0) setTimeout(answer, m.sleep_ms); else answer();
    },
    ServerStream: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      for (let i = 0; i < call.request.count; i++) call.write({ ...call.request, text: `${call.request.text}#${i}`, count: i });
      const md = new grpc.Metadata();
      md.set('x-trailer', 'server-stream-done');
      call.end(md);
    },
    ClientStream: (call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      const texts: string[] = [];
      call.on('data', (m: Msg) => texts.push(m.text));
      call.on('end', () => cb(null, { text: texts.join(','), count: texts.length } as Msg));
    },
    Bidi: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
      call.on('data', (m: Msg) => call.write({ ...m, text: `bidi:${m.text}` }));
      call.on('end', () => call.end());
      call.on('cancelled', () => { app.cancelled++; });
    },
  });
  app.port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
  app.close = () => new Promise<void>((ok) => { server.forceShutdown(); ok(); });
  return app;
}

/** A client for `authority` (the mesh name) through `port`. */
export function echoClient(port: number, authority = 'echo'): grpc.Client & Record<string, any> {
  return new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': authority,
    // The tests count retries themselves: grpc-js's own retries off.
    'grpc.enable_retries': 0,
  }) as grpc.Client & Record<string, any>;
}

export function unary(c: Record<string, any>, msg: Partial<Msg>, opts: { deadlineMs?: number; metadata?: grpc.Metadata } = {}): Promise<{ err: grpc.ServiceError | null; res: Msg | null; trailers: grpc.Metadata | null }> {
  return new Promise((ok) => {
    let trailers: grpc.Metadata | null = null;
    const callOpts: grpc.CallOptions = opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {};
    const call = c.Unary(msg, opts.metadata ?? new grpc.Metadata(), callOpts, (err: grpc.ServiceError | null, res: Msg) => {
      // 'status' comes after the callback: wait a tick for the trailers.
      setImmediate(() => ok({ err, res: res ?? null, trailers: trailers ?? err?.metadata ?? null }));
    });
    call.on('status', (s: grpc.StatusObject) => { trailers = s.metadata; });
  });
}

/** Sidecar B fronts the app (inbound); sidecar A routes `echo` (a GRPC port) to B's inbound port. */
export async function twoSidecars(appPort: number, extra = '', opts: Parameters<typeof proxyFor>[1] = {}): Promise<{ a: RunningProxy; b: RunningProxy }> {
  const b = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: none }
spec: { hosts: [none], ports: [{ number: 80, name: http }] }
`, { appPort, service: 'echo' });
  const a = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo }
spec:
  hosts: [echo]
  ports: [{ number: 9090, name: grpc }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${b.ports.inbound} } }]
${extra}`, { service: 'client', ...opts });
  return { a, b };
}
