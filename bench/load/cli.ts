// `meshlet load`: fortio-compatible flags and output (fortio habits and scripts carry over).
import { writeFileSync } from 'node:fs';
import { FlagError, helpText, parseFlags, type FlagSpec } from '../../cli/flags.ts';
import { parseDuration } from '../../proxy/config/duration.ts';
import { WarmupError, runLoad, toFortioJson } from './runner.ts';
import { banner, report } from './report.ts';

const LEVELS = ['Debug', 'Verbose', 'Info', 'Warning', 'Error', 'Critical'];

const SPECS: FlagSpec[] = [
  { name: 'c', type: 'number', default: 4, help: 'number of connections/goroutines' },
  { name: 'qps', type: 'number', default: 8, help: 'target rate across all connections; 0 = as fast as possible (closed loop)' },
  { name: 'n', type: 'number', default: 0, help: 'exact number of calls (split across connections); 0 = use -t' },
  { name: 't', type: 'string', default: '5s', help: "duration, e.g. '5s', '500ms', '1m' (plain number = seconds)" },
  { name: 'H', type: 'list', default: [], help: "extra header 'Name: value' (repeatable)" },
  { name: 'payload', type: 'string', help: 'POST this body' },
  { name: 'payload-size', type: 'number', help: 'POST a generated body of this many bytes' },
  { name: 'content-type', type: 'string', help: 'content type of the payload' },
  { name: 'timeout', type: 'string', default: '3s', help: 'per request timeout' },
  { name: 'p', type: 'string', default: '50,75,90,99,99.9', help: 'percentiles to report' },
  { name: 'json', type: 'string', help: "write the fortio-shaped JSON result to this file ('-' = stdout)" },
  { name: 'allow-initial-errors', type: 'boolean', default: false, help: 'with -t: do not abort when a connection\'s warmup call is not 2xx' },
  { name: 'loglevel', type: 'string', default: 'Info', help: 'Debug|Verbose|Info|Warning|Error|Critical (Verbose shows the first hit; Warning and above hide the banner)' },
  { name: 'quiet', type: 'boolean', default: false, help: 'print only the result lines' },
  { name: 'labels', type: 'string', default: '', help: 'labels stored in the JSON result' },
];

function duration(s: string, flag: string): number {
  const ms = /^\d+(\.\d+)?$/.test(s) ? Number(s) * 1000 : parseDuration(s);
  if (ms === undefined) throw new FlagError(`-${flag}: invalid duration '${s}'`);
  return ms;
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet load: ${(e as Error).message}`); return 2; }
  if (p.help) {
    console.log(helpText('meshlet load [flags] <url>', 'Load-test a URL like fortio: the report goes to stderr. Exit 0 whatever the status codes (like fortio: read the Code lines or -json), 2 on bad flags, 1 when the run could not be made (e.g. a failed warmup without -allow-initial-errors).', SPECS));
    return 0;
  }
  const f = p.flags;
  try {
    if (p.positional.length !== 1) throw new FlagError('exactly one URL is required');
    if (!/^http:\/\/[^/]/.test(p.positional[0]) || !URL.canParse(p.positional[0])) throw new FlagError(`'${p.positional[0]}' is not an http:// URL`);
    const c = f.c as number;
    if (!Number.isInteger(c) || c < 1) throw new FlagError('-c must be a positive integer');
    const qps = f.qps as number;
    if (qps < 0) throw new FlagError('-qps must be >= 0');
    const n = f.n as number;
    if (!Number.isInteger(n) || n < 0) throw new FlagError('-n must be a non-negative integer');
    const headers: Array<[string, string]> = (f.H as string[]).map((h) => {
      const i = h.indexOf(':');
      if (i <= 0) throw new FlagError(`-H '${h}': expected 'Name: value'`);
      return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
    });
    const level = LEVELS.findIndex((l) => l.toLowerCase() === String(f.loglevel).toLowerCase());
    if (level < 0) throw new FlagError(`-loglevel '${f.loglevel}': expected one of ${LEVELS.join('|')}`);
    if (f['payload-size'] !== undefined && !(Number.isInteger(f['payload-size']) && (f['payload-size'] as number) >= 0)) throw new FlagError('-payload-size must be a non-negative integer');
    const percentiles = String(f.p).split(',').map((x) => Number(x.trim()));
    if (percentiles.some((x) => !(x > 0 && x <= 100))) throw new FlagError(`-p '${f.p}': percentiles are numbers in (0, 100]`);
    let payload: Buffer | null = null;
    if (f.payload !== undefined) payload = Buffer.from(f.payload as string);
    else if (f['payload-size'] !== undefined) payload = Buffer.alloc(f['payload-size'] as number, 'x');
    const durationMs = n > 0 ? 0 : duration(f.t as string, 't');
    // fortio's -t 0 runs until interrupted; a bench tool must stay bounded, so it needs a duration.
    if (n === 0 && !(durationMs > 0)) throw new FlagError('-t must be a positive duration (or give -n)');
    const timeoutMs = duration(f.timeout as string, 'timeout');
    if (!(timeoutMs > 0)) throw new FlagError('-timeout must be a positive duration');
    const quiet = f.quiet || level >= LEVELS.indexOf('Warning');
    const url = p.positional[0];
    if (!quiet) process.stderr.write(banner(url, qps, c, n, durationMs));
    const r = await runLoad({
      url, connections: Math.min(c, n > 0 ? n : c), qps, calls: n, durationMs: n > 0 ? 0 : durationMs, headers, payload,
      contentType: f['content-type'] as string | undefined, timeoutMs,
      allowInitialErrors: f['allow-initial-errors'] as boolean,
    });
    if (level <= LEVELS.indexOf('Verbose') && r.firstHit) process.stderr.write(`first hit of url ${url}: status ${String(r.firstHit.status).padStart(3, '0')}, total ${r.firstHit.bytes}\n`);
    const j = toFortioJson(r, percentiles, f.labels as string);
    const behind = qps > 0 && r.behind > 0
      ? `Warning: could not keep up with the requested ${qps} qps (achieved ${j.ActualQPS.toFixed(1)} qps): ${r.behind} calls started late (up to ${r.maxLagMs.toFixed(1)} ms); latency is measured from the intended start`
      : null;
    process.stderr.write(report(j, behind, r.warmup));
    if (f.json !== undefined) {
      const text = `${JSON.stringify(j, null, 2)}\n`;
      if (f.json === '-') process.stdout.write(text); else writeFileSync(f.json as string, text);
    }
    return 0;
  } catch (e) {
    if (e instanceof FlagError) { console.error(`meshlet load: ${e.message}`); return 2; }
    if (e instanceof WarmupError) { console.error(`Aborting because of ${e.message} (use -allow-initial-errors to run anyway)`); return 1; }
    console.error(`meshlet load: ${(e as Error).message}`);
    return 1;
  }
}
