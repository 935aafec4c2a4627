// A small, independent reader of what the proxy writes on its two sides (not the engine's
// parser: this one checks the engine). Requests at the upstream and responses at the client are
// the proxy's own framing (Content-Length or chunked, a close-delimited response body), so the
// reader is strict: every head line must be well-formed, anything else is reported as malformed.

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field line as the proxy may send it: token ":" SP value, the value without CTLs (HTAB allowed) and without edge whitespace. */
const FIELD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?((?:[^\x00-\x08\x0a-\x1f\x7f](?:[^\x00-\x08\x0a-\x1f\x7f]*[^\x00-\x08\x0a-\x20\x7f])?)?)$/;

export interface WireMessage {
  /** Request line or status line. */
  start: string;
  method?: string;
  target?: string;
  status?: number;
  raw: string[];
  body: Buffer;
  complete: boolean;
  trailers: string[];
}

export interface WireRead { messages: WireMessage[]; malformed: string | null }

function header(raw: string[], lower: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === lower) return raw[i + 1];
  return undefined;
}

/**
 * Read every message in `buf`. `requests`: request lines (else status lines). `methods` gives the
 * request method per response (HEAD has no body); `closed`: the peer closed (a body without
 * framing ends there). The last message may be incomplete.
 */
export function readWire(buf: Buffer, requests: boolean, opts: { methods?: string[]; closed?: boolean } = {}): WireRead {
  const text = buf.toString('latin1');
  const out: WireRead = { messages: [], malformed: null };
  let pos = 0;
  let finals = 0;
  while (pos < text.length) {
    const he = text.indexOf('\r\n\r\n', pos);
    if (he < 0) { out.malformed = out.malformed ?? (text.length - pos > 0 && opts.closed ? 'truncated head' : null); break; }
    const lines = text.slice(pos, he).split('\r\n');
    const start = lines[0];
    const m: WireMessage = { start, raw: [], body: Buffer.alloc(0), complete: false, trailers: [] };
    if (requests) {
      const r = /^(\S+) (\S+) HTTP\/1\.1$/.exec(start);
      if (!r || !TOKEN.test(r[1]) || /[^\x21-\x7e]/.test(r[2])) { out.malformed = `request line ${JSON.stringify(start)}`; return out; }
      m.method = r[1];
      m.target = r[2];
    } else {
      const r = /^HTTP\/1\.1 (\d{3}) [^\x00-\x08\x0a-\x1f\x7f]*$/.exec(start);
      if (!r) { out.malformed = `status line ${JSON.stringify(start)}`; return out; }
      m.status = Number(r[1]);
    }
    for (const l of lines.slice(1)) {
      const f = FIELD.exec(l);
      if (!f) { out.malformed = `field line ${JSON.stringify(l)}`; return out; }
      m.raw.push(f[1], f[2]);
    }
    pos = he + 4;
    const interim = m.status !== undefined && m.status < 200;
    const method = requests ? m.method : opts.methods?.[finals];
    const te = header(m.raw, 'transfer-encoding');
    const cl = header(m.raw, 'content-length');
    if (te !== undefined && cl !== undefined) { out.malformed = 'both Content-Length and Transfer-Encoding'; return out; }
    out.messages.push(m);
    if (interim || method === 'HEAD' || m.status === 204 || m.status === 304) { m.complete = true; if (!interim) finals++; continue; }
    if (!interim) finals++;
    if (te !== undefined) {
      if (te.toLowerCase() !== 'chunked') { out.malformed = `transfer-encoding ${te}`; return out; }
      const parts: Buffer[] = [];
      for (;;) {
        const eol = text.indexOf('\r\n', pos);
        if (eol < 0) { m.body = Buffer.concat(parts); return out; }
        const size = text.slice(pos, eol);
        if (!/^[0-9a-f]+$/.test(size)) { out.malformed = `chunk size ${JSON.stringify(size)}`; return out; }
        const n = parseInt(size, 16);
        pos = eol + 2;
        if (n === 0) {
          for (;;) {
            const e = text.indexOf('\r\n', pos);
            if (e < 0) { m.body = Buffer.concat(parts); return out; }
            const line = text.slice(pos, e);
            pos = e + 2;
            if (line === '') break;
            const f = FIELD.exec(line);
            if (!f) { out.malformed = `trailer line ${JSON.stringify(line)}`; return out; }
            m.trailers.push(f[1], f[2]);
          }
          m.complete = true;
          break;
        }
        if (text.length < pos + n + 2) { parts.push(buf.subarray(pos, Math.min(text.length, pos + n))); m.body = Buffer.concat(parts); return out; }
        parts.push(buf.subarray(pos, pos + n));
        if (text.slice(pos + n, pos + n + 2) !== '\r\n') { out.malformed = 'chunk data not followed by CRLF'; return out; }
        pos += n + 2;
      }
      m.body = Buffer.concat(parts);
    } else if (cl !== undefined || requests) {
      const n = cl === undefined ? 0 : Number(cl);
      if (cl !== undefined && !/^\d+$/.test(cl)) { out.malformed = `content-length ${cl}`; return out; }
      m.body = buf.subarray(pos, Math.min(text.length, pos + n));
      m.complete = text.length >= pos + n;
      pos = Math.min(text.length, pos + n);
    } else {
      m.body = buf.subarray(pos);
      m.complete = opts.closed === true;
      pos = text.length;
    }
  }
  return out;
}

export { header };
