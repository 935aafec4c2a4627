// `meshlet curl <url>`: one request in fortio's curl mode (≥ 1.22): status line and headers on
// stderr, body on stdout, exit 1 unless the status is exactly 200 (so 201/204 fail too, as in
// fortio). Headers are printed as the server sent them (raw case), hence a Client.dispatch.
import { Client } from 'undici';
import { FlagError, helpText, parseFlags, type FlagSpec } from '../../cli/flags.ts';
import { parseDuration } from '../../proxy/config/duration.ts';

const SPECS: FlagSpec[] = [
  { name: 'H', type: 'list', default: [], help: "extra header 'Name: value' (repeatable)" },
  { name: 'payload', type: 'string', help: 'send this body (POST unless -X says otherwise)' },
  { name: 'content-type', type: 'string', help: 'content type of the payload' },
  { name: 'X', type: 'string', help: 'method (default GET, or POST with -payload)' },
  { name: 'timeout', type: 'string', default: '3s', help: "request timeout, e.g. '3s', '500ms' (plain number = seconds)" },
];

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet curl: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet curl [flags] <url>', 'Send one request; status and headers to stderr, body to stdout; exit 1 unless the status is 200.', SPECS)); return 0; }
  let url: URL;
  const headers: string[] = [];
  let ms: number;
  try {
    if (p.positional.length !== 1) throw new FlagError('exactly one URL is required');
    url = new URL(p.positional[0]);
    if (url.protocol !== 'http:') throw new FlagError(`only http:// URLs are supported, got ${p.positional[0]}`);
    for (const h of p.flags.H as string[]) {
      const i = h.indexOf(':');
      if (i <= 0) throw new FlagError(`-H '${h}': expected 'Name: value'`);
      headers.push(h.slice(0, i).trim(), h.slice(i + 1).trim());
    }
    const t = String(p.flags.timeout);
    const parsed = /^\d+(\.\d+)?$/.test(t) ? Number(t) * 1000 : parseDuration(t);
    if (parsed === undefined || !(parsed > 0)) throw new FlagError(`-timeout: invalid duration '${t}'`);
    ms = parsed;
  } catch (e) {
    console.error(`meshlet curl: ${(e as Error).message}`);
    return 2;
  }
  const body = p.flags.payload as string | undefined;
  if (body !== undefined && p.flags['content-type'] !== undefined) headers.push('content-type', p.flags['content-type'] as string);
  const method = (p.flags.X as string | undefined) ?? (body !== undefined ? 'POST' : 'GET');
  const client = new Client(url.origin, { connect: { timeout: ms }, headersTimeout: ms, bodyTimeout: ms });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      let code = 0;
      client.dispatch({ origin: url.origin, path: url.pathname + url.search, method, headers, body: body ?? null }, {
        onRequestStart() {},
        onResponseStart(c, s, parsed, statusMessage) {
          if (s < 200) return; // 1xx: wait for the final response
          code = s;
          const lines = [`HTTP/1.1 ${s} ${statusMessage ?? ''}`.trimEnd()];
          const raw = c.rawHeaders;
          if (Array.isArray(raw)) for (let i = 0; i + 1 < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`);
          else for (const [k, v] of Object.entries(parsed)) for (const x of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${x}`);
          process.stderr.write(`${lines.join('\n')}\n\n`);
        },
        onResponseData(_c, chunk) { process.stdout.write(chunk); },
        onResponseEnd() { resolve(code); },
        onResponseError(_c, err) { reject(err); },
      });
    });
    return status === 200 ? 0 : 1;
  } catch (e) {
    console.error(`meshlet curl: ${(e as Error).message}`);
    return 1;
  } finally {
    await client.close().catch(() => client.destroy());
  }
}
