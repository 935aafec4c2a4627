// `meshlet ctl`: operate a running control server through its ops API, and validate a config
// directory locally with the same code the control server and the proxy use.
import { FlagError, helpText, parseFlags, type FlagSpec } from '../cli/flags.ts';
import { ConfigError } from '../proxy/config/resources.ts';
import { readDir } from './sources/dir.ts';
import { build } from './build.ts';
import { readToken } from './http.ts';
import { fromDirFiles } from './canary/source.ts';
import { resolve } from 'node:path';

const SPECS: FlagSpec[] = [
  { name: 'server', type: 'string', default: 'http://127.0.0.1:15014', help: 'control server ops API: host:port (http assumed) or an http(s):// URL' },
  { name: 'token-file', type: 'string', help: 'file holding the bearer token' },
  { name: 'json', type: 'boolean', default: false, help: 'print the raw JSON answer' },
  { name: 'timeout', type: 'number', default: 10, help: 'seconds to wait for the server' },
  { name: 'version', type: 'string', help: 'canary start: the candidate subset' },
  { name: 'to', type: 'string', help: 'authz check: the destination service' },
  { name: 'from-principal', type: 'string', help: 'authz check: the caller\'s identity (cluster.local/ns/<ns>/sa/<sa>); unset = a plaintext caller' },
  { name: 'method', type: 'string', help: 'authz check: the method (default GET)' },
  { name: 'path', type: 'string', help: 'authz check: the path (default /)' },
  { name: 'header', type: 'list', help: 'authz check: a request header k=v (repeatable)' },
  { name: 'source-ip', type: 'string', help: 'authz check: the caller\'s address (default 127.0.0.1)' },
];

const USAGE = `meshlet ctl [--server <host:port|url>] [--token-file <file>] [--json] <command>

commands:
  get proxies                          node, service, connected, ACK/NACK (with error), last seen
  get config                           what is served, version, routing, rejected edits, ops overrides, notices
  get endpoints                        endpoints registered by sidecars
  weights <host> <subset>=<w> ...      set the split of the host's catch-all route(s); weights sum to 100
  promote <host> <subset>              send all traffic to one subset: every route of the host's
                                       VirtualService, header-matched ones too (mirrors onto the
                                       host's own versions are dropped, others kept)
  remove-version <host> <subset>       routes stop using the subset; its endpoints are drained
  rollback <host>                      undo the last weights/promote/remove-version (repeatable)
  validate <dir>                       validate a config directory locally (no server needed)
  get canaries                         NAME STATUS WEIGHT FAILEDCHECKS LASTTRANSITIONTIME (as kubectl get canary)
  describe canary <name>               spec, status, last checks and the events
  canary start <name> [--version <v>]  start (or restart) a run with that candidate subset
  canary approve|pause|resume|abort <name>
                                       pass the next confirm gate / stop analysis / go on / roll back now
  authz check --to <service> [--from-principal P] [--method M] [--path P] [--header k=v]...
                                       allow or deny, with the AuthorizationPolicy and rule that decided`;

type Out = { code: number };

/**
 * The ops API base URL from --server: `host:port` (what operators type, and what `kubectl
 * port-forward` prints) means http://host:port; a path is kept as a prefix (an ingress
 * mounting the API under /meshlet/). Anything else is a usage error that says what was wrong.
 */
export function serverBase(raw: string): URL {
  const s = raw.trim();
  if (!s) throw new FlagError('--server: empty; expected http://host:port or host:port');
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `http://${s}`;
  let u: URL;
  try { u = new URL(withScheme); } catch {
    throw new FlagError(`--server '${raw}': not a valid URL (expected http://host:port or host:port, e.g. 127.0.0.1:15014)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new FlagError(`--server '${raw}': unsupported scheme '${u.protocol.slice(0, -1)}' (http or https)`);
  if (!u.hostname) throw new FlagError(`--server '${raw}': no host (expected http://host:port or host:port)`);
  if (u.username || u.password) throw new FlagError(`--server '${raw}': credentials in the URL are not sent; put the token in a file and pass --token-file`);
  if (u.search || u.hash) throw new FlagError(`--server '${raw}': a query or fragment is not allowed; give the API's base URL`);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

async function call(f: Record<string, unknown>, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const url = new URL(path, serverBase(f.server as string));
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (f['token-file']) headers.authorization = `Bearer ${readToken(f['token-file'] as string)}`;
  let res: Response;
  try {
    res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout((f.timeout as number) * 1000) });
  } catch (e) {
    if ((e as Error).name === 'TimeoutError') throw new Error(`${url.origin}: no answer within ${f.timeout} s (--timeout)`);
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach ${url.origin}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  const text = await res.text();
  let json: any;
  try { json = JSON.parse(text); } catch { json = { error: text }; }
  return { status: res.status, json };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

function ago(iso: string | null | undefined): string {
  if (!iso) return '-';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 1 ? 'now' : s < 120 ? `${Math.round(s)}s ago` : `${Math.round(s / 60)}m ago`;
}

function printProxies(j: any): void {
  const rows = [['NODE', 'SERVICE', 'LABELS', 'CONNECTED', 'STATUS', 'SENT', 'ACKED', 'LAST SEEN', 'NACK ERROR']];
  for (const p of j.proxies ?? []) {
    rows.push([
      p.node, p.service || '-', Object.entries(p.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-',
      p.connected ? 'yes' : 'no', p.status === 'DISCONNECTED' && p.config_status ? `DISCONNECTED (was ${p.config_status})` : p.status,
      p.sent?.version ?? '-', p.acked?.version ?? '-', ago(p.last_seen),
      p.nacked ? `v${p.nacked.version}: ${p.nacked.error}` : '',
    ]);
  }
  console.log(`control version ${j.version ?? '-'}`);
  console.log(table(rows));
}

function printRouting(routing: any[]): void {
  for (const r of routing ?? []) {
    for (const rt of r.routes) console.log(`  ${r.host} [${r.vhost}] ${rt.route}: ${Object.entries(rt.split).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
}

function printConfig(j: any): void {
  if (j.status) console.log(j.status);
  console.log(`version ${j.version ?? '-'}  hash ${j.hash ?? '-'}  applied ${j.applied_at ?? '-'}`);
  console.log(`dir ${j.dir}  (ops overrides in ${j.ops_file})`);
  console.log('routing:');
  printRouting(j.routing);
  if (j.overrides?.length) {
    console.log('ops overrides:');
    for (const o of j.overrides) console.log(`  ${o.host}: overrides ${o.overrides ?? '(created by the API)'}; removed subsets: ${o.removed_subsets.join(',') || '-'}; rollback depth ${o.rollback_depth}`);
  }
  if (j.last_error) {
    // Only claim a last good snapshot when there is one (after a restart with a bad directory there is none).
    console.log(`REJECTED (${j.last_error.at}, ${j.last_error.trigger}) — ${j.version ? `the last good snapshot ${j.version} is still served` : 'no snapshot is served (proxies keep their own last good config)'}:`);
    for (const e of j.last_error.errors) console.log(`  ${e}`);
  }
  for (const n of (j.notices ?? []).slice(-5)) console.log(`NOTICE ${n.at}: ${n.message}`);
  console.log(`registered endpoints: ${j.endpoints}`);
}

function describeCanary(c: any): void {
  const s = c.status;
  console.log(`Name:         ${c.name}\nNamespace:    ${c.namespace}\nSource:       ${c.file}\nTarget:       ${c.spec.targetRef.name}\nStrategy:     ${c.strategy} (interval ${c.interval_ms / 1000}s, threshold ${c.threshold}, maxWeight ${c.maxWeight})`);
  console.log(`Status:\n  Phase:                ${s.phase}${s.paused ? ' (paused)' : ''}\n  Primary:              ${s.primary || '-'}\n  Canary:               ${s.canary || '-'}\n  Canary Weight:        ${s.canaryWeight}\n  Failed Checks:        ${s.failedChecks}\n  Iterations:           ${s.iterations}\n  Last Transition Time: ${s.lastTransitionTime}`);
  for (const cond of s.conditions ?? []) console.log(`  Condition ${cond.type}=${cond.status} (${cond.reason}): ${cond.message}`);
  if (s.checks?.length) {
    console.log('Checks:');
    console.log(table([['  METRIC', 'RESULT', 'VALUE', 'MIN', 'MAX', 'SAMPLES'], ...s.checks.map((k: any) => [`  ${k.metric}`, k.result, k.value === null ? '-' : String(k.value), k.min === null ? '-' : String(k.min), k.max === null ? '-' : String(k.max), `${k.samples}/${k.needed}`])]));
  }
  console.log('Spec:');
  for (const line of JSON.stringify(c.spec.analysis ?? {}, null, 2).split('\n')) console.log(`  ${line}`);
  console.log('Events:');
  console.log(table([['  TYPE', 'REASON', 'AGE', 'MESSAGE'], ...c.events.slice(-30).map((e: any) => [`  ${e.type}`, e.reason, ago(e.time), e.message])]));
}

function validate(dir: string): Out {
  try {
    const files = readDir(resolve(dir));
    const r = build(files, [], `dir:${resolve(dir)}`);
    const canaries = fromDirFiles(files);
    if (canaries.errors.length) throw new ConfigError(canaries.errors);
    console.log(`${dir}: valid (${r.snapshot.services.length} services, ${r.snapshot.clusters.length} clusters, ${r.snapshot.virtualHosts.length} virtual hosts, ${canaries.canaries.length} canaries, hash ${r.snapshot.hash})`);
    for (const n of r.notices) console.log(`NOTICE: ${n.message}`);
    return { code: 0 };
  } catch (e) {
    if (e instanceof ConfigError) { console.error(`${dir}: invalid:\n  ${e.errors.join('\n  ')}`); return { code: 1 }; }
    console.error(`${dir}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message}`);
    return { code: 1 };
  }
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet ctl: ${(e as Error).message}`); return 2; }
  if (p.help || p.positional.length === 0) { console.log(helpText(USAGE, 'Operate a running control server.', SPECS)); return p.help ? 0 : 2; }
  const f = p.flags;
  if (!(typeof f.timeout === 'number' && f.timeout > 0 && f.timeout <= 2_147_483)) { console.error('meshlet ctl: --timeout must be a number of seconds > 0'); return 2; }
  const [cmd, ...args] = p.positional;
  const need = (n: number, usage: string) => { if (args.length !== n) throw new FlagError(`usage: meshlet ctl ${usage}`); };
  try {
    let r: { status: number; json: any };
    switch (cmd) {
      case 'validate':
        need(1, 'validate <dir>');
        return validate(args[0]).code;
      case 'describe': {
        need(2, 'describe canary <name>');
        if (args[0] !== 'canary' && args[0] !== 'canaries') throw new FlagError(`describe: unknown resource '${args[0]}' (canary)`);
        r = await call(f, 'GET', `api/v1/canaries/${encodeURIComponent(args[1])}`);
        if (r.status === 200 && !f.json) { describeCanary(r.json); return 0; }
        break;
      }
      case 'canary': {
        const act = args[0];
        if (!['start', 'approve', 'pause', 'resume', 'abort'].includes(act) || args.length !== 2) throw new FlagError('usage: meshlet ctl canary start|approve|pause|resume|abort <name> [--version <subset>]');
        r = await call(f, 'POST', `api/v1/canaries/${encodeURIComponent(args[1])}/${act}`, f.version ? { version: f.version } : {});
        if (r.status === 200 && !f.json) { console.log(`canary ${r.json.name}: ${act} -> ${r.json.status.phase}, weight ${r.json.status.canaryWeight}`); return 0; }
        break;
      }
      case 'get': {
        need(1, 'get proxies|config|endpoints|canaries');
        const what = args[0];
        if (what === 'canaries' || what === 'canary') {
          r = await call(f, 'GET', 'api/v1/canaries');
          if (r.status === 200 && !f.json) {
            console.log(table([['NAME', 'STATUS', 'WEIGHT', 'FAILEDCHECKS', 'LASTTRANSITIONTIME'],
              ...r.json.canaries.map((c: any) => [c.name, c.status.phase, String(c.status.canaryWeight), String(c.status.failedChecks), c.status.lastTransitionTime])]));
            for (const e of r.json.errors ?? []) console.log(`ERROR ${e}`);
            return 0;
          }
          break;
        }
        if (!['proxies', 'config', 'endpoints'].includes(what)) throw new FlagError(`get: unknown resource '${what}' (proxies, config, endpoints, canaries)`);
        r = await call(f, 'GET', `v1/${what}`);
        if (r.status === 200 && !f.json) {
          if (what === 'proxies') printProxies(r.json);
          else if (what === 'config') printConfig(r.json);
          else console.log(table([['NODE', 'SERVICE', 'ADDRESS', 'LABELS', 'EXPIRES'], ...r.json.endpoints.map((e: any) => [e.node, e.service, `${e.address}:${e.port}`, Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-', e.expiresAt])]));
          return 0;
        }
        break;
      }
      case 'weights': {
        if (args.length < 2) throw new FlagError('usage: meshlet ctl weights <host> <subset>=<weight> ...');
        const weights: Record<string, number> = {};
        for (const a of args.slice(1)) {
          const m = /^([^=]+)=(\d+)$/.exec(a);
          if (!m) throw new FlagError(`weights: expected <subset>=<integer weight>, got '${a}'`);
          weights[m[1]] = Number(m[2]);
        }
        r = await call(f, 'POST', 'v1/weights', { host: args[0], weights });
        break;
      }
      case 'promote':
        need(2, 'promote <host> <subset>');
        r = await call(f, 'POST', 'v1/promote', { host: args[0], subset: args[1] });
        break;
      case 'remove-version':
        need(2, 'remove-version <host> <subset>');
        r = await call(f, 'POST', 'v1/remove-version', { host: args[0], subset: args[1] });
        break;
      case 'rollback':
        need(1, 'rollback <host>');
        r = await call(f, 'POST', 'v1/rollback', { host: args[0] });
        break;
      case 'authz': {
        need(1, 'authz check --to <service> [--from-principal P] [--method M] [--path P] [--header k=v]');
        if (args[0] !== 'check') throw new FlagError(`authz: unknown subcommand '${args[0]}' (check)`);
        if (!f.to) throw new FlagError('authz check: --to <service> is required');
        const headers: Record<string, string> = {};
        for (const h of (f.header as string[] | undefined) ?? []) {
          const i = h.indexOf('=');
          if (i <= 0) throw new FlagError(`--header: expected k=v, got '${h}'`);
          headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1);
        }
        r = await call(f, 'POST', 'v1/authz/check', {
          to: f.to, fromPrincipal: f['from-principal'], method: f.method, path: f.path, headers, sourceIp: f['source-ip'],
        });
        if (r.status === 200 && !f.json) {
          let all = true;
          for (const w of r.json.workloads) {
            all &&= w.allowed;
            const who = `${w.namespace}/${Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(',') || '*'}`;
            console.log(`${w.allowed ? 'ALLOW' : 'DENY'}  ${r.json.service} (${who}): ${w.reason}`);
            if (w.dryRun) console.log(`       dry-run policies would ${w.dryRun.allowed ? 'allow' : 'deny'}${w.dryRun.policy ? ` (${w.dryRun.policy})` : ''}`);
          }
          return all ? 0 : 3;
        }
        break;
      }
      default:
        throw new FlagError(`unknown command '${cmd}'\n\n${USAGE}`);
    }
    if (f.json) { console.log(JSON.stringify(r.json, null, 2)); return r.status === 200 ? 0 : 1; }
    if (r.status !== 200) {
      const hint = r.status === 401 ? (f['token-file'] ? ' (the token in --token-file was refused)' : ' (the server wants a token: pass --token-file)') : '';
      console.error(`meshlet ctl: ${r.status}: ${r.json.error ?? JSON.stringify(r.json)}${hint}`);
      return 1;
    }
    console.log(`${r.json.change}: version ${r.json.version} (written to ${r.json.file})`);
    printRouting(r.json.routing);
    for (const w of r.json.warnings ?? []) console.log(`WARNING: ${w}`);
    return 0;
  } catch (e) {
    console.error(`meshlet ctl: ${(e as Error).message}`);
    return e instanceof FlagError ? 2 : 1;
  }
}
