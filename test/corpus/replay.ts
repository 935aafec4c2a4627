// Replay harness for the external HTTP/1.1 corpus (test/corpus/http1-corpus.json.gz, see the
// README beside it). Each case is raw request bytes (kind `request`) or a request plus the raw
// bytes an upstream answers (kind `response`), with the verdict the source implies: `expect`
// accept|reject, the parse the source gives (`messages`: bodies and completeness), how many
// requests may reach the upstream (`forward_max`), and `also_ok` where the RFC allows either answer.
//
// `replayRequest`/`replayResponse` run the engine's own parser (proxy/engine/http1.ts) the way
// the server and client connections drive it (one buffer, heads then bodies, pipelining, close
// semantics, the 64 KiB limits, CONNECT to names the corpus mesh does not route 404 (with a body
// 400), websocket upgrades forwarded and other upgrades 403), in-process; the socket-level test
// checks that the running proxy does exactly what this model says on a share of the cases.
// `classify` compares an outcome with the case: agree, disagree (a stricter or looser answer the
// RFC does not make unsafe) or security (forwarding what must be refused, a body framed differently
// than the corpus parses it, a changed header value, an invalid response relayed, a crash, a
// second request).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { ChunkedDecoder, HttpParseError, headEnd, parseRequestHead, parseResponseHead, type RequestHead } from '../../proxy/engine/http1.ts';

export interface CorpusMessage { complete: boolean; body_base64?: string | null; body?: string | null; status?: number | null }
export interface CorpusCase {
  id: string;
  source: { repo: string; path: string; commit: string; line?: number; name: string };
  kind: 'request' | 'response';
  variant: string;
  expect: 'accept' | 'reject';
  expect_detail: {
    messages: CorpusMessage[];
    forward_max?: number;
    complete?: boolean;
    error?: string | null;
    also_ok?: 'accept' | 'reject';
    lenient_forward_max?: number;
    te_alt?: { body: string };
    header?: [string, string];
    status?: number | null;
    truncated?: boolean;
    why?: string;
    gadget?: string;
  };
  note: string;
  raw_base64: string;
  response_base64?: string;
}

export interface Corpus { about: string; generated: string; count: number; cases: CorpusCase[] }

export function loadCorpus(): Corpus {
  const gz = readFileSync(new URL('./http1-corpus.json.gz', import.meta.url));
  return JSON.parse(gunzipSync(gz).toString('utf8')) as Corpus;
}

export function rawBytes(c: CorpusCase): Buffer { return Buffer.from(c.raw_base64, 'base64'); }
export function responseBytes(c: CorpusCase): Buffer { return Buffer.from(c.response_base64 ?? '', 'base64'); }

/** The listener's defaults the model follows: --max-request-headers-kb 60, the client's 64 KiB. */
export const MAX_REQUEST_HEAD = 60 * 1024;
export const MAX_RESPONSE_HEAD = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Requests

export interface ForwardedRequest {
  method: string;
  url: string;
  host: string | undefined;
  raw: string[];
  body: Buffer;
  complete: boolean;
  trailers: string[] | null;
}

export interface RequestOutcome {
  /** Requests the proxy dispatches towards an upstream, in order (heads; bodies as far as they came). */
  forwarded: ForwardedRequest[];
  /** The refusal the client gets (400, 403, 405, 431, 501 ...), or null. */
  status: number | null;
  code: string | null;
  /** Bytes were left unread because the connection closes (Connection: close, HTTP/1.0, refusal). */
  unread: boolean;
  /** A non-HttpParseError exception: a crash of the engine on input. */
  crash: string | null;
  /**
   * The bytes end inside a head: the engine waits for the rest (or answers 408). `pendingStatus`
   * is what that head gets once its final CRLF arrives (null: accepted then).
   */
  pending: boolean;
  pendingStatus: number | null;
}

/** An upgrade other than websocket (the outbound listener's default) is refused, 403; `Upgrade: h2c` alone is served as plain HTTP. */
function refusesUpgrade(h: RequestHead): boolean {
  return h.upgrade !== null && !(h.upgrade.length === 1 && h.upgrade[0] === 'h2c') && !h.upgrade.every((t) => t === 'websocket');
}

/** A websocket upgrade is forwarded; what follows its head is never parsed as HTTP. */
function tunnels(h: RequestHead): boolean {
  return h.upgrade !== null && h.upgrade.every((t) => t === 'websocket');
}

export function replayRequest(data: Buffer): RequestOutcome {
  const out: RequestOutcome = { forwarded: [], status: null, code: null, unread: false, crash: null, pending: false, pendingStatus: null };
  let off = 0;
  try {
    for (let n = 0; n < 64 && off < data.length; n++) {
      // Empty lines before a request-line are skipped (RFC 9112 section 2.2).
      while (data[off] === 0x0d && data[off + 1] === 0x0a) off += 2;
      if (off >= data.length) return out;
      const end = headEnd(data, off);
      if (end < 0) {
        if (data.length - off > MAX_REQUEST_HEAD) throw new HttpParseError(431, 'HPE_HEADER_OVERFLOW', 'request head too large');
        // Waiting for the rest of the head: what would the head get once whole?
        out.pending = true;
        out.pendingStatus = pendingVerdict(data.subarray(off));
        return out;
      }
      if (end - off > MAX_REQUEST_HEAD) throw new HttpParseError(431, 'HPE_HEADER_OVERFLOW', 'request head too large');
      const h = parseRequestHead(data.toString('latin1', off, end - 2));
      off = end;
      if (h.method === 'CONNECT') {
        // No content on a CONNECT; the corpus mesh routes no CONNECT target (no open proxy): 404 NR.
        if (h.chunked || h.contentLength >= 0) throw new HttpParseError(400, 'CONNECT', 'CONNECT with a body');
        throw new HttpParseError(404, 'NR', 'no route for the CONNECT target');
      }
      const hasBody = h.chunked || h.contentLength > 0;
      const fr: ForwardedRequest = { method: h.method, url: h.url, host: h.host, raw: h.raw, body: Buffer.alloc(0), complete: !hasBody, trailers: null };
      const parts: Buffer[] = [];
      if (h.chunked) {
        const d = new ChunkedDecoder();
        const r = d.feed(data, off, (b) => parts.push(Buffer.from(b)));
        if (r >= 0) { fr.complete = true; fr.trailers = d.trailers; off = r; } else off = data.length;
      } else if (h.contentLength > 0) {
        const k = Math.min(h.contentLength, data.length - off);
        parts.push(data.subarray(off, off + k));
        off += k;
        fr.complete = k === h.contentLength;
      }
      fr.body = Buffer.concat(parts);
      // The engine frames the body bytes in hand before dispatching, so a framing error above
      // threw before anything was forwarded. An upgrade is refused by the listener (403, nothing
      // forwarded) and the connection goes on only if keep-alive.
      if (refusesUpgrade(h)) {
        out.status = 403;
        out.code = 'upgrade_failed';
        out.unread = off < data.length;
        return out;
      }
      out.forwarded.push(fr);
      if (!fr.complete) return out;
      if (tunnels(h)) { out.unread = off < data.length; return out; }
      const keepAlive = h.minor === 1 ? !h.connClose : h.connKeepAlive;
      if (!keepAlive) { out.unread = off < data.length; return out; }
    }
  } catch (e) {
    if (e instanceof HttpParseError) { out.status = e.status; out.code = e.code; out.unread = off < data.length; return out; }
    out.crash = String((e as Error).stack ?? e);
  }
  return out;
}

/**
 * The status the complete lines of a partial head already earn (null: none yet, or nothing wrong
 * with them): the engine parses a head once it is whole, so such a head is refused when its end
 * arrives (or answered 408). A Host still to come is not held against it.
 */
function pendingVerdict(part: Buffer): number | null {
  const s = part.toString('latin1');
  const last = s.lastIndexOf('\r\n');
  if (last < 0) return null;
  try {
    parseRequestHead(s.slice(0, last + 2));
    return null;
  } catch (e) {
    if (!(e instanceof HttpParseError)) throw e;
    return e.code === 'HPE_MISSING_HOST' ? null : e.status;
  }
}

// ---------------------------------------------------------------------------------------------
// Responses

export interface ResponseOutcome {
  /** What the client gets: a relayed status, or 502 (protocol error) / 503 (closed before a head). */
  status: number | null;
  raw: string[];
  body: Buffer;
  /** The relayed response was complete (false: the client connection is reset mid-body). */
  complete: boolean;
  /** The client got the upstream's response (head relayed); false: a local 502/503. */
  relayed: boolean;
  code: string | null;
  crash: string | null;
}

/** The client connection's reading of `data` as the upstream's answer to `method`, the upstream closing after it. */
export function replayResponse(method: string, data: Buffer): ResponseOutcome {
  const out: ResponseOutcome = { status: null, raw: [], body: Buffer.alloc(0), complete: false, relayed: false, code: null, crash: null };
  let off = 0;
  try {
    for (let n = 0; n < 16; n++) {
      const end = headEnd(data, off);
      if (end < 0) {
        if (data.length - off > MAX_RESPONSE_HEAD) throw new HttpParseError(502, 'HPE_HEADER_OVERFLOW', 'response head too large');
        out.status = 503; // upstream closed before a (complete) head: 503 UC
        out.code = 'closed';
        return out;
      }
      if (end - off > MAX_RESPONSE_HEAD) throw new HttpParseError(502, 'HPE_HEADER_OVERFLOW', 'response head too large');
      const h = parseResponseHead(data.toString('latin1', off, end - 2));
      off = end;
      if (h.status < 200) {
        if (h.status === 101) throw new HttpParseError(502, 'UNEXPECTED_101', 'unexpected 101 Switching Protocols');
        continue;
      }
      out.status = h.status;
      out.raw = h.raw;
      out.relayed = true;
      const noBody = method === 'HEAD' || h.status === 204 || h.status === 304;
      const parts: Buffer[] = [];
      if (noBody) out.complete = true;
      else if (h.chunked) {
        const d = new ChunkedDecoder();
        try {
          out.complete = d.feed(data, off, (b) => parts.push(Buffer.from(b))) >= 0;
        } catch (e) {
          if (!(e instanceof HttpParseError)) throw e;
          out.code = e.code; // after the head: the client is reset
          out.complete = false;
        }
      } else if (h.contentLength >= 0) {
        const k = Math.min(h.contentLength, data.length - off);
        parts.push(data.subarray(off, off + k));
        out.complete = k === h.contentLength;
      } else {
        parts.push(data.subarray(off)); // read until close; the upstream closes now
        out.complete = true;
      }
      out.body = Buffer.concat(parts);
      return out;
    }
    out.status = 503;
    out.code = 'too many interim responses';
  } catch (e) {
    if (e instanceof HttpParseError) { out.status = 502; out.code = e.code; return out; }
    out.crash = String((e as Error).stack ?? e);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Classification

export type Verdict = 'agree' | 'disagree' | 'security';
export interface Classified { verdict: Verdict; why: string }

function corpusBody(m: CorpusMessage): Buffer | null {
  if (typeof m.body_base64 === 'string') return Buffer.from(m.body_base64, 'base64');
  if (typeof m.body === 'string') return Buffer.from(m.body, 'latin1');
  return null;
}

export function classifyRequest(c: CorpusCase, o: RequestOutcome): Classified {
  const e = c.expect_detail;
  if (o.crash !== null) return { verdict: 'security', why: `crash: ${o.crash.split('\n')[0]}` };
  const lenient = e.also_ok === 'accept' && c.expect === 'reject';
  const allowed = lenient ? (e.lenient_forward_max ?? e.forward_max ?? 0) : (e.forward_max ?? e.messages.length);
  if (o.forwarded.length > allowed) {
    return { verdict: 'security', why: `forwarded ${o.forwarded.length} request(s), at most ${allowed} may reach the upstream` };
  }
  // Every request both parse: the same body, the same completeness (else the framing differs).
  for (let i = 0; i < o.forwarded.length; i++) {
    const f = o.forwarded[i];
    const m = e.messages[i];
    if (m === undefined) {
      if (lenient && e.te_alt === undefined && e.messages.length === 0) continue; // lenient accept of a head the corpus refuses
      return { verdict: 'security', why: `request ${i + 1} forwarded, the corpus parses no such message` };
    }
    const want = corpusBody(m);
    const alt = e.te_alt !== undefined ? Buffer.from(e.te_alt.body, 'latin1') : null;
    // An incomplete message in a refused case is where the corpus's parser stopped at its error,
    // not a framing claim; the forwarding bound above already covers accepting it.
    const framingClaim = c.expect === 'accept' || m.complete;
    if (framingClaim && m.complete !== f.complete && !(f.complete && alt !== null && f.body.equals(alt))) {
      return { verdict: 'security', why: `request ${i + 1}: body ${f.complete ? 'complete' : 'incomplete'} here, ${m.complete ? 'complete' : 'incomplete'} in the corpus` };
    }
    if (framingClaim && want !== null && !f.body.equals(want) && !(alt !== null && f.body.equals(alt))) {
      return { verdict: 'security', why: `request ${i + 1}: body ${JSON.stringify(f.body.toString('latin1').slice(0, 40))} differs from the corpus ${JSON.stringify(want.toString('latin1').slice(0, 40))}` };
    }
  }
  if (e.header !== undefined && o.forwarded.length > 0) {
    const [name, value] = e.header;
    const raw = o.forwarded[0].raw;
    let ok = false;
    for (let k = 0; k < raw.length; k += 2) if (raw[k].toLowerCase() === name.toLowerCase() && raw[k + 1] === value) ok = true;
    if (!ok) return { verdict: 'security', why: `header ${name} not forwarded byte-exact` };
  }
  // Answered, then the connection closed with bytes left unread (Connection: close, HTTP/1.0):
  // both a refusal of what followed and an acceptance of what came first, as the corpus reads it.
  if (o.status === null && o.unread) return { verdict: 'agree', why: '' };
  // The verdict: refused (a status, or a partial head refused once whole) or accepted.
  const refused = o.status !== null || (o.pending && o.pendingStatus !== null);
  const ours = refused ? 'reject' : 'accept';
  if (ours === c.expect || ours === e.also_ok) return { verdict: 'agree', why: '' };
  if (o.pending && o.forwarded.length <= (e.forward_max ?? 0)) {
    return { verdict: 'disagree', why: 'waits for the end of the head (then 400, or 408 after the headers timeout); the corpus refuses on the first bad byte' };
  }
  return { verdict: 'disagree', why: ours === 'reject' ? `refused (${o.status ?? 'closed'} ${o.code ?? ''}), the corpus accepts` : 'accepted, the corpus refuses' };
}

export function classifyResponse(c: CorpusCase, o: ResponseOutcome): Classified {
  const e = c.expect_detail;
  if (o.crash !== null) return { verdict: 'security', why: `crash: ${o.crash.split('\n')[0]}` };
  const delivered = o.relayed && o.complete;
  const m = e.messages[0];
  if (delivered) {
    if (c.expect === 'reject' && e.also_ok !== 'accept') {
      return { verdict: 'security', why: `relayed a ${o.status} the corpus refuses${e.truncated ? ' (truncated)' : ''}` };
    }
    if (m !== undefined) {
      const want = corpusBody(m);
      if (want !== null && !o.body.equals(want)) return { verdict: 'security', why: `body ${JSON.stringify(o.body.toString('latin1').slice(0, 40))} differs from the corpus ${JSON.stringify(want.toString('latin1').slice(0, 40))}` };
      if (typeof m.status === 'number' && m.status !== o.status) return { verdict: 'security', why: `status ${o.status}, the corpus ${m.status}` };
    }
    return { verdict: 'agree', why: '' };
  }
  // Refused: a local 502/503 or a reset after the head.
  if (c.expect === 'reject' || e.also_ok === 'reject') return { verdict: 'agree', why: '' };
  return { verdict: 'disagree', why: `refused (${o.relayed ? 'reset after the head' : o.status} ${o.code ?? ''}), the corpus accepts` };
}

export function replay(c: CorpusCase): { outcome: RequestOutcome | ResponseOutcome; result: Classified } {
  if (c.kind === 'request') {
    const o = replayRequest(rawBytes(c));
    return { outcome: o, result: classifyRequest(c, o) };
  }
  const req = rawBytes(c).toString('latin1');
  const method = req.slice(0, req.indexOf(' '));
  const o = replayResponse(method, responseBytes(c));
  return { outcome: o, result: classifyResponse(c, o) };
}
