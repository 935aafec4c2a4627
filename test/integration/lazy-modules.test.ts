// What a sidecar may never need is loaded at first use, not at start (docs/performance.md):
// node:http2 at the first HTTP/2 connection, node:tls with the first certificate or TLS upstream,
// re2js with the first regular expression; and node:http and fetch never, since the control
// client runs on the proxy's own engine. Checked in real processes: a plaintext proxy at its ready
// line, then after it served an h2c request; an mTLS sidecar following a control server; and a
// fresh process compiling a regex.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect, constants } from 'node:http2';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { H2_ERROR } from '../../proxy/engine/h2-server.ts';
import { echo, runNode, serviceYaml, spawnProxy, startUpstream, writeConfig, type SpawnedProxy, type Upstream } from '../helpers.ts';
import { configDir, startMeshlet, type Child } from '../control/lib.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'meshlet-lazy-'));
// Loaded into the proxy with --import (kept across its re-exec): records every module resolved,
// by import or require, and prints them with the loaded builtins on SIGUSR2.
const PRELOAD = join(dir, 'record.mjs');
writeFileSync(PRELOAD, `import { registerHooks } from 'node:module';
const seen = [];
registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
process.on('SIGUSR2', () => process.stderr.write('LOADED ' + JSON.stringify({ builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)), urls: seen }) + '\\n'));
`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const running: Array<SpawnedProxy | Upstream> = [];
const controls: Child[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await ('stop' in r ? r.stop() : r.close());
  for (const c of controls.splice(0)) { c.child.kill('SIGKILL'); await new Promise((r) => (c.child.exitCode !== null || c.child.signalCode !== null ? r(null) : c.child.once('exit', r))); }
});

async function loaded(p: SpawnedProxy): Promise<{ builtins: string[]; urls: string[] }> {
  const before = p.output().length;
  p.child.kill('SIGUSR2');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const line = p.output().slice(before).split('\n').find((l) => l.startsWith('LOADED '));
    if (line) return JSON.parse(line.slice(7));
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no module list: ${p.output()}`);
}

function h2get(port: number, authority: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(`http://127.0.0.1:${port}`);
    s.on('error', reject);
    const r = s.request({ ':path': '/lazy', ':authority': authority });
    let body = '';
    let status = 0;
    r.on('response', (h) => { status = Number(h[':status']); });
    r.setEncoding('utf8');
    r.on('data', (c) => { body += c; });
    r.on('end', () => { s.close(); resolve({ status, body }); });
    r.on('error', reject);
    r.end();
  });
}

describe('lazy modules', () => {
  it('a plaintext proxy starts without node:http2 and node:tls, and loads them for its first HTTP/2 connection', async () => {
    const up = await startUpstream(echo('app'));
    running.push(up);
    // spawnProxy runs `node bin/meshlet.js`; the preload goes through NODE_OPTIONS.
    const p = await spawnProxy(['--config', writeConfig(serviceYaml('lazy.test', [up.port])), '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn'],
      15_000, { NODE_OPTIONS: `--import ${PRELOAD}` });
    running.push(p);
    expect(p.line, p.output()).not.toBeNull();
    const idle = await loaded(p);
    expect(idle.builtins).toContain('net'); // the list is real
    expect(idle.builtins.filter((m) => /^(http2|tls|_tls_wrap|internal\/http2\/core)$/.test(m))).toEqual([]);
    expect(idle.urls.filter((u) => u.includes('/re2js/'))).toEqual([]);
    const r = await h2get((p.line!.ports as { outbound: number }).outbound, 'lazy.test');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).name).toBe('app');
    const after = await loaded(p);
    expect(after.builtins).toContain('http2');
  }, 40_000);

  it('an mTLS sidecar following a control server loads neither node:http nor fetch', async () => {
    const up = await startUpstream(echo('app'));
    running.push(up);
    const cfg = configDir({ 'mesh.yaml': `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: app, namespace: lazy }
spec:
  hosts: [app.lazy]
  ports: [{ number: 80, name: http }]
` });
    const control = await startMeshlet(['control', '--config-dir', cfg, '--ca-dir', join(dir, 'ca'), '--port', '0', '--api-port', '0', '--log-level', 'warn'], 'meshlet control ready');
    controls.push(control);
    const p = await spawnProxy(['--control', `http://127.0.0.1:${control.ports.discovery}`, '--namespace', 'lazy', '--node-id', 'lazy-1', '--service', 'app.lazy',
      '--service-account', 'app', '--app-port', String(up.port), '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'info'],
    15_000, { NODE_OPTIONS: `--import ${PRELOAD}` });
    running.push(p);
    expect(p.line, p.output()).not.toBeNull();
    // The certificate came from the control CA before the ready line; wait for the discovery stream and the registration.
    const deadline = Date.now() + 10_000;
    while (!(p.output().includes('control stream open') && p.output().includes('endpoint registered')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(p.output()).toContain('control stream open');
    expect(p.output()).toContain('endpoint registered');
    const mods = await loaded(p);
    expect(mods.builtins).toContain('tls'); // it has an identity
    expect(mods.builtins.filter((m) => /^(http|_http_client|_http_agent|internal\/deps\/undici\/undici)$/.test(m))).toEqual([]);
    rmSync(cfg, { recursive: true, force: true });
  }, 40_000);

  it('re2js is loaded by the first regex compiled, not by loading the proxy', async () => {
    const code = `import { registerHooks } from 'node:module';
const seen = [];
registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
const has = () => seen.some((u) => u.includes('/re2js/'));
await import(${JSON.stringify(join(ROOT, 'proxy/main.ts'))});
const { compileRe2 } = await import(${JSON.stringify(join(ROOT, 'proxy/config/regex.ts'))});
const before = has();
const re = compileRe2('^/api/v[0-9]+$');
console.log(JSON.stringify({ before, after: has(), matches: re.matches('/api/v2'), misses: re.matches('/api/vx') }));`;
    const r = await runNode(['--input-type=module', '-e', code]);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out.trim())).toEqual({ before: false, after: true, matches: true, misses: false });
  }, 60_000);

  it('the HTTP/2 error codes used before the module loads are node:http2 own', () => {
    expect(H2_ERROR).toEqual({
      NO_ERROR: constants.NGHTTP2_NO_ERROR, PROTOCOL_ERROR: constants.NGHTTP2_PROTOCOL_ERROR, INTERNAL_ERROR: constants.NGHTTP2_INTERNAL_ERROR,
      REFUSED_STREAM: constants.NGHTTP2_REFUSED_STREAM, CANCEL: constants.NGHTTP2_CANCEL, ENHANCE_YOUR_CALM: constants.NGHTTP2_ENHANCE_YOUR_CALM,
    });
  });
});
