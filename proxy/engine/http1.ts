// HTTP/1.1 message syntax (RFC 9112), strict in what it accepts: the proxy parses only what it
// must to route and frame a message, and rejects every form that two parsers could read
// differently (request smuggling): CL+TE, duplicate Content-Length, Transfer-Encoding other than
// a lone `chunked`, obs-fold, bare LF, whitespace before the colon, control characters, bad
// chunk sizes, request-targets outside RFC 9112 section 3.2. A head is parsed from one latin1
// string, so header values round-trip byte-exact. Whitespace is only ever SP/HTAB (RFC 9110 OWS):
// never String.prototype.trim(), which also strips U+00A0, U+0085, U+FEFF (latin1 obs-text bytes),
// and case folding is ASCII-only, so a byte >= 0x80 can never turn into a token it is not.

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
// request-target: printable ASCII but '#' (a fragment is never part of a target; Envoy rejects
// it by default), no obs-text or CTLs. The RFC 3986 gen-delims/sub-delims and the unwise
// characters real clients send unencoded (`"`, `|`, `{`, `\\` ...) are kept, as llhttp and Envoy do.
const TARGET = new Uint8Array(256);
// authority (RFC 3986 section 3.2.2 host [":" port]): unreserved, pct-encoded, sub-delims, IP-literal brackets, ':'
const AUTHORITY = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  TCHAR[c] = alnum || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)) ? 1 : 0;
  VCHAR[c] = c === 0x09 || (c >= 0x20 && c !== 0x7f) ? 1 : 0;
  TARGET[c] = c > 0x20 && c < 0x7f && c !== 0x23 ? 1 : 0;
  AUTHORITY[c] = alnum || "-._~%!$&'()*+,;=:[]".includes(String.fromCharCode(c)) ? 1 : 0;
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

/** Lower-case ASCII compare of s[start, start+t.length) with the lower-case `t` (letters and '-' only). */
function eqLower(s: string, start: number, t: string): boolean {
  for (let i = 0; i < t.length; i++) if ((s.charCodeAt(start + i) | 0x20) !== t.charCodeAt(i)) return false;
  return true;
}

/** `s` equals the lower-case `t` ignoring ASCII case only (no Unicode folding, no trimming). */
export function asciiEqualsLower(s: string, t: string): boolean {
  if (s.length !== t.length) return false;
  for (let i = 0; i < t.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== t.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The first value of field `lower` (lower-case) in flat [name, value, ...] headers, or undefined.
 * The one lookup every layer uses (listener, filters, the balancer's hash key, the control
 * client). The length test rejects almost every name before toLowerCase() runs; an in-place
 * ASCII compare (asciiEqualsLower) measured no faster here (~170–330 ns either way for six
 * lookups in a 16-field head).
 */
export function fieldValue(headers: readonly string[], lower: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i];
    if (n.length === lower.length && (n === lower || n.toLowerCase() === lower)) return headers[i + 1];
  }
  return undefined;
}

/** ASCII-only lower case (latin1 letters >= 0xC0 stay as they are). */
export function asciiLower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
  }
  return s;
}

/**
 * The elements of a comma-separated list field (RFC 9110 section 5.6.1), each with OWS (SP/HTAB
 * only) cut from both ends and ASCII-lower-cased (unless `lower` is false); empty elements dropped.
 */
export function listTokens(v: string, lower = true): string[] {
  const out: string[] = [];
  let i = 0;
  const n = v.length;
  while (i <= n) {
    let e = v.indexOf(',', i);
    if (e < 0) e = n;
    let a = i, b = e;
    while (a < b && (v.charCodeAt(a) === 0x20 || v.charCodeAt(a) === 0x09)) a++;
    while (b > a && (v.charCodeAt(b - 1) === 0x20 || v.charCodeAt(b - 1) === 0x09)) b--;
    if (b > a) out.push(lower ? asciiLower(v.slice(a, b)) : v.slice(a, b));
    i = e + 1;
  }
  return out;
}

/** Comma-separated tokens of a Connection header. */
function connectionFlags(v: string, into: HeadInfo): void {
  for (const t of listTokens(v)) {
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
  /**
   * The protocols of an upgrade request (`Connection: upgrade` and an Upgrade header, RFC 9110
   * section 7.8), ASCII-lower-cased; null when the request asks for none.
   */
  upgrade: string[] | null;
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

interface FieldInfo { host: string | undefined; hostIndex: number; hosts: number; upgrade: string | undefined; expect: boolean }

/**
 * Header lines from s[i..], each ending CRLF (the head's final empty line already cut off).
 * Fills `h`; for a request also reports Host (value, index in `raw`, count), Upgrade and Expect.
 */
function parseFields(s: string, i: number, h: HeadInfo, request: boolean): FieldInfo {
  const len = s.length;
  const raw = h.raw;
  let host: string | undefined;
  let hostIndex = -1;
  let hosts = 0;
  let upgrade: string | undefined;
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
      case 4: if (request && eqLower(s, ns, 'host')) { host = value; hostIndex = raw.length - 1; hosts++; } break;
      case 6: if (request && eqLower(s, ns, 'expect') && asciiEqualsLower(value, '100-continue')) expect = true; break;
      case 7: if (request && eqLower(s, ns, 'upgrade')) upgrade = upgrade === undefined ? value : `${upgrade}, ${value}`; break;
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
    // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message MUST be treated as faulty
    // framing (a 1.0 hop before us may have ignored it: a classic smuggling vector).
    if (h.minor === 0) throw new HttpParseError(request ? 400 : 502, 'HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding in an HTTP/1.0 message');
    // Only a lone `chunked` is understood; anything else could be framed differently elsewhere.
    // Elements are split on ',' and cut of SP/HTAB only: "chunked\xa0" is an unknown coding.
    const codings = listTokens(te);
    const n = codings.length;
    if (n === 1 && codings[0] === 'chunked') {
      if (h.contentLength >= 0) throw bad('HPE_UNEXPECTED_CONTENT_LENGTH', 'both Content-Length and Transfer-Encoding');
      h.chunked = true;
    } else if (!request) {
      // A response coding other than a lone chunked (gzip: read until close; "gzip, chunked":
      // chunked over gzip) is refused as Envoy's codec does (unsupported transfer encoding ->
      // 502 UPE): relaying it re-framed would drop the coding the body is still in, and an
      // HTTP/1.0 client could not be sent Transfer-Encoding at all.
      throw new HttpParseError(502, 'HPE_INVALID_TRANSFER_ENCODING', 'unsupported Transfer-Encoding in a response');
    } else if (n === 0 || codings[n - 1] !== 'chunked') {
      throw bad('HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding must end in chunked');
    } else {
      throw new HttpParseError(501, 'HPE_INVALID_TRANSFER_ENCODING', 'unsupported Transfer-Encoding');
    }
  }
  return { host, hostIndex, hosts, upgrade, expect };
}

/**
 * The request-target (RFC 9112 section 3.2): origin-form for every method but OPTIONS `*`
 * (asterisk-form) and CONNECT (authority-form); absolute-form (`http://authority/path?q`) is
 * turned into origin-form with the authority returned for Host (section 3.2.2). Returns
 * [authority, origin-form] for an absolute-form target, else null; throws on anything else.
 */
function checkTarget(method: string, url: string): [string, string] | null {
  const c0 = url.charCodeAt(0);
  if (c0 === 0x2f) return null; // origin-form
  if (url === '*') {
    if (method === 'OPTIONS') return null;
    throw bad('HPE_INVALID_URL', 'asterisk-form request-target is only for OPTIONS');
  }
  if (method === 'CONNECT') {
    checkAuthority(url, true);
    return null;
  }
  // absolute-form: a scheme the proxy forwards (routing is by authority; the scheme is the hop's).
  let k: number;
  if (url.length > 7 && eqLower(url, 0, 'http://')) k = 7;
  else if (url.length > 8 && eqLower(url, 0, 'https://')) k = 8;
  else throw bad('HPE_INVALID_URL', 'request-target is not origin-form, absolute-form or asterisk-form');
  let e = k;
  while (e < url.length) {
    const c = url.charCodeAt(e);
    if (c === 0x2f || c === 0x3f) break;
    e++;
  }
  const authority = url.slice(k, e);
  checkAuthority(authority, false);
  // "/" when the path is empty (section 3.2.1), the query kept.
  return [authority, e === url.length ? '/' : url.charCodeAt(e) === 0x3f ? `/${url.slice(e)}` : url.slice(e)];
}

/**
 * host [":" port] (RFC 3986 section 3.2.2) with no userinfo (RFC 9110 section 4.2.4: a sender MUST
 * NOT send it in http(s) URIs). `code` names what is checked: the target's authority or Host.
 */
function checkAuthority(a: string, needPort: boolean, code = 'HPE_INVALID_URL'): void {
  const n = a.length;
  if (n === 0) throw bad(code, 'empty authority');
  // One pass: the host (a reg-name/IPv4, or an IP-literal in brackets), then ":" and digits.
  let i = 0;
  if (a.charCodeAt(0) === 0x5b) {
    while (++i < n && a.charCodeAt(i) !== 0x5d) {
      const c = a.charCodeAt(i);
      if (HEX[c] < 0 && c !== 0x3a && c !== 0x2e) throw bad(code, 'invalid IP-literal in an authority');
    }
    if (i === n || i === 1) throw bad(code, 'invalid IP-literal in an authority');
    i++;
  } else {
    for (; i < n; i++) {
      const c = a.charCodeAt(i);
      if (c === 0x3a) break;
      if (c === 0x40) throw bad(code, 'userinfo in an authority');
      if (AUTHORITY[c] !== 1 || c === 0x5b || c === 0x5d) throw bad(code, 'invalid character in an authority');
    }
    if (i === 0) throw bad(code, 'empty host in an authority');
  }
  if (i === n) { if (needPort) throw bad(code, 'CONNECT target needs host:port'); return; }
  if (a.charCodeAt(i) !== 0x3a) throw bad(code, 'invalid authority');
  for (i++; i < n; i++) {
    const d = a.charCodeAt(i);
    if (d === 0x40) throw bad(code, 'userinfo in an authority');
    if (d < 0x30 || d > 0x39) throw bad(code, 'invalid port');
  }
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
  const absolute = checkTarget(method, url);
  const minor = version(s, i + 1);
  if (minor < 0) throw bad('HPE_INVALID_VERSION', 'unsupported HTTP version');
  i += 9;
  if (s.charCodeAt(i) !== 0x0d || s.charCodeAt(i + 1) !== 0x0a) throw bad('HPE_INVALID_VERSION', 'invalid request line');
  const h: RequestHead = {
    method, url, minor, raw: [], contentLength: -1, chunked: false, connClose: false, connKeepAlive: false, connUpgrade: false,
    host: undefined, upgrade: null, expectContinue: false,
  };
  const f = parseFields(s, i + 2, h, true);
  if (f.hosts > 1) throw bad('HPE_UNEXPECTED_HOST', 'more than one Host header');
  if (f.hosts === 0 && minor === 1) throw bad('HPE_MISSING_HOST', 'HTTP/1.1 request without Host');
  // RFC 9112 section 3.2: a Host with an invalid value is a 400 (the proxy routes by it). An empty
  // Host is valid syntax (a target without authority).
  if (f.host !== undefined && f.host.length > 0) checkAuthority(f.host, false, 'HPE_INVALID_HOST');
  if (absolute !== null) {
    // RFC 9112 section 3.2.2: the target's authority is the Host; a received Host is replaced
    // (never forwarded alongside), and the request goes on in origin-form.
    const authority = absolute[0];
    h.url = absolute[1];
    f.host = authority;
    if (f.hostIndex >= 0) h.raw[f.hostIndex] = authority;
    else h.raw.push('Host', authority);
  }
  h.host = f.host;
  if (f.upgrade !== undefined && h.connUpgrade) h.upgrade = listTokens(f.upgrade);
  h.expectContinue = f.expect;
  return h;
}

/** Parse a response head (same rules; an upstream that breaks them is a protocol error). */
export function parseResponseHead(head: string): ResponseHead {
  // Empty lines before the status line are ignored, as before a request line (RFC 9112 section 2.2).
  let s = head;
  if (s.charCodeAt(0) === 0x0d) {
    let k = 0;
    while (s.charCodeAt(k) === 0x0d && s.charCodeAt(k + 1) === 0x0a) k += 2;
    s = s.slice(k);
  }
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
const SIZE = 0, SIZE_WS = 1, EXT_NAME0 = 2, EXT_NAME = 3, EXT_AFTER_NAME = 4, EXT_VAL0 = 5, EXT_VAL = 6, EXT_QVAL = 7, EXT_QPAIR = 8,
  EXT_AFTER_VAL = 9, SIZE_LF = 10, DATA = 11, DATA_CR = 12, DATA_LF = 13, TRAILER = 14, TRAILER_LF = 15, LAST_LF = 16, DONE = 17;
const MAX_CHUNK_LINE = 4096;
/** Largest chunk size accepted (2^48 - 1, far beyond any body a proxy streams; keeps the arithmetic exact). */
const MAX_CHUNK_SIZE = 0xffffffffffff;
/** Trailer section bytes accepted (as Envoy's head limit would count them): larger is a 400/502. */
export const MAX_TRAILER_BYTES = 16 * 1024;
/** Trailer fields never taken from a message (RFC 9110 section 6.5.1: framing, routing, control). */
const PROHIBITED_TRAILERS = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade',
  'proxy-connection', 'expect', 'content-type', 'content-encoding', 'content-range', 'authorization', 'set-cookie', 'cookie']);

/**
 * Incremental chunked decoder (RFC 9112 section 7.1). `feed` calls `onData` with slices of
 * `buf` (no copies) and returns the index where the message ended (the rest belongs to the next
 * message), or -1 when it needs more bytes. Strict as llhttp: a chunk-size is HEXDIG+ (any
 * number of leading zeros; the value is bounded), BWS is allowed only before ';' (so "a \r\n"
 * is refused), every extension has a token name ("2;\r\n" is refused) and an optional token or
 * quoted-string value. Trailer fields are validated with the head's field rules, bounded, and
 * kept in `trailers` (flat [name, value, ...], prohibited fields dropped). Throws
 * HttpParseError on bad framing.
 */
export class ChunkedDecoder {
  private state = SIZE;
  private size = 0;
  private digits = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  private lineEmpty = true;
  /** The trailer section as latin1 text while it arrives (only when there is one). */
  private trailerText: string | null = null;
  private trailerStart = 0;
  /** Trailer fields of the finished message, or null when it had none. */
  trailers: string[] | null = null;

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
            this.size = this.size * 16 + v;
            if (this.size > MAX_CHUNK_SIZE) throw bad('HPE_INVALID_CHUNK_SIZE', 'chunk size too large');
            this.digits++;
            i++;
            continue;
          }
          if (this.digits === 0) throw bad('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
          i++;
          if (c === 0x0d) { this.state = SIZE_LF; continue; }
          if (c === 0x3b) { this.state = EXT_NAME0; this.lineBytes = 0; continue; }
          if (c === 0x20 || c === 0x09) { this.state = SIZE_WS; this.lineBytes = 0; continue; }
          throw bad('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
        }
        case SIZE_WS: {
          // BWS before a chunk extension; whitespace then CRLF is not a chunk line.
          const c = buf[i++];
          if (++this.lineBytes > MAX_CHUNK_LINE) throw bad('HPE_INVALID_CHUNK_SIZE', 'chunk line too long');
          if (c === 0x20 || c === 0x09) continue;
          if (c === 0x3b) { this.state = EXT_NAME0; continue; }
          throw bad('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
        }
        case EXT_NAME0: case EXT_NAME: case EXT_AFTER_NAME: case EXT_VAL0: case EXT_VAL: case EXT_QVAL: case EXT_QPAIR: case EXT_AFTER_VAL: {
          const c = buf[i++];
          if (++this.lineBytes > MAX_CHUNK_LINE) throw bad('HPE_INVALID_CHUNK_EXTENSIONS', 'chunk extensions too long');
          this.state = chunkExt(this.state, c);
          continue;
        }
        case SIZE_LF: {
          if (buf[i++] !== 0x0a) throw bad('HPE_LF_EXPECTED', 'chunk size line without LF');
          this.digits = 0;
          if (this.size === 0) { this.state = TRAILER; this.lineEmpty = true; this.trailerStart = i; continue; }
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
          // Trailer fields (or the final empty line): collected, then parsed as header fields.
          const c = buf[i++];
          if (c === 0x0d) { this.state = this.lineEmpty ? LAST_LF : TRAILER_LF; continue; }
          if (VCHAR[c] !== 1 || ++this.trailerBytes > MAX_TRAILER_BYTES) {
            throw new HttpParseError(this.trailerBytes > MAX_TRAILER_BYTES ? 431 : 400, 'HPE_INVALID_HEADER_TOKEN', 'invalid trailer');
          }
          this.lineEmpty = false;
          continue;
        }
        case TRAILER_LF:
          if (buf[i++] !== 0x0a) throw bad('HPE_LF_EXPECTED', 'trailer without LF');
          this.state = TRAILER;
          this.lineEmpty = true;
          continue;
        case LAST_LF: {
          if (buf[i++] !== 0x0a) throw bad('HPE_LF_EXPECTED', 'last chunk without LF');
          this.state = DONE;
          if (this.trailerBytes > 0) {
            // The section's text: what was kept from earlier reads plus this buffer's part.
            const tail = buf.toString('latin1', this.trailerStart, i);
            const all = this.trailerText === null ? tail : this.trailerText + tail;
            this.trailers = parseTrailerFields(all.slice(0, all.length - 2)); // without the final empty line
            this.trailerText = null;
          }
          return i;
        }
        default:
          return i;
      }
    }
    // The buffer ends inside the trailer section: keep its text for the end of the section.
    if ((this.state === TRAILER || this.state === TRAILER_LF || this.state === LAST_LF) && this.trailerBytes > 0) {
      const part = buf.toString('latin1', this.trailerStart, end);
      this.trailerText = this.trailerText === null ? part : this.trailerText + part;
    }
    this.trailerStart = 0;
    return -1;
  }
}

/** One byte of a chunk extension (RFC 9112 section 7.1.1): the next state, or throws. */
function chunkExt(state: number, c: number): number {
  switch (state) {
    case EXT_NAME0:
      if (c === 0x20 || c === 0x09) return EXT_NAME0;
      if (TCHAR[c] === 1) return EXT_NAME;
      break;
    case EXT_NAME:
      if (TCHAR[c] === 1) return EXT_NAME;
      if (c === 0x20 || c === 0x09) return EXT_AFTER_NAME;
      if (c === 0x3d) return EXT_VAL0;
      if (c === 0x3b) return EXT_NAME0;
      if (c === 0x0d) return SIZE_LF;
      break;
    case EXT_AFTER_NAME:
      if (c === 0x20 || c === 0x09) return EXT_AFTER_NAME;
      if (c === 0x3d) return EXT_VAL0;
      if (c === 0x3b) return EXT_NAME0;
      break;
    case EXT_VAL0:
      if (c === 0x20 || c === 0x09) return EXT_VAL0;
      if (c === 0x22) return EXT_QVAL;
      if (TCHAR[c] === 1) return EXT_VAL;
      break;
    case EXT_VAL:
      if (TCHAR[c] === 1) return EXT_VAL;
      if (c === 0x20 || c === 0x09) return EXT_AFTER_VAL;
      if (c === 0x3b) return EXT_NAME0;
      if (c === 0x0d) return SIZE_LF;
      break;
    case EXT_QVAL:
      if (c === 0x22) return EXT_AFTER_VAL;
      if (c === 0x5c) return EXT_QPAIR;
      if (c === 0x09 || (c >= 0x20 && c !== 0x7f)) return EXT_QVAL;
      break;
    case EXT_QPAIR:
      if (c === 0x09 || (c >= 0x20 && c !== 0x7f)) return EXT_QVAL;
      break;
    case EXT_AFTER_VAL:
      if (c === 0x20 || c === 0x09) return EXT_AFTER_VAL;
      if (c === 0x3b) return EXT_NAME0;
      if (c === 0x0d) return SIZE_LF;
      break;
  }
  throw bad('HPE_INVALID_CHUNK_EXTENSIONS', 'invalid chunk extension');
}

/** Trailer field lines (each ending CRLF): the head's field rules, prohibited fields dropped. */
function parseTrailerFields(text: string): string[] | null {
  const h: HeadInfo = { minor: 1, raw: [], contentLength: -1, chunked: false, connClose: false, connKeepAlive: false, connUpgrade: false };
  parseFields(text, 0, h, false);
  const raw = h.raw;
  const out: string[] = [];
  for (let k = 0; k < raw.length; k += 2) {
    const n = raw[k];
    if (!PROHIBITED_TRAILERS.has(asciiLower(n))) out.push(n, raw[k + 1]);
  }
  return out.length > 0 ? out : null;
}

/** Trailer fields framed for the wire: the last chunk, the fields, the final CRLF. */
export function lastChunk(trailers: string[] | null): string {
  if (trailers === null) return '0\r\n\r\n';
  let t = '0\r\n';
  for (let k = 0; k < trailers.length; k += 2) t += `${trailers[k]}: ${trailers[k + 1]}\r\n`;
  return `${t}\r\n`;
}

/** The chunked framing of one body chunk's size line. */
export function chunkHeader(n: number): string { return `${n.toString(16)}\r\n`; }
