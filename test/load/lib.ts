// Shared by the load tests: run `bin/meshlet.js` as a child process (bounded in time) and mask a
// report into its line shapes for the golden comparison.
import { spawn } from 'node:child_process';

export const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;

export interface Run { code: number | null; out: string; err: string; ms: number }

export function run(args: string[], o: { stdin?: string; killAfterMs?: number; sigintAfter?: (err: string) => boolean; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: o.cwd });
    let out = '', err = '';
    let sent = false;
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => {
      err += d;
      if (o.sigintAfter && !sent && o.sigintAfter(err)) { sent = true; c.kill('SIGINT'); }
    });
    c.stdin.end(o.stdin ?? '');
    const t = setTimeout(() => c.kill('SIGKILL'), o.killAfterMs ?? 30_000);
    c.on('exit', (code) => { clearTimeout(t); resolve({ code, out, err, ms: performance.now() - t0 }); });
  });
}

/** Report lines without fortio's JSON log lines. */
export const reportLines = (err: string) => err.split('\n').filter((l) => l !== '' && !l.startsWith('{'));

/** The golden file's masks: numbers → '#', Go durations → '<dur>', blanks collapsed, bucket runs → '<buckets>'. */
export function mask(lines: string[]): string[] {
  const out: string[] = [];
  for (const l of lines) {
    if (/^(>=|>) /.test(l)) { if (out.at(-1) !== '<buckets>') out.push('<buckets>'); continue; }
    out.push(l
      .replace(/\b(\d+h)?(\d+m)?\d+(\.\d+)?(ns|µs|ms|s)\b/g, '<dur>')
      .replace(/(?<=^|[\s(=])-(?=\d)/g, '') // a sign, not the '-' of 'meshlet-0.1.0'
      .replace(/\d+(\.\d+){2,}/g, (m) => m.split('.').map(() => '#').join('.')) // versions, IPs
      .replace(/\d+(\.\d+)?(e[+-]\d+)?/g, '#')
      .replace(/\s+/g, ' ').trim());
  }
  return out;
}

import { createServer, type Server, type Socket } from 'node:net';

export interface Seen { line: string; headers: Record<string, string>; body: Buffer; conn: number; halfClosed: boolean }
export interface RawServer { port: number; seen: Seen[]; conns: number; close(): Promise<void> }

/**
 * A loopback HTTP/1.x server on raw sockets, so the tests see what went on the wire: the request
 * line (HTTP/1.0 or 1.1), header names as sent, the body, which connection carried it, and
 * whether the client half-closed before the answer. `reply` gives status, extra headers, body.
 */
export async function rawServer(reply: (s: Seen, n: number) => { status?: number; headers?: string[]; body?: string; close?: boolean } = () => ({})): Promise<RawServer> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  let conns = 0;
  const srv: Server = createServer({ allowHalfOpen: true }, (sock) => {
    const id = conns++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    let ended = false;
    const pump = () => {
      for (;;) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.toString('latin1', 0, i).split('\r\n');
        const headers: Record<string, string> = {};
        for (const h of head.slice(1)) { const k = h.indexOf(':'); headers[h.slice(0, k)] = h.slice(k + 1).trim(); }
        const cl = Number(Object.entries(headers).find(([k]) => k.toLowerCase() === 'content-length')?.[1] ?? 0);
        if (buf.length < i + 4 + cl) return;
        const s: Seen = { line: head[0], headers, body: buf.subarray(i + 4, i + 4 + cl), conn: id, halfClosed: false };
        buf = buf.subarray(i + 4 + cl);
        const answer = () => {
          s.halfClosed = ended;
          seen.push(s);
          const r = reply(s, seen.length);
          const body = r.body ?? 'ok';
          const close = r.close || /close/i.test(Object.entries(headers).find(([k]) => k.toLowerCase() === 'connection')?.[1] ?? '') || s.line.endsWith('HTTP/1.0') && !/keep-alive/i.test(headers.Connection ?? '');
          sock.write(`HTTP/1.1 ${r.status ?? 200} X\r\n${(r.headers ?? []).map((h) => `${h}\r\n`).join('')}Content-Length: ${Buffer.byteLength(body)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`);
          if (close) sock.end();
        };
        // A client that says Connection: close may half-close after its request: wait (bounded,
        // 500 ms) for its FIN before answering so the test can see it; others are answered now.
        const closing = /close/i.test(Object.entries(headers).find(([k]) => k.toLowerCase() === 'connection')?.[1] ?? '');
        const t0 = Date.now();
        const wait = () => { if (!closing || ended || Date.now() - t0 > 500) answer(); else setTimeout(wait, 5); };
        wait();
      }
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); });
    sock.on('end', () => { ended = true; });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as { port: number }).port, seen, get conns() { return conns; },
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); srv.close(() => r()); }),
  };
}
