// Tracing across two sidecars with a real OTLP/HTTP (JSON) receiver on loopback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, proxyFor, send, startUpstream, stat, type Upstream } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes: Array<{ key: string; value: Record<string, unknown> }> }

const closers: Array<() => Promise<void>> = [];
afterAll(async () => { for (const c of closers.reverse()) await c(); });

let spans: OtlpSpan[] = [];
let collector: Upstream;
let app: Upstream;

beforeAll(async () => {
  collector = await startUpstream((req, res) => {
    let b = '';
    req.on('data', (c) => { b += c; });
    req.on('end', () => {
      const body = JSON.parse(b);
      for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...ss.spans);
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  app = await startUpstream(echo('app'));
  closers.push(() => collector.close(), () => app.close());
});

/** Sidecar B fronts the app (inbound); sidecar A routes `svc` to B's inbound port. */
async function twoHops(sampling: number, endpoint: string): Promise<{ a: RunningProxy; b: RunningProxy }> {
  const trace = { traceSampling: sampling, traceEndpoint: endpoint, traceProtocol: 'http/json' };
  const b = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: none }
spec: { hosts: [none], ports: [{ number: 80, name: http }] }
`, { appPort: app.port, service: 'svc', ...trace });
  const a = await proxyFor(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc }
spec:
  hosts: [svc]
  ports: [{ number: 80, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${b.ports.inbound} } }]
`, { service: 'client', ...trace });
  closers.push(() => a.drain(200), () => b.drain(200));
  return { a, b };
}

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe('tracing', () => {
  it('a sampled traceparent keeps its trace id, gets a new parent span id, and spans link across two sidecars', async () => {
    spans = [];
    const { a, b } = await twoHops(0, `http://127.0.0.1:${collector.port}/v1/traces`);
    const r = await send(a.ports.outbound, { host: 'svc', headers: { traceparent: `00-${TRACE}-${PARENT}-01` } });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body).headers.traceparent as string;
    const [, traceId, parentId, flags] = seen.split('-');
    expect(traceId).toBe(TRACE);
    expect(parentId).not.toBe(PARENT);
    expect(flags).toBe('01');
    // Shut down both providers: they flush their batches to the receiver.
    await a.drain(100);
    await b.drain(100);
    await waitFor(() => spans.length >= 2);
    const client = spans.find((s) => s.kind === 3)!; // SPAN_KIND_CLIENT
    const server = spans.find((s) => s.kind === 2)!; // SPAN_KIND_SERVER
    expect(client.traceId).toBe(TRACE);
    expect(client.parentSpanId).toBe(PARENT);
    expect(server.traceId).toBe(TRACE);
    expect(server.parentSpanId).toBe(client.spanId);
    expect(parentId).toBe(server.spanId); // the app's parent is sidecar B's server span
    const attrs = Object.fromEntries(client.attributes.map((x) => [x.key, Object.values(x.value)[0]]));
    expect(attrs['http.request.method']).toBe('GET');
    expect(attrs['meshlet.upstream_cluster']).toBe('outbound|80||svc');
    expect(Number(attrs['http.response.status_code'])).toBe(200);
  });

  it('with sampling 0 and no incoming trace, nothing is exported and no span is created', async () => {
    spans = [];
    const { a, b } = await twoHops(0, `http://127.0.0.1:${collector.port}/v1/traces`);
    for (let i = 0; i < 20; i++) expect((await send(a.ports.outbound, { host: 'svc' })).status).toBe(200);
    expect(await stat(a.ports.admin, 'tracing.spans_started')).toBe(0);
    expect(await stat(b.ports.admin, 'tracing.spans_started')).toBe(0);
    expect(await stat(a.ports.admin, 'tracing.unsampled')).toBe(20);
    await a.drain(100);
    await b.drain(100);
    await new Promise((r) => setTimeout(r, 200));
    expect(spans).toEqual([]);
  });

  it('B3 in -> B3 and traceparent out', async () => {
    const { a } = await twoHops(0, `http://127.0.0.1:${collector.port}/v1/traces`);
    const single = JSON.parse((await send(a.ports.outbound, { host: 'svc', headers: { b3: `${TRACE}-${PARENT}-1` } })).body).headers;
    expect(single.b3).toMatch(new RegExp(`^${TRACE}-[0-9a-f]{16}-1$`));
    expect(single.traceparent).toMatch(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
    const multi = JSON.parse((await send(a.ports.outbound, { host: 'svc', headers: { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' } })).body).headers;
    expect(multi['x-b3-traceid']).toBe(TRACE);
    expect(multi['x-b3-spanid']).toMatch(/^[0-9a-f]{16}$/);
    expect(multi.traceparent).toMatch(new RegExp(`^00-${TRACE}-`));
  });

  it('a dead OTLP endpoint does not change response codes', async () => {
    const dead = await startUpstream(() => {});
    const port = dead.port;
    await dead.close();
    const { a } = await twoHops(1, `http://127.0.0.1:${port}/v1/traces`);
    for (let i = 0; i < 30; i++) expect((await send(a.ports.outbound, { host: 'svc' })).status).toBe(200);
    expect(await stat(a.ports.admin, 'tracing.spans_started')).toBe(30);
  });
});
