// Micro-benchmark: what a request's and a response's header names cost through the proxy's
// header path (parse, then hop-by-hop hygiene and the lookups the listener makes), and how much of
// it is lower-casing names: the ceiling of issue 21's "lower-case header names once in the
// parser" lever. It also runs that lever, written here as a variant (the parser's names lowered
// once, hygiene reading the lowered array), so the saving is measured rather than guessed.
// Run alone: `npx node bench/micro/headers.ts`.
import { parseRequestHead, parseResponseHead } from '../../proxy/engine/http1.ts';
import { downstreamResponseHeaders, ENVOY_CONTROL, getRaw, isHopByHop, upstreamRequestHeaders } from '../../proxy/listener/headers.ts';
import { contentTypeOf } from '../../proxy/grpc.ts';
import { nsPerOp } from './timing.ts';

// A browser-ish request through a mesh (what a Bookinfo productpage call carries), and a small
// wrk-like one (what the bench's closed loop sends: Host only).
const REQ_REAL = ['GET /productpage?u=normal HTTP/1.1', 'Host: productpage.bookinfo.svc.cluster.local', 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0',
  'Accept: text/html,application/xhtml+xml', 'Accept-Encoding: gzip, deflate, br', 'Accept-Language: en-US,en;q=0.9', 'Cookie: session=abc123; user=jason',
  'Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig', 'Content-Type: text/plain', 'X-Request-Id: 6f1c2a4e-8d3b-4b7a-9c1e-2f5d6a7b8c9d',
  'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'X-Forwarded-For: 10.0.0.7', 'Connection: keep-alive'].join('\r\n') + '\r\n';
const REQ_WRK = 'GET / HTTP/1.1\r\nHost: upstream.bench\r\n';
const RES_REAL = ['HTTP/1.1 200 OK', 'Content-Type: text/html; charset=utf-8', 'Content-Length: 5293', 'Date: Wed, 02 Dec 2026 14:00:00 GMT',
  'Server: istio-envoy', 'Cache-Control: no-cache', 'Set-Cookie: session=abc123; Path=/', 'Vary: Accept-Encoding', 'X-Envoy-Upstream-Service-Time: 3',
  'Connection: keep-alive'].join('\r\n') + '\r\n';
const RES_SMALL = 'HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nDate: Wed, 02 Dec 2026 14:00:00 GMT\r\n';

let sink = 0;

/** The listener's reads of a request head, in its order (listener.ts): dtab scan, hygiene, lookups. */
function requestPath(head: string): void {
  const r = parseRequestHead(head);
  const raw = r.raw;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.length < 4 || n.charCodeAt(1) !== 0x35 || (n.charCodeAt(0) | 0x20) !== 0x6c) continue;
    if (n.toLowerCase().startsWith('l5d-')) sink++;
  }
  const out = upstreamRequestHeaders(raw, null);
  sink += (getRaw(raw, 'x-request-id')?.length ?? 0) + (getRaw(raw, 'x-forwarded-for')?.length ?? 0) + (contentTypeOf(raw)?.length ?? 0) + out.length;
}

function responsePath(head: string): void {
  const r = parseResponseHead(head);
  sink += downstreamResponseHeaders(r.raw).length;
}

/** Every toLowerCase the path above makes, alone (the same names, the same filters). */
function lowerCalls(head: string, request: boolean): () => void {
  const raw = request ? parseRequestHead(head).raw : parseResponseHead(head).raw;
  const names = raw.filter((_, i) => i % 2 === 0);
  return () => {
    for (const n of names) {
      sink += n.toLowerCase().length; // upstreamRequestHeaders / downstreamResponseHeaders
      if (n.length === 10) sink += n.toLowerCase().length; // connectionTokens
      if (request) {
        if (n.length === 12) sink += n.toLowerCase().length; // x-request-id, content-type
        if (n.length === 15) sink += n.toLowerCase().length; // x-forwarded-for
      }
    }
  };
}

// --- the lever, as a variant: names lowered once while parsing, hygiene and lookups read them ---

const HOP = (lower: string) => isHopByHop(lower, null);

function requestPathLowered(head: string): void {
  const r = parseRequestHead(head);
  const raw = r.raw;
  // What the parser would do: one lowered copy of each name (no call when already lower case).
  const lower: string[] = new Array(raw.length >> 1);
  for (let i = 0, k = 0; i < raw.length; i += 2, k++) lower[k] = raw[i].toLowerCase();
  let rid: string | undefined, xff: string | undefined, ct: string | undefined;
  const out: string[] = [];
  for (let i = 0, k = 0; i < raw.length; i += 2, k++) {
    const l = lower[k];
    if (l.startsWith('l5d-')) sink++;
    if (rid === undefined && l === 'x-request-id') rid = raw[i + 1];
    else if (xff === undefined && l === 'x-forwarded-for') xff = raw[i + 1];
    else if (ct === undefined && l === 'content-type') ct = raw[i + 1];
    if (HOP(l) || ENVOY_CONTROL.has(l) || l === 'x-forwarded-proto' || l === 'x-envoy-attempt-count') continue;
    out.push(raw[i], raw[i + 1]);
  }
  sink += (rid?.length ?? 0) + (xff?.length ?? 0) + (ct?.length ?? 0) + out.length;
}

const rows: string[][] = [];
const row = (what: string, ns: number, note = '') => rows.push([what, ns.toFixed(0), note]);

for (const [label, head] of [['realistic request (13 fields)', REQ_REAL], ['wrk request (Host only)', REQ_WRK]] as const) {
  const parse = nsPerOp(() => { sink += parseRequestHead(head).raw.length; });
  const path = nsPerOp(() => requestPath(head));
  const lc = nsPerOp(lowerCalls(head, true));
  const lowered = nsPerOp(() => requestPathLowered(head));
  row(`${label}: parse`, parse);
  row(`${label}: parse + hygiene + lookups (as the listener)`, path);
  row(`${label}: its toLowerCase calls alone`, lc, `${((lc / path) * 100).toFixed(0)} % of the path`);
  row(`${label}: lowered once, one pass (the lever)`, lowered, `${(path - lowered).toFixed(0)} ns saved`);
}
for (const [label, head] of [['realistic response (9 fields)', RES_REAL], ['bench response (2 fields)', RES_SMALL]] as const) {
  const path = nsPerOp(() => responsePath(head));
  const lc = nsPerOp(lowerCalls(head, false));
  row(`${label}: parse + hygiene`, path);
  row(`${label}: its toLowerCase calls alone`, lc, `${((lc / path) * 100).toFixed(0)} % of the path`);
}

console.log(`node ${process.version}\n`);
console.log('| what | ns/op | note |\n|---|---:|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
if (sink === -1) console.log('');
