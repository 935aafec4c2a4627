// `meshlet load`: a drop-in for `fortio load` on HTTP/1.x: fortio's flags (fortio-flags.ts,
// parsed with Go's flag rules in goflag.ts), its text report at each log level (report.ts), its
// JSON (json.ts) and its exit codes: 0 after any run whatever the codes, 1 for a usage error
// (no URL, flags after the URL, bad -p) or an "Aborting because of ..." (warmup, TLS files),
// 2 for an unknown flag or a bad flag value (Go's flag.ExitOnError).
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { GoFlagError, GoFlagHelp, goUsage, parseGoFlags, type GoParsed } from './goflag.ts';
import { FORTIO_FLAGS, PROTOCOLS_MESSAGE, flagNote } from './fortio-flags.ts';
import { WarmupError, runLoad, type LoadOptions } from './runner.ts';
import { LEVELS, ERROR, banner, report, startLine } from './report.ts';
import { toFortioJson } from './json.ts';
import { AccessLogger, type AccessFormat } from './access-log.ts';
import { makeLogger, type Logger } from './log.ts';
import { startProfile } from './profile.ts';

/** A usage error: fortio prints it and exits 1. */
export class UsageError extends Error {}

export const VERSION = (() => {
  try { return `meshlet-${JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version}`; } catch { return 'meshlet'; }
})();

type V = GoParsed['values'];
const str = (v: V, k: string) => v.get(k) as string;
const num = (v: V, k: string) => v.get(k) as number;
const bool = (v: V, k: string) => v.get(k) as boolean;

/** Parse with Go's rules; unknown flags and HTTP/2-gRPC flags exit 2 (returned as a code). */
export function parseOrExit(argv: string[], names: Set<string> | null, cmd: string): GoParsed | number {
  const flags = names ? FORTIO_FLAGS.filter((f) => names.has(f.name)) : FORTIO_FLAGS;
  let p: GoParsed;
  try {
    p = parseGoFlags(argv, flags);
  } catch (e) {
    if (e instanceof GoFlagHelp) {
      process.stdout.write(`Usage: meshlet ${cmd} [flags] url\n\nfortio's flags and defaults (Go flag syntax: -flag, --flag, -flag=value, -flag value; bools only as -flag or -flag=false; flags before the URL).\n\n${goUsage(flags, flagNote)}`);
      return 0;
    }
    process.stderr.write(`${(e as GoFlagError).message}\nUsage of meshlet ${cmd}: see meshlet ${cmd} -h\n`);
    return 2;
  }
  for (const f of flags) {
    if (f.status === 'protocols' && p.set.has(f.name)) {
      process.stderr.write(`meshlet ${cmd}: -${f.name}: ${PROTOCOLS_MESSAGE}\n`);
      return 2;
    }
  }
  return p;
}

/** fortio's -loglevel / -quiet. */
export function levelOf(v: V): number {
  if (bool(v, 'quiet')) return ERROR;
  return LEVELS.findIndex((l) => l.toLowerCase() === str(v, 'loglevel').toLowerCase());
}

/** The URL argument: fortio adds http:// when there is no scheme. */
export function urlOf(arg: string): URL {
  const s = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(arg) ? arg : `http://${arg}`;
  let u: URL;
  try { u = new URL(s); } catch { throw new UsageError(`invalid url '${arg}'`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`unsupported scheme in '${arg}': meshlet load runs http:// and https:// (fortio's tcp:// and udp:// runners are not implemented; gRPC arrives with the Protocols work)`);
  return u;
}

function readFile(path: string, what: string): Buffer {
  try { return readFileSync(path); } catch (e) { throw new WarmupError(`${what} ${path}: ${(e as Error).message}`); }
}

/** The HTTP client options shared by `load` and `curl` (payload, method, TLS, connection flags). */
export function clientOptions(v: V, url: URL, stdinPayload?: Buffer): Omit<LoadOptions, 'connections' | 'qps' | 'calls' | 'durationMs' | 'allowInitialErrors'> {
  const headers: Array<[string, string]> = (v.get('H') as string[]).map((h) => {
    const i = h.indexOf(':');
    if (i <= 0) throw new UsageError(`invalid -H '${h}': expected key:value`);
    return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
  });
  let payload: Buffer | null = null;
  // -payload-size is capped at -maxpayloadsizekb, as fortio's random payload generator does.
  const size = Math.min(v.has('payload-size') ? num(v, 'payload-size') : 0, num(v, 'maxpayloadsizekb') * 1024);
  if (size > 0) payload = randomBytes(size);
  else if (stdinPayload) payload = stdinPayload;
  else if (v.has('payload-file') && str(v, 'payload-file')) payload = readFile(str(v, 'payload-file'), 'cannot read -payload-file');
  else if (v.has('payload') && str(v, 'payload')) payload = Buffer.from(str(v, 'payload'));
  let reuse: [number, number] | null = null;
  if (str(v, 'connection-reuse')) {
    const r = str(v, 'connection-reuse').split(':').map(Number);
    reuse = r.length === 1 ? [r[0], r[0]] : [Math.min(r[0], r[1]), Math.max(r[0], r[1])];
    if (reuse[1] <= 0) reuse = null; // a threshold of 0: unlimited
  }
  const timeoutMs = num(v, 'timeout');
  if (!(timeoutMs > 0)) throw new UsageError(`invalid -timeout ${timeoutMs}ms: must be > 0`);
  return {
    url: url.href, headers, payload, contentType: str(v, 'content-type') || undefined, timeoutMs,
    method: str(v, 'X') || undefined, http10: bool(v, 'http1.0'), keepAlive: bool(v, 'keepalive'), halfClose: bool(v, 'halfclose'), reuse,
    resolve: str(v, 'resolve') || undefined, unixSocket: str(v, 'unix-socket') || undefined,
    tls: {
      insecure: bool(v, 'k') || bool(v, 'https-insecure'),
      ca: str(v, 'cacert') ? readFile(str(v, 'cacert'), 'cannot read -cacert') : undefined,
      cert: str(v, 'cert') ? readFile(str(v, 'cert'), 'cannot read -cert') : undefined,
      key: str(v, 'key') ? readFile(str(v, 'key'), 'cannot read -key') : undefined,
    },
    compression: bool(v, 'compression'), user: str(v, 'user') || undefined, followRedirects: bool(v, 'L'),
    logErrors: bool(v, 'log-errors'), dnsMethod: str(v, 'dns-method'), ipType: str(v, 'resolve-ip-type'), noReresolve: bool(v, 'no-reresolve'),
    maxHeadBytes: Math.max(1, num(v, 'httpbufferkb')) * 1024,
  };
}

/** json.MarshalIndent(v, "", "  "): Go escapes <, >, & (and U+2028/9) inside strings. */
export function goJson(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function loggerOf(v: V, level: number): Logger {
  return makeLogger({
    level, json: bool(v, 'logger-json'), timestamp: bool(v, 'logger-timestamp'), goroutine: bool(v, 'logger-goroutine'),
    color: bool(v, 'logger-force-color') || (!bool(v, 'logger-no-color') && !!process.stderr.isTTY && !bool(v, 'logger-json')),
  });
}

export async function main(argv: string[]): Promise<number | undefined> {
  const parsed = parseOrExit(argv, null, 'load');
  if (typeof parsed === 'number') return parsed;
  const v = parsed.values;
  const level = levelOf(v);
  const log = loggerOf(v, level);
  if (bool(v, 'curl')) {
    const { curlWith } = await import('./curl.ts');
    return curlWith(parsed, log, level);
  }
  let access: AccessLogger | null = null;
  let stopProfile = str(v, 'profile') ? startProfile(str(v, 'profile')) : null;
  try {
    if (parsed.args.length !== 1) {
      // fortio's cli.ErrUsage text; meshlet adds why when there were extra arguments.
      throw new UsageError(`Error: fortio load/curl needs a URL or destination${parsed.args.length > 1 ? `\n(got ${parsed.args.length} arguments: ${parsed.args.join(' ')}; flags go before the url)` : ''}`);
    }
    const url = urlOf(parsed.args[0]);
    const percentiles = str(v, 'p').split(',').map((x) => x.trim()).filter((x) => x !== '').map(Number);
    for (const p of percentiles) if (!(p > 0 && p < 100)) throw new UsageError(`Unable to extract percentiles from -p "${str(v, 'p')}": each must be in (0,100)`);
    const c = num(v, 'c');
    if (!(c >= 1)) throw new UsageError(`invalid -c ${c}: need at least 1 connection`);
    const n = Math.max(0, num(v, 'n'));
    let durationMs = num(v, 't');
    if (durationMs < 0) durationMs = 0; // fortio: -t <= 0 is until interrupted
    let qps = num(v, 'qps');
    if (!(qps > 0)) qps = 0; // 0 or negative: max
    if (bool(v, 'calc-qps')) {
      if (!(n > 0 && durationMs > 0)) throw new UsageError('-calc-qps needs both -n and -t');
      qps = n / (durationMs / 1000);
    }
    const base = clientOptions(v, url);
    const labels = v.has('labels') && str(v, 'labels') ? str(v, 'labels') : `${url.href.replace(/^https?:\/\//, '')} , ${hostname().split('.')[0]}`;
    if (str(v, 'access-log-file')) {
      const fmt = str(v, 'access-log-format').toLowerCase();
      if (fmt !== 'json' && fmt !== 'influx') throw new UsageError(`invalid format "${str(v, 'access-log-format')}", should be "json" or "influx"`);
      access = new AccessLogger(str(v, 'access-log-file'), fmt as AccessFormat);
    }
    const gomax = num(v, 'gomaxprocs') >= 1 ? num(v, 'gomaxprocs') : availableParallelism();
    process.stderr.write(banner({ version: VERSION, qps: bool(v, 'calc-qps') ? qps : num(v, 'qps'), procs: gomax, exactly: n, durationMs, url: url.href }));
    // ^C stops the run and prints the report (with -t 0 it is the only end), as fortio.
    const ac = new AbortController();
    const onSig = () => ac.abort();
    process.once('SIGINT', onSig); process.once('SIGTERM', onSig);
    const opts: LoadOptions = {
      ...base, connections: c, qps, calls: n, durationMs, allowInitialErrors: bool(v, 'allow-initial-errors'),
      abortOn: num(v, 'abort-on'), jitter: bool(v, 'jitter'), uniform: bool(v, 'uniform'), noCatchUp: bool(v, 'nocatchup'),
      sequentialWarmup: bool(v, 'sequential-warmup'), resolution: num(v, 'r'), offsetSec: num(v, 'offset') / 1000,
      accessLog: access, signal: ac.signal, log, runId: num(v, 'runid'),
      h2: bool(v, 'h2'), grpc: bool(v, 'grpc') ? { service: str(v, 'healthservice') } : null,
      onStart: (r) => process.stderr.write(startLine(r, gomax, level, access ? ` with access logger ${access.info()}` : '')),
    };
    log('info', 'Starting http test', {
      run: String(num(v, 'runid')), url: url.href, threads: String(c), qps: (qps || -1).toFixed(1),
      warmup: bool(v, 'sequential-warmup') ? 'sequential' : 'parallel', 'conn-reuse': base.reuse ? `[${base.reuse[0]}, ${base.reuse[1]}]` : '',
    });
    const r = await runLoad(opts);
    process.off('SIGINT', onSig); process.off('SIGTERM', onSig);
    if (stopProfile) { await stopProfile(); stopProfile = null; }
    const j = toFortioJson(r, {
      labels, runId: num(v, 'runid'), percentiles, cacert: str(v, 'cacert'), cert: str(v, 'cert'), key: str(v, 'key'),
      stdClient: bool(v, 'stdclient'), meshlet: !bool(v, 'json-strict'), accessLogInfo: access?.info(), version: VERSION,
    });
    process.stderr.write(report({ r, j, level, coNote: true, profile: str(v, 'profile') || undefined }));
    const jsonPath = str(v, 'json');
    if (jsonPath || bool(v, 'a')) {
      const text = `${goJson(j)}\n`;
      const bytes = Buffer.byteLength(text);
      if (jsonPath === '-') { process.stdout.write(text); process.stderr.write(`Successfully wrote ${bytes} bytes of Json data to stdout\n`); }
      else {
        const file = jsonPath || join(str(v, 'data-dir'), `${j.ID}.json`);
        writeFileSync(file, text);
        process.stderr.write(`Successfully wrote ${bytes} bytes of Json data to ${file}\n`);
      }
    }
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { process.stderr.write(`${e.message}\n`); return 1; }
    // fortio_main prints this one as a report line (not a log line).
    process.stderr.write(`Aborting because of ${(e as Error).message}\n`);
    return 1;
  } finally {
    await access?.close();
    await stopProfile?.();
  }
}
