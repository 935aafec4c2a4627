// A gRPC server with the standard health service (grpc.health.v1.Health/Check answering SERVING),
// on @grpc/grpc-js with the messages encoded by hand (bench/load/h2-transport.ts), for benches
// and tests. Run directly (`npx node bench/peers/grpc-health.ts --port 0`) it prints {"port": n}.
import * as grpc from '@grpc/grpc-js';
import { HEALTH_CHECK_PATH, encodeHealthCheckResponse } from '../load/h2-transport.ts';

const SERVING = encodeHealthCheckResponse(1).subarray(5);

const service: grpc.ServiceDefinition = {
  Check: {
    path: HEALTH_CHECK_PATH, requestStream: false, responseStream: false,
    requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b,
  },
};

/** HealthCheckRequest.service (field 1, a short string): the bytes after tag 0x0a and a one-byte length. */
function requestedService(b: Buffer): string {
  return b.length >= 2 && b[0] === 0x0a && b[1] < 0x80 ? b.subarray(2, 2 + b[1]).toString('utf8') : '';
}

/**
 * As the standard health service: a service it knows answers its status (the server itself, '',
 * is SERVING), any other is NOT_FOUND.
 */
export async function startHealthServer(port = 0, services: Record<string, 1 | 2> = { '': 1 }): Promise<{ port: number; close(): void }> {
  const server = new grpc.Server();
  server.addService(service, {
    Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const st = services[requestedService(call.request)];
      if (st === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else cb(null, st === 1 ? SERVING : encodeHealthCheckResponse(st).subarray(5));
    },
  });
  const p = await new Promise<number>((ok, fail) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, n) => (e ? fail(e) : ok(n))));
  return { port: p, close: () => server.forceShutdown() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--port');
  const h = await startHealthServer(i > 0 ? Number(process.argv[i + 1]) : 0);
  process.stdout.write(`${JSON.stringify({ port: h.port })}\n`);
}
