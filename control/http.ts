// Small HTTP helpers shared by the discovery and ops servers: bounded JSON bodies, JSON replies,
// bearer-token checks. Bad input always becomes a 4xx with a message, never a thrown error.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const MAX_BODY_BYTES = 1 << 20;

export class HttpError extends Error {
  status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) { res.end(); return; }
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-cache' });
  res.end(text);
}

export function sendError(res: ServerResponse, e: unknown): void {
  const status = e instanceof HttpError ? e.status : 500;
  const errors = (e as { errors?: unknown }).errors;
  sendJson(res, status, { error: (e as Error).message, ...(Array.isArray(errors) ? { errors } : {}) });
}

/** Read a JSON object body (at most MAX_BODY_BYTES); an empty body reads as {}. */
export function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Over the limit: keep reading (and dropping) so the client gets the 413, up to a hard cap.
      if (size > MAX_BODY_BYTES * 16) req.destroy();
      else if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) { reject(new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`)); return; }
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') { resolve({}); return; }
      let v: unknown;
      try { v = JSON.parse(text); } catch (e) { reject(new HttpError(400, `invalid JSON body: ${(e as Error).message}`)); return; }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) { reject(new HttpError(400, 'the JSON body must be an object')); return; }
      resolve(v as Record<string, unknown>);
    });
  });
}

/**
 * A bearer-token check. Both sides are hashed first so timingSafeEqual compares equal lengths and
 * the comparison time does not depend on how much of the token matched.
 */
export function tokenChecker(token: string | undefined): (req: IncomingMessage) => boolean {
  if (!token) return () => true;
  const want = createHash('sha256').update(token).digest();
  return (req) => {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const got = createHash('sha256').update(m ? m[1].trim() : '').digest();
    return m !== null && timingSafeEqual(want, got);
  };
}

export function unauthorized(res: ServerResponse): void {
  res.setHeader('www-authenticate', 'Bearer realm="meshlet"');
  sendJson(res, 401, { error: 'missing or invalid bearer token (Authorization: Bearer <token>)' });
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A string field of a JSON body, or a 400 naming the field. */
export function field(body: Record<string, unknown>, name: string, opts: { optional?: boolean } = {}): string {
  const v = body[name];
  if (v === undefined && opts.optional) return '';
  if (typeof v !== 'string' || v === '') throw new HttpError(400, `field "${name}" must be a non-empty string`);
  return v;
}

export function labelsField(v: unknown, name: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, `field "${name}" must be an object of string values`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string') throw new HttpError(400, `field "${name}.${k}" must be a string`);
    out[k] = x;
  }
  return out;
}

export function readToken(file: string): string {
  const token = readFileSync(file, 'utf8').trim();
  if (!token) throw new Error(`${file}: the token file is empty`);
  return token;
}
