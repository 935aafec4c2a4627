// `meshlet curl <url>` (and `meshlet load -curl`): one request in fortio's curl mode (>= 1.22):
// the response head as received on stderr (stdout with -curl-stdout-headers), the body on stdout,
// exit 0 only for status 200 (so 201/204 fail too, as fortio), 1 otherwise or on a connection
// error. The same HTTP/1.x client and client flags as `meshlet load` (TLS, -L, -X, -payload...).
import { CURL_FLAG_NAMES } from './fortio-flags.ts';
import { Conn, Resolver, buildRequest, targetOf, type CallResult } from './http-client.ts';
import { UsageError, clientOptions, levelOf, loggerOf, parseOrExit, urlOf } from './cli.ts';
import type { GoParsed } from './goflag.ts';
import type { Logger } from './log.ts';

export async function main(argv: string[]): Promise<number | undefined> {
  const parsed = parseOrExit(argv, CURL_FLAG_NAMES, 'curl');
  if (typeof parsed === 'number') return parsed;
  const level = levelOf(parsed.values);
  return curlWith(parsed, loggerOf(parsed.values, level), level);
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export async function curlWith(parsed: GoParsed, log: Logger, _level: number): Promise<number> {
  const v = parsed.values;
  // The curl mode prints the response as received, which the HTTP/2 client does not keep (it is
  // a load client): refused rather than silently sent as HTTP/1.1.
  if (parsed.set.has('h2') || parsed.set.has('grpc')) {
    process.stderr.write(`meshlet curl: -${parsed.set.has('h2') ? 'h2' : 'grpc'}: not supported in curl mode (meshlet load -h2 / -grpc are)\n`);
    return 2;
  }
  let url: URL;
  let base;
  try {
    if (parsed.args.length !== 1) throw new UsageError(parsed.args.length === 0 ? 'Error: fortio curl needs a url or destination' : `Error: fortio curl needs exactly one url, got ${parsed.args.length} arguments; flags go before the url`);
    url = urlOf(parsed.args[0]);
    // -stream: the payload comes from stdin (read whole: the request still has a Content-Length).
    base = clientOptions(v, url, v.get('stream') ? await readStdin() : undefined);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
  const method = base.method || (base.payload || base.contentType ? 'POST' : 'GET');
  const opts = {
    keepAlive: false, halfClose: !!base.halfClose, timeoutMs: base.timeoutMs, reuse: null, maxHeadBytes: base.maxHeadBytes ?? 131072,
    tls: base.tls ?? { insecure: false }, resolver: new Resolver(base.dnsMethod, base.ipType),
  };
  const headersOut = v.get('curl-stdout-headers') ? process.stdout : process.stderr;
  let current = url;
  let m = method;
  let body = base.payload;
  for (let hop = 0; ; hop++) {
    const same = current.host === url.host;
    const conn = new Conn(targetOf(current, same ? base.resolve : undefined, same ? base.unixSocket : undefined),
      buildRequest(current, { method: m, headers: base.headers, body, contentType: base.contentType, http10: !!base.http10, keepAlive: false, compression: !!base.compression, user: base.user }),
      m, opts);
    const follow = !!base.followRedirects && hop < 10;
    let redirecting = false;
    conn.sink = {
      head(raw, status) {
        redirecting = follow && status >= 300 && status < 400 && /\r\nlocation:/i.test(raw.toString('latin1'));
        if (!redirecting) headersOut.write(raw);
      },
      data(chunk) { if (!redirecting) process.stdout.write(chunk); },
    };
    const r = await new Promise<CallResult>((resolve) => conn.call(resolve));
    conn.close();
    if (redirecting && r.location) {
      current = new URL(r.location, current);
      if (r.status === 303) { m = 'GET'; body = null; }
      continue;
    }
    // fortio: the connection error is logged, then "Error status -1" like any other non-200.
    if (r.status < 0) log('err', r.connectFailed ? (current.protocol === 'https:' ? 'Unable to TLS connect' : 'Unable to connect') : 'Socket error', { dest: conn.addr, err: r.error });
    if (r.status !== 200) { log('err', `Error status ${r.status}`); return 1; }
    return 0;
  }
}
