// Every flag fortio's `load` and `curl` know (fortio's own help text and defaults, v1.72-1.75),
// each marked with what meshlet does with it:
//   'same'      implemented with fortio's meaning;
//   'note'      accepted, with a difference stated in `note` (also shown in --help and docs/load.md);
//   'protocols' gRPC features beyond health checks (ping, reflection, compression, streams):
//               exit 2 "not supported" (-h2 and -grpc health checks are built);
//   'server'    a flag of fortio's servers: fortio's one global flag set accepts it for `load`
//               too and ignores it there; so does meshlet (scripts that pass them keep working).
// Checked against fortio's source (cli/fortio_main.go, bincommon/commonflags.go, periodic/, fhttp/).
import type { GoFlag } from './goflag.ts';

export type FlagStatus = 'same' | 'note' | 'protocols' | 'server';
export interface FortioFlag extends GoFlag { status: FlagStatus; note?: string }

const LEVELS = ['Debug', 'Verbose', 'Info', 'Warning', 'Error', 'Critical', 'Fatal'];
const checkLevel = (v: string) => (LEVELS.some((l) => l.toLowerCase() === v.toLowerCase()) ? null : `log level not one of ${LEVELS.join(' ')}`);
// fortio's ValidateAndSetConnectionReuseRange: "n" or "a:b" (swapped when a > b).
const checkRange = (v: string) => (v === '' || /^-?\d+(:-?\d+)?$/.test(v) ? null : 'invalid value for connection reuse range');

const SEC = 1000;

export const FORTIO_FLAGS: FortioFlag[] = [
  { name: 'H', kind: 'list', help: 'Additional HTTP header(s) or gRPC metadata. Multiple key:value pairs can be passed using multiple -H.', status: 'same' },
  { name: 'L', kind: 'bool', help: 'Follow redirects (implies -std-client) - do not use for load test', status: 'same' },
  { name: 'X', kind: 'string', help: 'HTTP method to use instead of GET/POST depending on payload/content-type', status: 'same' },
  { name: 'a', kind: 'bool', help: 'Automatically save JSON result with filename based on labels & timestamp', status: 'same' },
  { name: 'abort-on', kind: 'int', help: 'HTTP status code that if encountered aborts the run. e.g., 503 or -1 for socket errors.', status: 'same' },
  { name: 'access-log-file', kind: 'string', help: 'file path to log all requests to. Maybe have performance impacts', status: 'same' },
  { name: 'access-log-format', kind: 'string', def: 'json', help: 'format for access log. Supported values: [json, influx]', status: 'same' },
  { name: 'allow-initial-errors', kind: 'bool', help: "Allow and don't abort on initial warmup errors", status: 'same' },
  { name: 'c', kind: 'int', def: 4, help: 'Number of connections/goroutine/threads', status: 'same' },
  { name: 'cacert', kind: 'string', help: 'Path to a custom CA certificate file to be used for the TLS client connections, if empty, use https:// prefix for standard internet/system CAs', status: 'same' },
  { name: 'calc-qps', kind: 'bool', help: 'Calculate the qps based on number of requests (-n) and duration (-t)', status: 'same' },
  { name: 'cert', kind: 'string', help: 'Path to the certificate file to be used for client or server TLS', status: 'same' },
  { name: 'compression', kind: 'bool', help: 'Enable HTTP compression', status: 'note', note: 'sends Accept-Encoding: gzip; sizes are the compressed bytes (no decompression), as the fast client' },
  { name: 'connection-reuse', kind: 'string', help: 'Range min:max for the max number of connections to reuse for each thread, default to unlimited. e.g. 10:30 means randomly choose a max connection reuse threshold between 10 and 30 requests.', status: 'same', check: checkRange },
  { name: 'content-type', kind: 'string', help: 'Sets HTTP content type. Setting this value switches the request method from GET to POST.', status: 'same' },
  { name: 'curl', kind: 'bool', help: 'Just fetch the content once', status: 'same' },
  { name: 'curl-stdout-headers', kind: 'bool', help: 'Restore pre 1.22 behavior where HTTP headers of the fast client are output to stdout in curl mode. now stderr by default.', status: 'same' },
  { name: 'data-dir', kind: 'string', def: '.', help: 'Directory where JSON results are stored/read', status: 'same' },
  { name: 'dns-method', kind: 'string', def: 'cached-rr', help: 'When a name resolves to multiple ip, which method to pick: cached-rr for cached round-robin, rnd for random, first for first answer (pre 1.30 behavior), rr for round-robin.', status: 'same', check: (v) => (['cached-rr', 'rnd', 'first', 'rr'].includes(v) ? null : 'expected cached-rr, rnd, first or rr') },
  { name: 'gomaxprocs', kind: 'int', help: "Setting for runtime.GOMAXPROCS, < 1 doesn't change the default", status: 'note', note: 'no effect: the Node runner is one thread; the value only shows in the banner' },
  { name: 'h2', kind: 'bool', help: 'Attempt to use HTTP/2.0 / h2 (instead of HTTP/1.1) for both TLS and h2c', status: 'note', note: 'h2c with prior knowledge for http://, ALPN h2 for https:// (node:http2); one session per thread; header sizes are not counted (HPACK)' },
  { name: 'halfclose', kind: 'bool', help: 'When not keepalive, whether to half close the connection (only for fast http)', status: 'same' },
  { name: 'http1.0', kind: 'bool', help: 'Use HTTP/1.0 (instead of HTTP/1.1)', status: 'same' },
  { name: 'httpbufferkb', kind: 'int', def: 128, help: 'Size of the buffer (max data size) for the optimized HTTP client in kbytes', status: 'note', note: 'bounds the response head; bodies are counted, not buffered' },
  { name: 'httpccch', kind: 'bool', help: 'Check for Connection: Close Header', status: 'note', note: 'always on: a Connection: close response closes the socket' },
  { name: 'https-insecure', kind: 'bool', help: 'Long form of the -k flag', status: 'same' },
  { name: 'jitter', kind: 'bool', help: "set to true to de-synchronize parallel clients' by 10%", status: 'same' },
  { name: 'json', kind: 'string', help: "JSON output to provided file path or '-' for stdout (empty = no json output, unless -a is used)", status: 'same' },
  { name: 'json-strict', kind: 'bool', def: true, help: 'meshlet only: write exactly fortio\'s fields; -json-strict=false adds a "Meshlet" object (coordinated-omission facts)', status: 'note', note: 'meshlet-only flag' },
  { name: 'k', kind: 'bool', help: 'Do not verify certs in HTTPS/TLS/gRPC connections', status: 'same' },
  { name: 'keepalive', kind: 'bool', def: true, help: 'Keep connection alive (only for fast HTTP/1.1)', status: 'same' },
  { name: 'key', kind: 'string', help: 'Path to the key file matching the -cert', status: 'same' },
  { name: 'labels', kind: 'string', help: 'Additional config data/labels to add to the resulting JSON, defaults to target URL and hostname', status: 'same' },
  { name: 'log-errors', kind: 'bool', def: true, help: 'Log HTTP non-2xx/418 status codes as they occur', status: 'same' },
  { name: 'logger-file-line', kind: 'bool', def: true, help: 'Filename and line numbers emitted in JSON logs, use -logger-file-line=false to disable', status: 'note', note: 'no Go source lines to name: never emitted' },
  { name: 'logger-force-color', kind: 'bool', help: "Force color output even if stderr isn't a terminal", status: 'same' },
  { name: 'logger-goroutine', kind: 'bool', def: true, help: 'GoroutineID emitted in JSON/color logs, use -logger-goroutine=false to disable', status: 'note', note: '"r" is the thread number' },
  { name: 'logger-json', kind: 'bool', def: true, help: 'Log in JSON format, use -logger-json=false to disable', status: 'same' },
  { name: 'logger-no-color', kind: 'bool', help: "Prevent colorized output even if stderr is a terminal", status: 'same' },
  { name: 'logger-timestamp', kind: 'bool', def: true, help: 'Timestamps emitted in JSON logs, use -logger-timestamp=false to disable', status: 'same' },
  { name: 'loglevel', kind: 'string', def: 'Info', help: 'log level, one of [Debug Verbose Info Warning Error Critical Fatal]', status: 'same', check: checkLevel },
  { name: 'n', kind: 'int', help: 'Run for exactly this number of calls instead of duration. Default (0) is to use duration (-t). Default is 1 when used as gRPC ping count.', status: 'same' },
  { name: 'no-reresolve', kind: 'bool', help: "Keep the initial DNS resolution and don't re-resolve when making new connections (because of error or reuse limit reached)", status: 'same' },
  { name: 'nocatchup', kind: 'bool', help: 'set to exact fixed qps and prevent fortio from trying to catchup when the target fails to keep up temporarily', status: 'same' },
  { name: 'offset', kind: 'duration', help: 'Offset of the histogram data', status: 'same' },
  { name: 'p', kind: 'string', def: '50,75,90,99,99.9', help: 'List of pXX to calculate', status: 'same' },
  { name: 'payload', kind: 'string', help: 'Payload string to send along', status: 'same' },
  { name: 'payload-file', kind: 'string', help: 'File path to be use as payload (POST for HTTP), replaces -payload when set.', status: 'same' },
  { name: 'maxpayloadsizekb', kind: 'int', def: 256, help: 'MaxPayloadSize is the maximum size of payload to be generated by the EchoHandler size= argument. In `Kbytes`.', status: 'same', note: 'also caps -payload-size' },
  { name: 'payload-size', kind: 'int', help: 'Additional random payload size, replaces -payload when set > 0, must be smaller than -maxpayloadsizekb. Setting this switches HTTP to POST.', status: 'same' },
  { name: 'profile', kind: 'string', help: 'write .cpu and .mem profiles to file', status: 'note', note: 'V8 profiles: <file>.cpu is a .cpuprofile (Chrome DevTools), <file>.mem a heap snapshot' },
  { name: 'qps', kind: 'float', def: 8, help: 'Queries Per Seconds or 0 for no wait/max qps', status: 'same' },
  { name: 'quiet', kind: 'bool', help: 'Quiet mode, sets loglevel to Error (quietly) to reduces the output', status: 'same' },
  { name: 'r', kind: 'float', def: 0.001, help: 'Resolution of the histogram lowest buckets in seconds', status: 'same' },
  { name: 'resolve', kind: 'string', help: 'Resolve host name to this IP', status: 'same' },
  { name: 'resolve-ip-type', kind: 'string', def: 'ip4', help: 'Resolve type: ip4 for ipv4, ip6 for ipv6 only, use ip for both', status: 'same', check: (v) => (['ip4', 'ip6', 'ip'].includes(v) ? null : 'expected ip4, ip6 or ip') },
  { name: 'runid', kind: 'int', help: 'Optional RunID to add to JSON result and auto save filename, to match server mode', status: 'same' },
  { name: 'sequential-warmup', kind: 'bool', help: 'http(s) runner warmup done sequentially instead of parallel. When set, restores pre 1.21 behavior', status: 'same' },
  { name: 'stdclient', kind: 'bool', help: 'Use the slower net/http standard client (slower but supports h2/h2c)', status: 'note', note: 'one HTTP/1.x client serves both; only DisableFastClient in the JSON changes' },
  { name: 'stream', kind: 'bool', help: 'Stream payload from stdin (only for fortio curl mode)', status: 'same' },
  { name: 't', kind: 'duration', def: 5 * SEC, help: 'How long (duration) to run the test or 0 to run until ^C', status: 'same' },
  { name: 'timeout', kind: 'duration', def: 3 * SEC, help: 'Connection and read timeout value (for HTTP)', status: 'note', note: 'one deadline per call (connect + response), not per read' },
  { name: 'uniform', kind: 'bool', help: "set to true to de-synchronize parallel clients' requests uniformly", status: 'same' },
  { name: 'unix-socket', kind: 'string', help: 'Unix domain socket path to use for physical connection', status: 'same' },
  { name: 'user', kind: 'string', help: 'User credentials for basic authentication (for HTTP). Input data format should be user:password', status: 'same' },
  // gRPC (fortio's fgrpc flags): with the HTTP/2 client of the Protocols work.
  { name: 'grpc', kind: 'bool', help: 'Use GRPC (health check by default, add -ping for ping) for load testing', status: 'note', note: 'grpc.health.v1.Health/Check over HTTP/2; reported as Code lines: 200 = grpc-status 0 and SERVING, 503 = NOT_SERVING, 500+N = grpc-status N (fortio prints a health-status table instead)' },
  { name: 'ping', kind: 'bool', help: 'gRPC load test: use ping instead of health', status: 'protocols' },
  { name: 'grpc-ping-delay', kind: 'duration', help: 'gRPC ping delay in response', status: 'protocols' },
  { name: 'grpc-compression', kind: 'bool', help: 'Enable gRPC compression', status: 'protocols' },
  { name: 'healthservice', kind: 'string', help: 'which service string to pass to health check', status: 'same' },
  { name: 's', kind: 'int', def: 1, help: 'Number of streams per gRPC connection', status: 'protocols' },
  { name: 'grpc-method', kind: 'string', help: 'Fully-qualified gRPC method to call (Service/Method). Service must have reflection enabled.', status: 'protocols' },
  { name: 'health', kind: 'bool', help: 'gRPC ping client mode: use health instead of ping', status: 'protocols' },
  // fortio's server flags (accepted and ignored by `fortio load`, the same here).
  { name: 'M', kind: 'list', help: 'HTTP multi proxy to run, e.g -M "localport1 baseDestURL1 baseDestURL2" -M ...', status: 'server' },
  { name: 'P', kind: 'list', help: 'TCP proxies to run, e.g -P "localport1 dest_host1:dest_port1" -P "[::1]:0 www.google.com:443" ...', status: 'server' },
  { name: 'base-url', kind: 'string', help: 'base URL used as prefix for data/index.tsv generation. (when empty, the URL from the first request is used)', status: 'server' },
  { name: 'debug-path', kind: 'string', def: '/debug', help: 'path for debug url, set to empty for no debug', status: 'server' },
  { name: 'echo-debug-path', kind: 'string', def: '/debug', help: 'http echo server URI for debug, empty turns off that part (more secure)', status: 'server' },
  { name: 'echo-server-default-params', kind: 'string', help: 'Default parameters/querystring to use if there isn\'t one provided explicitly. E.g. "status=404&delay=3s"', status: 'server' },
  { name: 'grpc-max-streams', kind: 'int', help: 'MaxConcurrentStreams for the gRPC server. Default (0) is to leave the option unset.', status: 'server' },
  { name: 'grpc-port', kind: 'string', def: '8079', help: 'grpc server port. Can be in the form of host:port, ip:port or port or /unix/domain/path or "disabled" to not start the gRPC server.', status: 'server' },
  { name: 'http-port', kind: 'string', def: '8080', help: 'http-echo server port. Can be in the form of host:port, ip:port, port or /unix/domain/path or "disabled".', status: 'server' },
  { name: 'max-echo-delay', kind: 'duration', def: 1500, help: 'Maximum sleep time for delay= echo server parameter. dynamic flag.', status: 'server' },
  { name: 'mtls', kind: 'bool', help: 'Require client certificate signed by -cacert for client connections', status: 'server' },
  { name: 'multi-mirror-origin', kind: 'bool', def: true, help: 'Mirror the request URL to the target for multi proxies (-M)', status: 'server' },
  { name: 'multi-serial-mode', kind: 'bool', help: 'Multi server (-M) requests one at a time instead of parallel mode', status: 'server' },
  { name: 'nc-dont-stop-on-eof', kind: 'bool', help: "in netcat (nc) mode, don't abort as soon as remote side closes", status: 'server' },
  { name: 'pprof', kind: 'bool', help: 'Enable pprof HTTP endpoint in the Web UI handler server', status: 'server' },
  { name: 'proxy-all-headers', kind: 'bool', def: true, help: 'Determines if only tracing or all headers (and cookies) are copied from request on the fetch2 ui/server endpoint', status: 'server' },
  { name: 'redirect-port', kind: 'string', def: '8081', help: 'Redirect all incoming traffic to https:// URL (need ingress to work properly). Can be in the form of host:port, ip:port, port or "disabled" to disable the feature.', status: 'server' },
  { name: 'server-idle-timeout', kind: 'duration', def: 30_000, help: 'Default IdleTimeout for servers', status: 'server' },
  { name: 'static-dir', kind: 'string', help: 'Deprecated/unused path.', status: 'server' },
  { name: 'sync', kind: 'string', help: 'index.tsv or s3/gcs bucket XML URL to fetch at startup for server modes.', status: 'server' },
  { name: 'sync-interval', kind: 'duration', help: 'Refresh the URL every given interval (default, no refresh)', status: 'server' },
  { name: 'tcp-port', kind: 'string', def: '8078', help: 'tcp-echo server port. Can be in the form of host:port, ip:port, port or /unix/domain/path or "disabled".', status: 'server' },
  { name: 'udp-async', kind: 'bool', help: 'if true, udp echo server will use separate go routine to reply', status: 'server' },
  { name: 'udp-port', kind: 'string', def: '8078', help: 'udp-echo server port. Can be in the form of host:port, ip:port, port or "disabled".', status: 'server' },
  { name: 'udp-timeout', kind: 'duration', def: 750, help: 'Udp timeout', status: 'server', note: 'udp:// and tcp:// load targets are not supported (exit 1)' },
  { name: 'ui-path', kind: 'string', def: '/fortio/', help: 'HTTP server URI for UI, empty turns off that part (more secure)', status: 'server' },
];

/** The subset `meshlet curl` takes (fortio curl: the HTTP client flags, no load pacing). */
export const CURL_FLAG_NAMES = new Set(['H', 'L', 'X', 'cacert', 'cert', 'compression', 'connection-reuse', 'content-type', 'curl-stdout-headers',
  'dns-method', 'h2', 'halfclose', 'http1.0', 'httpbufferkb', 'httpccch', 'https-insecure', 'k', 'keepalive', 'key', 'log-errors',
  'logger-file-line', 'logger-force-color', 'logger-goroutine', 'logger-json', 'logger-no-color', 'logger-timestamp', 'loglevel',
  'no-reresolve', 'payload', 'payload-file', 'payload-size', 'quiet', 'resolve', 'resolve-ip-type', 'stdclient', 'stream', 'timeout',
  'unix-socket', 'user', 'grpc', 'gomaxprocs', 'profile']);

export const PROTOCOLS_MESSAGE = 'not supported: meshlet load -grpc does grpc.health.v1 health checks only (no ping service, reflection, compression or stream count)';

/** The --help note for a flag. */
export function flagNote(f: FortioFlag): string | undefined {
  if (f.status === 'protocols') return PROTOCOLS_MESSAGE;
  if (f.status === 'server') return `server flag: accepted, no effect in load/curl${f.note ? `; ${f.note}` : ''}`;
  return f.note;
}
