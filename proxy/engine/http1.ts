// HTTP/1.1 message syntax (RFC 9112), strict in what it accepts: the proxy parses only what it
// must to route and frame a message, and rejects every form that two parsers could read
// differently (request smuggling): CL+TE, duplicate Content-Length, Transfer-Encoding other than
// a lone `chunked`, obs-fold, bare LF, whitespace before the colon, control characters, bad
// chunk sizes. A head is parsed from one latin1 string, so header values round-trip byte-exact.

/** A message the proxy refuses: `status` is what the client gets (400, 431, 501 ...). */
export class HttpParseError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Character classes, one table lookup per byte.
const TCHAR = new Uint8Array(256);   // token characters (method, header names, codings)
const VCHAR = new Uint8Array(256);   // field value: HTAB, SP, VCHAR, obs-text
const TARGET = new Uint8Array(256);  // request-target: VCHAR and obs-text, no SP
for (let c = 0; c < 256; c++) {
  const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  TCHAR[c] = alnum || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)) ? 1 : 0;
  VCHAR[c] = c === 0x09 || (c >= 0x20 && c !== 0x7f) ? 1 : 0;
  TARGET[c] = (c > 0x20 && c !== 0x7f) ? 1 : 0;
}
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) { HEX[0x41 + c] = 10 + c; HEX[0x61 + c] = 10 + c; }

/** Envoy's default limit on the number of request headers (max_headers_count). */
export const MAX_HEADERS = 100;

const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Where the head in `buf[from..]` ends (the index just past CRLFCRLF), or -1 when it is not
 * complete yet. Throws on a bare LF so a head written with LF line ends is refused now rather
 * than left waiting for a terminator that never comes.
 */
export function headEnd(buf: Buffer, from: number): number {
  const i = buf.indexOf(CRLFCRLF, from);
  if (i >= 0) return i + 4;
  let lf = buf.indexOf(10, from);
  while (lf >= 0) {
    if (lf === from || buf[lf - 1] !== 13) throw new HttpParseError(400, 'HPE_LF_EXPECTED', 'bare LF in the message head');
    lf = buf.indexOf(10, lf + 1);
  }
  return -1;
}

/** Lower-case ASCII compare of s[start, start+t.length) with the lower-case `t`. */
function eqLower(s: string, start: number, t: string): boolean {
  for (let i = 0; i < t.length; i++) if ((s.charCodeAt(start + i) | 0x20) !== t.charCodeAt(i)) return false;
  return true;
}

/** Comma-separated tokens of a Connection header, lower-cased. */
function connectionFlags(v: string, into: HeadInfo): void {
  for (const part of v.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === 'close') into.connClose = true;
    else if (t === 'keep-alive') into.connKeepAlive = true;
    else if (t === 'upgrade') into.connUpgrade = true;
  }
}

export interface HeadInfo {
  /** Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: number;
  /** Flat [name, value, ...] as received (names keep their case). */
  raw: string[];
  /** -1: none. */
  contentLength: number;
  chunked: boolean;
  connClose: boolean;
  connKeepAlive: boolean;
  connUpgrade: boolean;
}

export interface RequestHead extends HeadInfo {
  method: string;
  url: string;
  host: string | undefined;
  upgrade: boolean;
  expectContinue: boolean;
}

export interface ResponseHead extends HeadInfo {
  status: number;
  reason: string;
}

function bad(code: string, message: string): HttpParseError { return new HttpParseError(400, code, message); }

/** `HTTP/1.1` or `HTTP/1.0` at s[i..i+8): the minor version, else -1. */
function version(s: string, i: number): number {
  if (s.charCodeAt(i) !== 0x48 || s.charCodeAt(i + 1) !== 0x54 || s.charCodeAt(i + 2) !== 0x54 || s.charCodeAt(i + 3) !== 0x50
    || s.charCodeAt(i + 4) !== 0x2f || s.charCodeAt(i + 5) !== 0x31 || s.charCodeAt(i + 6) !== 0x2e) return -1;
  const m = s.charCodeAt(i + 7);
  return m === 0x31 ? 1 : m === 0x30 ? 0 : -1;
}

/**
 * Header lines from s[i..], each ending CRLF (the head's final empty line already cut off).
 * Fills `h` and returns the Host value when `request`.
 */
function parseFields(s: string, i: number, h: HeadInfo, request: boolean): { host: string | undefined; hosts: number; upgrade: boolean; expect: boolean } {
  const len = s.length;
  const raw = h.raw;
  let host: string | undefined;
  let hosts = 0;
  let upgrade = false;
  let expect = false;
  let te: string | null = null;
  while (i < len) {
    const ns = i;
    let c = s.charCodeAt(i);
    if (c === 0x20 || c === 0x09) throw bad('HPE_INVALID_HEADER_TOKEN', 'obsolete line folding is not accepted');
    while (TCHAR[c] === 1) c = s.charCodeAt(++i);
    if (i === ns || c !== 0x3a) throw bad('HPE_INVALID_HEADER_TOKEN', 'invalid header name');
    const nl = i - ns;
    i++;
    c = s.charCodeAt(i);
    while (c === 0x20 || c === 0x09) c = s.charCodeAt(++i);
    const vs = i;
    let ve = i;
    while (c !== 0x0d) {
      if (i >= len || VCHAR[c] !== 1) throw bad('HPE_INVALID_HEADER_TOKEN', 'invalid character in a header value');
      if (c !== 0x20 && c !== 0x09) ve = i + 1;
      c = s.charCodeAt(++i);
    }
    if (s.charCodeAt(i + 1) !== 0x0a) throw bad('HPE_LF_EXPECTED', 'CR without LF in the message head');
    i += 2;
    if (raw.length >= MAX_HEADERS * 2) throw new HttpParseError(431, 'HPE_HEADER_OVERFLOW', 'too many headers');
    const value = s.slice(vs, ve);
    raw.push(s.slice(ns, ns + nl), value);
    // The few headers that frame or route the message.
    switch (nl) {
      case 4: if (request && eqLower(s, ns, 'host')) { host = value; hosts++; } break;
      case 6: if (request && eqLower(s, ns, 'expect') && value.toLowerCase() === '100-continue') expect = true; break;
      case 7: if (request && eqLower(s, ns, 'upgrade')) upgrade = true; break;
      case 10: if (eqLower(s, ns, 'connection')) connectionFlags(value, h); break;
      case 14:
        if (eqLower(s, ns, 'content-length')) {
          if (h.contentLength >= 0) throw bad('HPE_UNEXPECTED_CONTENT_LENGTH', 'more than one Content-Length');
          if (value.length === 0 || value.length > 15) throw bad('HPE_INVALID_CONTENT_LENGTH', 'invalid Content-Length');
          let n = 0;
          for (let k = 0; k < value.length; k++) {
            const d = value.charCodeAt(k) - 0x30;
            if (d < 0 || d > 9) throw bad('HPE_INVALID_CONTENT_LENGTH', 'invalid Content-Length');
            n = n * 10 + d;
          }
          h.contentLength = n;
        }
        break;
      case 17: if (eqLower(s, ns, 'transfer-encoding')) te = te === null ? value : `${te},${value}`; break;
    }
  }
  if (te !== null) {
    // Only a lone `chunked` is understood; anything else could be framed differently elsewhere.
    const codings = te.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
    if (codings.length === 0 || codings[codings.length - 1] !== 'chunked') {
      if (request) throw bad('HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding must end in chunked');
      h.chunked = false; // a response without chunked last is read until close
      h.contentLength = -1;
      h.connClose = true;
    } else if (codings.length > 1) {
      throw new HttpParseError(request ? 501 : 502, 'HPE_INVALID_TRANSFER_ENCODING', 'unsupported Transfer-Encoding');
    } else {
      if (h.contentLength >= 0) throw bad('HPE_UNEXPECTED_CONTENT_LENGTH', 'both Content-Length and Transfer-Encoding');
      h.chunked = true;
    }
  }
  return { host, hosts, upgrade, expect };
}

/** Parse a request head: `s` is the latin1 head without its final CRLF (every line ends CRLF). */
export function parseRequestHead(s: string): RequestHead {
  let i = 0;
  // RFC 9112 section 2.2: ignore empty lines before the request line.
  while (s.charCodeAt(i) === 0x0d && s.charCodeAt(i + 1) === 0x0a) i += 2;
  const ms = i;
  let c = s.charCodeAt(i);
  while (TCHAR[c] === 1) c = s.charCodeAt(++i);
  if (i === ms || c !== 0x20) throw bad('HPE_INVALID_METHOD', 'invalid method');
  const method = s.slice(ms, i);
  const us = ++i;
  c = s.charCodeAt(i);
  while (TARGET[c] === 1) c = s.charCodeAt(++i);
  if (i === us || c !== 0x20) throw bad('HPE_INVALID_URL', 'invalid request target');
  const url = s.slice(us, i);
  const minor = version(s, i + 1);
  if (minor < 0) throw bad('HPE_INVALID_VERSION', 'unsupported HTTP version');
  i += 9;
  if (s.charCodeAt(i) !== 0x0d || s.charCodeAt(i + 1) !== 0x0a) throw bad('HPE_INVALID_VERSION', 'invalid request line');
  const h: RequestHead = {
    method, url, minor, raw: [], contentLength: -1, chunked: false, connClose: false, connKeepAlive: false, connUpgrade: false,
    host: undefined, upgrade: false, expectContinue: false,
  };
  const f = parseFields(s, i + 2, h, true);
  if (f.hosts > 1) throw bad('HPE_UNEXPECTED_HOST', 'more than one Host header');
  if (f.hosts === 0 && minor === 1) throw bad('HPE_MISSING_HOST', 'HTTP/1.1 request without Host');
  h.host = f.host;
  h.upgrade = f.upgrade;
  h.expectContinue = f.expect;
  return h;
}

/** Parse a response head (same rules; an upstream that breaks them is a protocol error). */
export function parseResponseHead(s: string): ResponseHead {
  const minor = version(s, 0);
  if (minor < 0 || s.charCodeAt(8) !== 0x20) throw new HttpParseError(502, 'HPE_INVALID_CONSTANT', 'invalid status line');
  const d0 = s.charCodeAt(9) - 0x30, d1 = s.charCodeAt(10) - 0x30, d2 = s.charCodeAt(11) - 0x30;
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) throw new HttpParseError(502, 'HPE_INVALID_STATUS', 'invalid status code');
  const eol = s.indexOf('\r\n', 12);
  let c = s.charCodeAt(12);
  if (eol < 0 || (c !== 0x20 && eol !== 12)) throw new HttpParseError(502, 'HPE_INVALID_STATUS', 'invalid status line');
  for (let k = 13; k < eol; k++) {
    c = s.charCodeAt(k);
    if (VCHAR[c] !== 1) throw new HttpParseError(502, 'HPE_INVALID_STATUS', 'invalid reason phrase');
  }
  const h: ResponseHead = {
    status: d0 * 100 + d1 * 10 + d2, reason: eol > 13 ? s.slice(13, eol) : '', minor, raw: [],
    contentLength: -1, chunked: false, connClose: false, connKeepAlive: false, connUpgrade: false,
  };
  try {
    parseFields(s, eol + 2, h, false);
  } catch (e) {
    const pe = e as HttpParseError;
    throw new HttpParseError(502, pe.code, pe.message);
  }
  return h;
}

// Chunked decoding states.
const SIZE = 0, SIZE_WS = 1, EXT = 2, SIZE_LF = 3, DATA = 4, DATA_CR = 5, DATA_LF = 6, TRAILER = 7, TRAILER_LF = 8, LAST_LF = 9, DONE = 10;
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;

/**
 * Incremental chunked decoder. `feed` calls `onData` with slices of `buf` (no copies) and
 * returns the index where the message ended (the rest belongs to the next message), or -1 when
 * it needs more bytes. Trailers are read and dropped. Throws HttpParseError on bad framing.
 */
export class ChunkedDecoder {
  private state = SIZE;
  private size = 0;
  private digits = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  private lineEmpty = true;

  get done(): boolean { return this.state === DONE; }

  feed(buf: Buffer, start: number, onData: (b: Buffer) => void): number {
    const end = buf.length;
    let i = start;
    while (i < end) {
      switch (this.state) {
        case SIZE: {
          const c = buf[i];
          const v = HEX[c];
          if (v >= 0) {
            if (++this.digits > 12) throw bad('HPE_INVALID_CHUNK_SIZE', 'chunk size too large');
            this.size = this.size * 16 + v;
            i++;
            continue;
          }
          if (this.digits === 0) throw bad('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
          if (c === 0x0d) { this.state = SIZE_LF; i++; continue; }
          if (c === 0x3b) { this.state = EXT; this.lineBytes = 0; i++; continue; }
          if (c === 0x20 || c === 0x09) { this.state = SIZE_WS; i++; continue; }
          throw bad('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
        }
        case SIZE_WS: {
          const c = buf[i++];
          if (c === 0x20 || c === 0x09) continue;
          if (c === 0x3b) { this.state = EXT; this.lineBytes = 0; continue; }
          if (c === 0x0d) { this.state = SIZE_LF; continue; }
          throw bad('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
        }
        case EXT: {
          const c = buf[i++];
          if (c === 0x0d) { this.state = SIZE_LF; continue; }
          if (VCHAR[c] !== 1 || ++this.lineBytes > MAX_CHUNK_LINE) throw bad('HPE_INVALID_CHUNK_EXTENSIONS', 'invalid chunk extension');
          continue;
        }
        case SIZE_LF: {
          if (buf[i++] !== 0x0a) throw bad('HPE_LF_EXPECTED', 'chunk size line without LF');
          this.digits = 0;
          if (this.size === 0) { this.state = TRAILER; this.lineEmpty = true; continue; }
          this.state = DATA;
          continue;
        }
        case DATA: {
          const n = Math.min(this.size, end - i);
          onData(n === end - i && i === 0 ? buf : buf.subarray(i, i + n));
          this.size -= n;
          i += n;
          if (this.size === 0) this.state = DATA_CR;
          continue;
        }
        case DATA_CR:
          if (buf[i++] !== 0x0d) throw bad('HPE_STRICT', 'chunk data not followed by CRLF');
          this.state = DATA_LF;
          continue;
        case DATA_LF:
          if (buf[i++] !== 0x0a) throw bad('HPE_STRICT', 'chunk data not followed by CRLF');
          this.state = SIZE;
          continue;
        case TRAILER: {
          // Trailer fields (or the final empty line): validated loosely for length, then dropped.
          const c = buf[i++];
          if (c === 0x0d) { this.state = this.lineEmpty ? LAST_LF : TRAILER_LF; continue; }
          if (VCHAR[c] !== 1 || ++this.trailerBytes > MAX_TRAILERS) throw bad('HPE_INVALID_HEADER_TOKEN', 'invalid trailer');
          this.lineEmpty = false;
          continue;
        }
        case TRAILER_LF:
          if (buf[i++] !== 0x0a) throw bad('HPE_LF_EXPECTED', 'trailer without LF');
          this.state = TRAILER;
          this.lineEmpty = true;
          continue;
        case LAST_LF:
          if (buf[i++] !== 0x0a) throw bad('HPE_LF_EXPECTED', 'last chunk without LF');
          this.state = DONE;
          return i;
        default:
          return i;
      }
    }
    return -1;
  }
}

/** The chunked framing of one body chunk's size line. */
export function chunkHeader(n: number): string { return `${n.toString(16)}\r\n`; }
