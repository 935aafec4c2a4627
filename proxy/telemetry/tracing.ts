// Tracing. The sampling decision is made here, before any OpenTelemetry call, from the incoming
// context (parent-based) or a ratio roll (root): an unsampled request creates no span object and
// costs one header scan. Sampled requests get real SDK spans (@opentelemetry/sdk-node, OTLP/HTTP
// exporter configured by the standard OTEL_* variables, batch export off the request path).
import { randomFillSync } from 'node:crypto';
import type { Span, Tracer, Context } from '@opentelemetry/api';

export interface TraceContext {
  traceId: string;   // 32 hex
  spanId: string;    // 16 hex (the parent's span id)
  sampled: boolean;
  b3: 'single' | 'multi' | null;   // incoming B3 format, echoed back out
  tracestate?: string;
}

const HEX = /^[0-9a-f]+$/;

/** Extract W3C traceparent, else B3 single, else B3 multi-header, from raw headers. */
export function extractContext(raw: string[]): TraceContext | null {
  let tp: string | undefined, ts: string | undefined, b3: string | undefined;
  let xt: string | undefined, xs: string | undefined, xsampled: string | undefined, xflags: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    const c = n.charCodeAt(0) | 0x20;
    if (c !== 0x74 && c !== 0x62 && c !== 0x78) continue; // t, b, x: cheap pre-filter
    const l = n.toLowerCase();
    if (l === 'traceparent') tp = raw[i + 1];
    else if (l === 'tracestate') ts = raw[i + 1];
    else if (l === 'b3') b3 = raw[i + 1];
    else if (l === 'x-b3-traceid') xt = raw[i + 1];
    else if (l === 'x-b3-spanid') xs = raw[i + 1];
    else if (l === 'x-b3-sampled') xsampled = raw[i + 1];
    else if (l === 'x-b3-flags') xflags = raw[i + 1];
  }
  // Whatever context wins, a caller that speaks B3 gets B3 back (as well as traceparent).
  const b3Format = b3 ? 'single' : xt ? 'multi' : null;
  if (tp) {
    // The parser already cut SP/HTAB from the value; no trim() (it would also strip U+00A0 & co).
    const p = tp.split('-');
    if (p.length >= 4 && p[0].length === 2 && p[0] !== 'ff' && p[1].length === 32 && p[2].length === 16 && HEX.test(p[1]) && HEX.test(p[2])
      && !/^0+$/.test(p[1]) && !/^0+$/.test(p[2])) {
      return { traceId: p[1], spanId: p[2], sampled: (parseInt(p[3].slice(0, 2), 16) & 1) === 1, b3: b3Format, tracestate: ts };
    }
  }
  if (b3) {
    const p = b3.split('-');
    if (p.length >= 2 && (p[0].length === 32 || p[0].length === 16) && p[1].length === 16 && HEX.test(p[0]) && HEX.test(p[1])) {
      const s = p[2];
      return { traceId: p[0].padStart(32, '0'), spanId: p[1], sampled: s === '1' || s === 'd', b3: 'single' };
    }
  }
  if (xt && xs && (xt.length === 32 || xt.length === 16) && xs.length === 16 && HEX.test(xt) && HEX.test(xs)) {
    return { traceId: xt.padStart(32, '0'), spanId: xs, sampled: xsampled === '1' || xsampled === 'true' || xflags === '1', b3: 'multi' };
  }
  return null;
}

const TRACE_HEADERS = new Set(['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags']);
export function isTraceHeader(lower: string): boolean { return TRACE_HEADERS.has(lower); }

/** Headers that carry `spanId` as the parent of the next hop, in the formats the caller used. */
export function injectHeaders(out: string[], ctx: TraceContext, spanId: string, sampled: boolean): void {
  out.push('traceparent', `00-${ctx.traceId}-${spanId}-${sampled ? '01' : '00'}`);
  if (ctx.tracestate) out.push('tracestate', ctx.tracestate);
  if (ctx.b3 === 'single') out.push('b3', `${ctx.traceId}-${spanId}-${sampled ? '1' : '0'}`);
  else if (ctx.b3 === 'multi') out.push('x-b3-traceid', ctx.traceId, 'x-b3-spanid', spanId, 'x-b3-parentspanid', ctx.spanId, 'x-b3-sampled', sampled ? '1' : '0');
}

// Random ids from a pooled buffer: one syscall per 256 ids.
const pool = Buffer.alloc(2048);
let poolOff = pool.length;
export function randomHex(bytes: number): string {
  if (poolOff + bytes > pool.length) { randomFillSync(pool); poolOff = 0; }
  const s = pool.toString('hex', poolOff, poolOff + bytes);
  poolOff += bytes;
  return s;
}

export interface TracingOptions {
  samplingRatio: number;
  serviceName: string;
  nodeId: string;
  endpoint?: string;      // overrides OTEL_EXPORTER_OTLP(_TRACES)_ENDPOINT
  protocol?: string;      // 'http/protobuf' (default) | 'http/json'; else OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL
}

export interface SpanStats { spans_started: number; spans_ended: number; sampled: number; unsampled: number }

/** A started span plus what the next hop needs. */
export interface ActiveSpan { span: Span; ctx: TraceContext; spanId: string }

export class Tracing {
  readonly ratio: number;
  readonly nodeId: string;
  readonly stats: SpanStats = { spans_started: 0, spans_ended: 0, sampled: 0, unsampled: 0 };
  private tracer: Tracer;
  private api: typeof import('@opentelemetry/api');
  private shutdownFn: () => Promise<void>;

  private constructor(opts: TracingOptions, tracer: Tracer, api: typeof import('@opentelemetry/api'), shutdown: () => Promise<void>) {
    this.ratio = opts.samplingRatio;
    this.nodeId = opts.nodeId;
    this.tracer = tracer;
    this.api = api;
    this.shutdownFn = shutdown;
  }

  /** Load the SDK only when tracing is on, so a proxy without it pays nothing at start-up either. */
  static async start(opts: TracingOptions): Promise<Tracing> {
    const api = await import('@opentelemetry/api');
    const { node, tracing } = await import('@opentelemetry/sdk-node');
    const { resourceFromAttributes } = await import('@opentelemetry/resources');
    const protocol = opts.protocol ?? process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? process.env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
    const url = opts.endpoint;
    let exporter;
    if (protocol === 'http/json') {
      const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
      exporter = new OTLPTraceExporter(url ? { url } : {});
    } else {
      const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
      exporter = new OTLPTraceExporter(url ? { url } : {});
    }
    // A dead collector must never slow traffic: the batch processor exports off the request path,
    // drops when its queue is full, and export errors are only logged by OTel's diag (off).
    const processor = new tracing.BatchSpanProcessor(exporter, { maxQueueSize: 2048, scheduledDelayMillis: 1000, exportTimeoutMillis: 5000 });
    // A provider of our own, not the global one: several proxies (tests) can live in one process,
    // and nothing else in the process gets traced by accident.
    const provider = new node.NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME ?? opts.serviceName, 'service.instance.id': opts.nodeId }),
      spanProcessors: [processor],
      sampler: new tracing.AlwaysOnSampler(), // the decision was made before the span was created
    });
    const tracer = provider.getTracer('meshlet');
    return new Tracing(opts, tracer, api, () => provider.shutdown());
  }

  /** The per-request decision; null = not sampled (no span objects). */
  decide(parent: TraceContext | null): boolean {
    const s = parent ? parent.sampled : Math.random() < this.ratio;
    if (s) this.stats.sampled++; else this.stats.unsampled++;
    return s;
  }

  private parentContext(parent: TraceContext): Context {
    const api = this.api;
    return api.trace.setSpanContext(api.ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: api.TraceFlags.SAMPLED, isRemote: true });
  }

  /** Start a span under `parent` (or a new root trace when null). */
  startSpan(name: string, kind: 'server' | 'client', parent: TraceContext | null, attributes: Record<string, string | number | boolean>): ActiveSpan {
    const api = this.api;
    const ctx = parent ?? { traceId: randomHex(16), spanId: '', sampled: true, b3: null };
    const span = this.tracer.startSpan(name, {
      kind: kind === 'server' ? api.SpanKind.SERVER : api.SpanKind.CLIENT,
      attributes: { ...attributes, 'meshlet.node_id': this.nodeId },
    }, parent ? this.parentContext(parent) : api.ROOT_CONTEXT);
    this.stats.spans_started++;
    const sc = span.spanContext();
    return { span, ctx: { ...ctx, traceId: sc.traceId }, spanId: sc.spanId };
  }

  end(a: ActiveSpan, status: number, flags: string, error: boolean): void {
    a.span.setAttribute('http.response.status_code', status);
    if (flags !== '-') a.span.setAttribute('meshlet.response_flags', flags);
    if (error) a.span.setStatus({ code: this.api.SpanStatusCode.ERROR });
    a.span.end();
    this.stats.spans_ended++;
  }

  shutdown(): Promise<void> { return this.shutdownFn(); }
}
