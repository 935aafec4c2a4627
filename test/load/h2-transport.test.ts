// The HTTP/2 and gRPC-unary load transport (bench/load/h2-transport.ts) against real servers:
// a grpc-js health server, directly and through a meshlet sidecar, and an HTTP/1.1 upstream
// reached over h2c through meshlet.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHealthCheckResponse, encodeHealthCheckRequest, h2Transport } from '../../bench/load/h2-transport.ts';
import { startHealthServer } from '../../bench/peers/grpc-health.ts';
import { echo, proxyFor, serviceYaml, startUpstream, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';
import { run } from './lib.ts';

let health: Awaited<ReturnType<typeof startHealthServer>>;
let up: Upstream;
let p: RunningProxy;

beforeAll(async () => {
  health = await startHealthServer();
  up = await startUpstream(echo('a'));
  p = await proxyFor(`${serviceYaml('web', [up.port])}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: health }
spec:
  hosts: [health]
  ports: [{ number: 50051, name: grpc }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${health.port} } }]
`);
});
afterAll(async () => { await p?.drain(100); health?.close(); await up?.close(); });

describe('h2 load transport', () => {
  it('encodes HealthCheckRequest and decodes HealthCheckResponse by hand', () => {
    expect([...encodeHealthCheckRequest('')]).toEqual([0, 0, 0, 0, 0]);
    expect([...encodeHealthCheckRequest('ab')]).toEqual([0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]);
    expect(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 2, 0x08, 1]))).toBe(1);
    expect(decodeHealthCheckResponse(Buffer.from([0, 0, 0, 0, 0]))).toBe(0);
    expect(decodeHealthCheckResponse(Buffer.from([1, 0]))).toBe(-1);
  });

  it('gRPC health checks: SERVING directly and through meshlet, one session per transport', async () => {
    for (const [url, host] of [[`http://127.0.0.1:${health.port}`, undefined], [`http://127.0.0.1:${p.ports.outbound}`, 'health']] as const) {
      const t = h2Transport({ url, grpc: { service: '' }, headers: host ? [['host', host]] : [] });
      const rs = await Promise.all(Array.from({ length: 20 }, () => t.call()));
      expect(rs.every((r) => r.status === 200 && r.grpcStatus === 0 && r.serving === 1)).toBe(true);
      expect(t.sessions).toBe(1);
      await t.close();
    }
  });

  it('plain HTTP/2 GET and POST through meshlet to an HTTP/1.1 upstream; a dead port is status -1', async () => {
    const t = h2Transport({ url: `http://127.0.0.1:${p.ports.outbound}/x`, headers: [['host', 'web']] });
    const r = await t.call();
    expect(r.status).toBe(200);
    expect(r.bytes).toBeGreaterThan(0);
    await t.close();
    const post = h2Transport({ url: `http://127.0.0.1:${p.ports.outbound}/y`, headers: [['host', 'web']], payload: Buffer.alloc(1000) });
    const pr = await post.call();
    expect(pr.status).toBe(200);
    await post.close();
    const dead = h2Transport({ url: 'http://127.0.0.1:9/', timeoutMs: 2000 });
    expect((await dead.call()).status).toBe(-1);
    await dead.close();
  });

  it('meshlet load -h2 (h2c through meshlet) and -grpc (health checks, direct and through meshlet) report Code lines', async () => {
    const [h2, grpc, grpcMesh, notServing] = await Promise.all([
      run(['load', '-h2', '-qps', '0', '-n', '20', '-c', '2', '-H', 'Host: web', `http://127.0.0.1:${p.ports.outbound}/`]),
      run(['load', '-grpc', '-qps', '0', '-n', '10', '-c', '1', `http://127.0.0.1:${health.port}`]),
      run(['load', '-grpc', '-qps', '0', '-n', '10', '-c', '2', '-H', 'Host: health', `http://127.0.0.1:${p.ports.outbound}`]),
      run(['load', '-grpc', '-healthservice', 'no-such-service', '-allow-initial-errors', '-qps', '0', '-n', '5', '-c', '1', `http://127.0.0.1:${health.port}`]),
    ]);
    expect(h2.code, h2.err).toBe(0);
    expect(h2.err).toMatch(/Code 200 : 20 \(100\.0 %\)/);
    expect(h2.err).toMatch(/Sockets used: 2 /);
    expect(grpc.err).toMatch(/Code 200 : 10 \(100\.0 %\)/);
    expect(grpcMesh.err).toMatch(/Code 200 : 10 \(100\.0 %\)/);
    // An unknown service is NOT_FOUND (grpc-status 5) from the standard health service: 505.
    expect(notServing.err).toMatch(/Code 505 : 5 \(100\.0 %\)/);
  });
});
