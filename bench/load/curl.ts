// `meshlet curl <url>`: one request, fortio's curl mode: status line and headers on stderr, body
// on stdout, exit 1 unless the status is exactly 200.
import { request } from 'undici';
import { FlagError, helpText, parseFlags, type FlagSpec } from '../../cli/flags.ts';

const SPECS: FlagSpec[] = [
  { name: 'H', type: 'list', default: [], help: "extra header 'Name: value' (repeatable)" },
  { name: 'payload', type: 'string', help: 'POST this body' },
  { name: 'X', type: 'string', help: 'method (default GET, or POST with -payload)' },
  { name: 'timeout', type: 'number', default: 10, help: 'seconds' },
];

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet curl: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet curl [flags] <url>', 'Send one request; headers to stderr, body to stdout; exit 1 unless 200.', SPECS)); return 0; }
  try {
    if (p.positional.length !== 1) throw new FlagError('exactly one URL is required');
    const headers: Record<string, string> = {};
    for (const h of p.flags.H as string[]) {
      const i = h.indexOf(':');
      if (i <= 0) throw new FlagError(`-H '${h}': expected 'Name: value'`);
      headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
    }
    const body = p.flags.payload as string | undefined;
    const method = (p.flags.X as string | undefined) ?? (body !== undefined ? 'POST' : 'GET');
    const ms = (p.flags.timeout as number) * 1000;
    const r = await request(p.positional[0], { method: method as 'GET', headers, body, headersTimeout: ms, bodyTimeout: ms });
    const lines = [`HTTP/1.1 ${r.statusCode}`];
    for (const [k, v] of Object.entries(r.headers)) for (const x of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${x}`);
    process.stderr.write(`${lines.join('\n')}\n\n`);
    const buf = Buffer.from(await r.body.arrayBuffer());
    process.stdout.write(buf);
    return r.statusCode === 200 ? 0 : 1;
  } catch (e) {
    console.error(`meshlet curl: ${(e as Error).message}`);
    return e instanceof FlagError ? 2 : 1;
  }
}
