// Canary end to end: a real control server (in-process, so a test can restart it) + a real
// `meshlet proxy` child (the caller's sidecar, reporting its edges every 0.5 s) + in-process
// upstream apps per version whose behaviour a test sets (good, 30 % 5xx, slow). Each test has a
// service of its own (reviews-<t>) in one config directory, so runs do not share routes.
// Intervals are 1 s; every wait is a bounded poll of the ops API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { startControl, type RunningControl } from '../../control/main.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { startUpstream, type Upstream } from '../helpers.ts';
import { children, configDir, ctlRun, httpJson, sleep, startMeshlet, waitFor, type Child } from './lib.ts';

type Mode = { fail5xx: number; delayMs: number };
interface App { up: Upstream; mode: Mode }
const apps = new Map<string, App>(); // "<svc>/<version>"
const upstreams: Upstream[] = [];
let dir: string;
let control: RunningControl;
let front: Child;
const SERVICES = ['good', 'bad', 'slow', 'thin', 'gate', 'prehook', 'restart', 'ab', 'sticky', 'bg', 'detect', 'fast', 'mirror', 'rel', 'promo'];

function app(name: string): Promise<App> {
  const mode: Mode = { fail5xx: 0, delayMs: 0 };
  let n = 0;
  return startUpstream((req, res) => {
    req.resume();
    const reply = () => {
      // A deterministic share of failures: every k-th request, so a test is not at the mercy of chance.
      n++;
      const fail = mode.fail5xx > 0 && (n % Math.round(100 / mode.fail5xx)) === 0;
      res.writeHead(fail ? 503 : 200, { 'x-upstream': name, 'content-type': 'text/plain' });
      res.end(name);
    };
    if (mode.delayMs) setTimeout(reply, mode.delayMs); else reply();
  }).then((up) => { upstreams.push(up); return { up, mode }; });
}

function serviceYaml(svc: string, v1: number, v2: number | null): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews-${svc} }
spec:
  hosts: [reviews-${svc}]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${v1} }, labels: { version: v1 } }
${v2 === null ? '' : `    - { address: 127.0.0.1, ports: { http: ${v2} }, labels: { version: v2 } }\n`}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-${svc} }
spec:
  host: reviews-${svc}
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-${svc} }
spec:
  hosts: [reviews-${svc}]
  http:
    - route: [{ destination: { host: reviews-${svc}, subset: v1 } }]
`;
}

const api = (method: string, path: string, body?: unknown) => httpJson(control.ports.api, method, path, body);
const canary = async (name: string) => (await api('GET', `/api/v1/canaries/${name}`)).json;

function writeCanary(name: string, analysis: string, extra = ''): void {
  writeFileSync(join(dir, `canary-${name}.yaml`), `apiVersion: flagger.app/v1beta1
kind: Canary
metadata: { name: ${name} }
spec:
  targetRef: { kind: Service, name: reviews-${name} }
  canary: { subset: v2 }
  progressDeadlineSeconds: 120
${extra}  analysis:
${analysis.split('\n').map((l) => `    ${l}`).join('\n')}
`);
}

/** Paced requests for `host` through the sidecar until stop(); counts by x-upstream and failures. */
function traffic(host: string, rps: number, headers: Record<string, string> = {}) {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const by: Record<string, number> = {};
  let failed = 0, total = 0, inflight = 0;
  const timer = setInterval(() => {
    if (inflight >= 8) return;
    inflight++;
    const r = request({ host: '127.0.0.1', port: front.ports.outbound, path: '/', agent, headers: { host, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => { inflight--; total++; if (res.statusCode !== 200) failed++; const u = String(res.headers['x-upstream'] ?? '-'); by[u] = (by[u] ?? 0) + 1; });
    });
    r.on('error', () => { inflight--; total++; failed++; });
    r.end();
  }, Math.round(1000 / rps));
  return { by, get failed() { return failed; }, get total() { return total; }, stop() { clearInterval(timer); agent.destroy(); } };
}

async function startCtl(ports?: { discovery: number; api: number }): Promise<RunningControl> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await startControl({ configDir: dir, port: ports?.discovery ?? 0, apiPort: ports?.api ?? 0, logger: createLogger('error', 'control'), dir: { debounceMs: 20, settleMs: 20, pollMs: 500 } });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

const synced = async () => {
  const v = (await api('GET', '/v1/config')).json.version;
  const ps = (await api('GET', '/v1/proxies')).json.proxies as any[];
  return ps.length > 0 && ps.every((p) => p.connected && p.acked?.version === v);
};

beforeAll(async () => {
  const files: Record<string, string> = {};
  for (const s of SERVICES) {
    const [a, b] = await Promise.all([app(`${s}-v1`), app(`${s}-v2`)]);
    apps.set(`${s}/v1`, a); apps.set(`${s}/v2`, b);
    files[`svc-${s}.yaml`] = serviceYaml(s, a.up.port, s === 'detect' ? null : b.up.port);
  }
  dir = configDir(files);
  control = await startCtl();
  front = await startMeshlet(['proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--control', `http://127.0.0.1:${control.ports.discovery}`,
    '--node-id', 'front', '--report-interval', '0.5', '--log-level', 'warn'], 'meshlet proxy ready');
  await waitFor('front synced', synced, 15_000);
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await control?.close();
  for (const u of upstreams) await u.close();
});

// A 10 s window and 5 samples: enough to judge these apps (a good one never fails), and a loaded
// machine (the suite runs files in parallel on 2 shared cores) still fills it at every step.
const SR = `{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 10s, minSamples: 5 }`;
const P99 = `{ name: request-duration, thresholdRange: { max: 500 }, interval: 10s, minSamples: 5 }`;

describe('Canary (control server + sidecar + apps, 1 s intervals)', () => {
  it('a good candidate advances 20→40→…→100 and ends Succeeded with the candidate as primary', async () => {
    const t = traffic('reviews-good', 60);
    try {
      writeCanary('good', `interval: 1s\nthreshold: 2\nstepWeight: 20\nmaxWeight: 100\nmetrics: [${SR}, ${P99}]`);
      const c = await waitFor('Succeeded', async () => { const c = await canary('good'); return c.status?.phase === 'Succeeded' ? c : c.status?.phase === 'Failed' ? Promise.reject(new Error(JSON.stringify(c.events))) : undefined; }, 90_000);
      expect(c.status.primary).toBe('v2');
      const advances = c.events.filter((e: any) => /^Advance good\.default canary weight \d+$/.test(e.message)).map((e: any) => Number(e.message.split(' ').pop()));
      expect(advances).toEqual([20, 40, 60, 80, 100]);
      expect(c.events.some((e: any) => e.message.startsWith('Promotion completed!'))).toBe(true);
      expect(c.status.failedChecks).toBe(0);
      // Every route now sends to v2 only.
      const routing = (await api('GET', '/v1/config')).json.routing.find((r: any) => r.host === 'reviews-good');
      expect(routing.routes.map((r: any) => r.split)).toEqual([{ v2: 100 }]);
      await waitFor('proxy synced', synced);
      const before = apps.get('good/v1')!.up.hits;
      await sleep(1500);
      expect(apps.get('good/v1')!.up.hits - before).toBeLessThanOrEqual(8); // at most the requests in flight at the switch
      expect(t.failed).toBe(0);
    } finally { t.stop(); }
  }, 120_000);

  it('a candidate answering 30 % 5xx is rolled back after `threshold` failed checks and gets no further traffic', async () => {
    apps.get('bad/v2')!.mode.fail5xx = 30;
    const t = traffic('reviews-bad', 60);
    try {
      writeCanary('bad', `interval: 1s\nthreshold: 2\nstepWeight: 20\nmetrics: [${SR}]\nfastRollback: { successRateBelow: 0 }`);
      const c = await waitFor('Failed', async () => { const c = await canary('bad'); return c.status?.phase === 'Failed' ? c : c.status?.phase === 'Succeeded' ? Promise.reject(new Error('succeeded')) : undefined; }, 90_000);
      expect(c.status.failedChecks).toBe(2);
      expect(c.status.primary).toBe('v1');
      expect(c.status.canaryWeight).toBe(0);
      expect(c.events.some((e: any) => /^Halt bad\.default advancement success rate [\d.]+% < 99%/.test(e.message))).toBe(true);
      expect(c.events.some((e: any) => e.message === 'Rolling back bad.default failed checks threshold reached 2')).toBe(true);
      await waitFor('proxy synced', synced);
      await sleep(300);
      const before = apps.get('bad/v2')!.up.hits;
      const served = t.total;
      await waitFor('more traffic', () => t.total > served + 60, 20_000);
      expect(apps.get('bad/v2')!.up.hits).toBe(before);
    } finally { t.stop(); }
  }, 120_000);

  it('a slow candidate fails the p99 check', async () => {
    apps.get('slow/v2')!.mode.delayMs = 300;
    const t = traffic('reviews-slow', 60);
    try {
      writeCanary('slow', `interval: 1s\nthreshold: 1\nstepWeight: 50\nmetrics: [${SR}, { name: request-duration, thresholdRange: { max: 100 }, interval: 10s, minSamples: 5 }]`);
      const c = await waitFor('Failed', async () => { const c = await canary('slow'); return c.status?.phase === 'Failed' ? c : undefined; }, 90_000);
      expect(c.events.some((e: any) => /^Halt slow\.default advancement request duration \(p99\) \d+ms > 100ms/.test(e.message))).toBe(true);
      const p99 = c.status.checks.find((x: any) => x.metric === 'request-duration');
      expect(p99.result).toBe('fail');
      expect(p99.value).toBeGreaterThanOrEqual(300);
    } finally { t.stop(); }
  }, 120_000);

  it('thin traffic gives an "insufficient samples" check (a halt, not a pass) that says how many there were', async () => {
    const t = traffic('reviews-thin', 2);
    try {
      writeCanary('thin', `interval: 1s\nthreshold: 1\nstepWeight: 50\nmetrics: [{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 5s, minSamples: 50 }]`);
      const c = await waitFor('insufficient', async () => { const c = await canary('thin'); return c.status?.checks?.[0]?.result === 'insufficient' ? c : undefined; }, 60_000);
      await sleep(3000);
      const later = await canary('thin');
      expect(later.status.phase).toBe('Progressing');
      expect(later.status.canaryWeight).toBe(50);   // never advanced past the first step
      expect(later.status.failedChecks).toBe(0);
      const ev = later.events.find((e: any) => e.message.includes('insufficient samples'));
      expect(ev.message).toMatch(/insufficient samples for request-success-rate: \d+ request\(s\) to v2 in the last 5s, 50 needed/);
      expect(c.status.checks[0].needed).toBe(50);
      // The operator ends it: abort rolls back.
      const r = await api('POST', '/api/v1/canaries/thin/abort');
      expect(r.status).toBe(200);
      expect(r.json.status.phase).toBe('Failed');
    } finally { t.stop(); }
  }, 120_000);

  it('confirm-promotion holds in WaitingPromotion until `approve`; a failing pre-rollout hook counts as a failed check', async () => {
    const hooks: any[] = [];
    const hookServer = await startUpstream((req, res) => {
      let b = ''; req.on('data', (c) => { b += c; });
      req.on('end', () => { hooks.push({ url: req.url, body: JSON.parse(b) }); res.writeHead(req.url === '/fail' ? 500 : 200).end(); });
    });
    const t = traffic('reviews-gate', 60);
    const t2 = traffic('reviews-prehook', 20);
    try {
      writeCanary('gate', `interval: 1s\nthreshold: 2\nstepWeight: 50\nmetrics: [${SR}]\nwebhooks:\n  - { name: gate, type: confirm-promotion, url: "meshlet:gate" }\n  - { name: notify, type: post-rollout, url: "http://127.0.0.1:${hookServer.port}/ok" }`);
      writeCanary('prehook', `interval: 1s\nthreshold: 2\nstepWeight: 50\nmetrics: [${SR}]\nwebhooks:\n  - { name: smoke, type: pre-rollout, url: "http://127.0.0.1:${hookServer.port}/fail" }`);
      await waitFor('WaitingPromotion', async () => (await canary('gate')).status?.phase === 'WaitingPromotion', 90_000);
      await sleep(2500);
      const held = await canary('gate');
      expect(held.status.phase).toBe('WaitingPromotion');
      expect(held.status.canaryWeight).toBe(100);
      expect(held.events.some((e: any) => e.message.startsWith('Halt advancement gate.default waiting for promotion approval gate'))).toBe(true);
      const ok = await ctlRun(['--server', `127.0.0.1:${control.ports.api}`, 'canary', 'approve', 'gate']);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain('canary gate: approve');
      await waitFor('Succeeded', async () => (await canary('gate')).status?.phase === 'Succeeded', 30_000);
      await waitFor('post-rollout hook', () => hooks.some((h) => h.url === '/ok'), 10_000);
      const post = hooks.find((h) => h.url === '/ok').body;
      expect(Object.keys(post).sort()).toEqual(['checksum', 'metadata', 'name', 'namespace', 'phase']);
      expect(post.name).toBe('gate');

      const pre = await waitFor('prehook Failed', async () => { const c = await canary('prehook'); return c.status?.phase === 'Failed' ? c : undefined; }, 60_000);
      expect(pre.status.failedChecks).toBe(2);
      expect(pre.status.canaryWeight).toBe(0);
      expect(pre.events.some((e: any) => /pre-rollout check smoke failed: 500/.test(e.message))).toBe(true);
      expect(apps.get('prehook/v2')!.up.hits).toBe(0); // never got traffic
    } finally { t.stop(); t2.stop(); await hookServer.close(); }
  }, 150_000);

  it('a control-server restart mid-run resumes from the persisted status', async () => {
    const t = traffic('reviews-restart', 60);
    try {
      writeCanary('restart', `interval: 1s\nthreshold: 2\nstepWeights: [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]\nmetrics: [${SR}]`);
      const mid = await waitFor('weight ≥ 30', async () => { const c = await canary('restart'); return c.status?.canaryWeight >= 30 ? c : undefined; }, 90_000);
      const ports = control.ports;
      await control.close();
      await sleep(500);
      control = await startCtl(ports);
      const resumed = await canary('restart');
      expect(resumed.status.phase).toBe('Progressing');
      expect(resumed.status.canaryWeight).toBeGreaterThanOrEqual(mid.status.canaryWeight);
      expect(resumed.events.some((e: any) => e.reason === 'Resumed' && e.message.startsWith('Resuming restart.default from its status: phase Progressing'))).toBe(true);
      const done = await waitFor('Succeeded', async () => { const c = await canary('restart'); return c.status?.phase === 'Succeeded' ? c : undefined; }, 90_000);
      const ws = done.events.filter((e: any) => e.message.startsWith('Advance restart.default canary weight')).map((e: any) => Number(e.message.split(' ').pop()));
      expect(ws).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]); // no step repeated or skipped across the restart
    } finally { t.stop(); }
  }, 150_000);

  it('A/B: only requests matching `match` reach the candidate during the run', async () => {
    const plain = traffic('reviews-ab', 30);
    const tagged = traffic('reviews-ab', 30, { 'x-canary': 'insider' });
    try {
      writeCanary('ab', `interval: 1s\nthreshold: 2\niterations: 4\nmatch: [{ headers: { x-canary: { exact: insider } } }]\nmetrics: [${SR}]`);
      await waitFor('iteration 2', async () => (await canary('ab')).status?.iterations >= 2, 60_000);
      expect(plain.by['ab-v2'] ?? 0).toBe(0);
      const c = await waitFor('Succeeded', async () => { const c = await canary('ab'); return c.status?.phase === 'Succeeded' ? c : undefined; }, 60_000);
      expect(c.strategy).toBe('ab');
      expect(tagged.by['ab-v2']).toBeGreaterThan(20);
      expect(tagged.failed + plain.failed).toBe(0);
    } finally { plain.stop(); tagged.stop(); }
  }, 120_000);

  it('session affinity: each cookie holder stays on one version for the whole run', async () => {
    const clients = Array.from({ length: 16 }, () => ({ cookie: '', seen: [] as string[], withCookie: new Set<string>() }));
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    let stop = false;
    const one = (c: (typeof clients)[number]) => new Promise<void>((resolve) => {
      const r = request({ host: '127.0.0.1', port: front.ports.outbound, path: '/', agent, headers: { host: 'reviews-sticky', ...(c.cookie ? { cookie: c.cookie } : {}) } }, (res) => {
        res.resume();
        res.on('end', () => {
          const v = String(res.headers['x-upstream']);
          if (c.cookie) c.withCookie.add(v);
          const set = res.headers['set-cookie']?.[0];
          if (set && !c.cookie) c.cookie = set.split(';')[0];
          c.seen.push(v);
          resolve();
        });
      });
      r.on('error', () => resolve());
      r.end();
    });
    const loop = (async () => { for (let i = 0; i < 5000 && !stop; i++) { await Promise.all(clients.map(one)); await sleep(150); } })();
    try {
      writeCanary('sticky', `interval: 1s\nthreshold: 2\nstepWeight: 50\nmaxWeight: 50\nmetrics: [{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 10s, minSamples: 5 }]\nsessionAffinity: { cookieName: canary-session, primaryCookieName: primary-session }\nwebhooks: [{ name: hold, type: confirm-promotion, url: "meshlet:gate" }]`);
      await waitFor('WaitingPromotion', async () => (await canary('sticky')).status?.phase === 'WaitingPromotion', 90_000);
      stop = true;
      await loop;
      const holders = clients.filter((c) => c.cookie);
      expect(holders.length).toBe(clients.length);
      for (const c of holders) expect([...c.withCookie].length).toBe(1);
      const onCanary = holders.filter((c) => c.cookie.startsWith('canary-session=')).length;
      expect(onCanary).toBeGreaterThan(0);                 // the canary got users (at 50 %, 16 clients: all on one side has odds 2^-15) …
      expect(onCanary).toBeLessThan(holders.length);       // … and the primary kept some
      for (const c of holders) expect([...c.withCookie][0]).toBe(c.cookie.startsWith('canary-session=') ? 'sticky-v2' : 'sticky-v1');
      await api('POST', '/api/v1/canaries/sticky/approve');
      await waitFor('Succeeded', async () => (await canary('sticky')).status?.phase === 'Succeeded', 30_000);
    } finally { stop = true; await loop; agent.destroy(); }
  }, 150_000);

  it('blue/green with the built-in load hook: users stay on the primary, `meshlet load` through the mesh (l5d-dtab) feeds the checks', async () => {
    const users = traffic('reviews-bg', 20);
    try {
      writeCanary('bg', `interval: 1s\nthreshold: 2\niterations: 3\nmetrics: [{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 10s, minSamples: 5 }]\nwebhooks:\n  - { name: load, type: rollout, url: "meshlet:load", metadata: { via: "127.0.0.1:${front.ports.outbound}", qps: "30", duration: "60s" } }`);
      await waitFor('iteration 2', async () => (await canary('bg')).status?.iterations >= 2, 90_000);
      expect(users.by['bg-v2'] ?? 0).toBe(0);
      expect(apps.get('bg/v2')!.up.hits).toBeGreaterThan(10);
      const c = await waitFor('Succeeded', async () => { const c = await canary('bg'); return c.status?.phase === 'Succeeded' ? c : undefined; }, 60_000);
      expect(c.strategy).toBe('bluegreen');
      expect(c.events.some((e: any) => e.message.includes('canary iteration 3/3'))).toBe(true);
    } finally { users.stop(); }
  }, 150_000);

  it('a new version appearing in the endpoints is detected ("New revision detected!") and rolled out', async () => {
    const t = traffic('reviews-detect', 60);
    try {
      writeFileSync(join(dir, 'canary-detect.yaml'), `apiVersion: meshlet.io/v1alpha1
kind: Canary
metadata: { name: detect }
spec:
  targetRef: { kind: Service, name: reviews-detect }
  analysis: { interval: 1s, threshold: 2, stepWeight: 50, metrics: [${SR}] }
`);
      await waitFor('Initialized', async () => (await canary('detect')).status?.phase === 'Initialized', 30_000);
      expect((await canary('detect')).status.primary).toBe('v1');
      writeFileSync(join(dir, 'svc-detect.yaml'), serviceYaml('detect', apps.get('detect/v1')!.up.port, apps.get('detect/v2')!.up.port));
      const c = await waitFor('Succeeded', async () => { const c = await canary('detect'); return c.status?.phase === 'Succeeded' ? c : undefined; }, 90_000);
      expect(c.events.some((e: any) => /^New revision detected! Starting canary analysis for detect\.default: primary v1, canary v2$/.test(e.message))).toBe(true);
      expect(c.status.primary).toBe('v2');
      // Gauges and the ctl table show it.
      const m = await fetch(`http://127.0.0.1:${control.ports.api}/metrics`).then((r) => r.text());
      expect(m).toMatch(/meshlet_canary_status\{name="detect",namespace="default"\} 1/);
      expect(m).toMatch(/meshlet_canary_metric_threshold\{name="detect",namespace="default",metric="request-success-rate",bound="min"\} 99/);
      const out = await ctlRun(['--server', `127.0.0.1:${control.ports.api}`, 'get', 'canaries']);
      expect(out.stdout.split('\n')[0].split(/\s+/)).toEqual(['NAME', 'STATUS', 'WEIGHT', 'FAILEDCHECKS', 'LASTTRANSITIONTIME']);
      expect(out.stdout).toMatch(/^detect\s+Succeeded\s+0\s+0\s+\d{4}-/m);
      const d = await ctlRun(['--server', `127.0.0.1:${control.ports.api}`, 'describe', 'canary', 'detect']);
      expect(d.stdout).toContain('Promotion completed! detect.default: v2 is the primary');
      // The mesh page carries the canary panel: phase, weight line, checks, events.
      const page = await fetch(`http://127.0.0.1:${control.ports.api}/`).then((r) => r.text());
      expect(page).toMatch(/<div class="canary" data-canary="detect" data-phase="Succeeded">/);
      expect(page).toContain('Promotion completed! detect.default: v2 is the primary');
    } finally { t.stop(); }
  }, 150_000);

  it('fast rollback: a candidate whose answers collapse (100 % 5xx) is rolled back from the reports, before its first interval check', async () => {
    apps.get('fast/v2')!.mode.fail5xx = 100;
    const t = traffic('reviews-fast', 60);
    try {
      // A 20 s interval: the step to 20 % comes at the second tick, the first check 20 s later.
      writeCanary('fast', `interval: 20s\nthreshold: 5\nstepWeight: 20\nmetrics: [${SR}]`);
      await waitFor('Progressing', async () => (await canary('fast')).status?.phase === 'Progressing', 30_000);
      await api('POST', '/api/v1/canaries/fast/resume'); // resume = "step now": the 0 -> 20 step without waiting 20 s
      const c = await waitFor('Failed', async () => { const c = await canary('fast'); return c.status?.phase === 'Failed' ? c : undefined; }, 15_000);
      const ev = c.events.find((e: any) => e.message.startsWith('Rolling back fast.default fast rollback: success rate of v2'));
      expect(ev).toBeDefined();
      expect(c.status.failedChecks).toBe(0); // no interval check ran
      const at20 = c.events.find((e: any) => e.message === 'Advance fast.default canary weight 20');
      expect(Date.parse(ev.time) - Date.parse(at20.time)).toBeLessThan(15_000);
    } finally { t.stop(); }
  }, 60_000);

  it('mirror: the first interval copies traffic to the candidate (users only see the primary), then shifting starts', async () => {
    // (the copies are not analysed: see docs/canary.md, "Mirroring")
    const t = traffic('reviews-mirror', 40);
    try {
      writeCanary('mirror', `interval: 2s\nthreshold: 2\nstepWeight: 50\nmaxWeight: 50\nmirror: true\nmirrorWeight: 100\nmetrics: [{ name: request-success-rate, thresholdRange: { min: 99 }, interval: 10s, minSamples: 5 }]\nwebhooks: [{ name: hold, type: confirm-promotion, url: "meshlet:gate" }]`);
      await waitFor('mirroring', async () => (await canary('mirror')).events?.some((e: any) => e.message.startsWith('Starting mirroring of mirror.default')), 30_000);
      await waitFor('v2 gets copies', () => apps.get('mirror/v2')!.up.hits > 10, 20_000);
      expect(t.by['mirror-v2'] ?? 0).toBe(0); // the copies' answers are dropped
      const routing = (await api('GET', '/v1/config?snapshot')).json.snapshot.virtualHosts.find((v: any) => v.service === 'reviews-mirror');
      expect(JSON.stringify(routing)).toContain('v2');
      await waitFor('weight 50', async () => (await canary('mirror')).status?.canaryWeight === 50, 30_000);
      await waitFor('users reach v2', () => (t.by['mirror-v2'] ?? 0) > 5, 20_000);
      await api('POST', '/api/v1/canaries/mirror/abort');
    } finally { t.stop(); }
  }, 90_000);

  it('a relative success-rate metric (posted through the ops API) fails a candidate 5 points worse than the primary', async () => {
    apps.get('rel/v2')!.mode.fail5xx = 5;
    const t = traffic('reviews-rel', 60);
    try {
      const doc = {
        apiVersion: 'meshlet.io/v1alpha1', kind: 'Canary', metadata: { name: 'rel' },
        spec: { targetRef: { name: 'reviews-rel' }, canary: { subset: 'v2' }, analysis: {
          interval: '1s', threshold: 1, stepWeight: 50, maxWeight: 50,
          metrics: [{ name: 'request-success-rate', interval: '1m', relative: { maxDecrease: 0.5 } }],
          webhooks: [{ name: 'hold', type: 'confirm-promotion', url: 'meshlet:gate' }],
        } },
      };
      const bad = await api('POST', '/api/v1/canaries', { ...doc, spec: { ...doc.spec, analysis: { ...doc.spec.analysis, stepWeigth: 5 } } });
      expect(bad.status).toBe(400);
      expect(bad.json.error).toContain('unknown field(s) stepWeigth');
      const r = await api('POST', '/api/v1/canaries', doc);
      expect(r.status).toBe(200);
      expect(r.json.written).toBe(join(dir, 'canary-rel.yaml'));
      const c = await waitFor('Failed', async () => { const c = await canary('rel'); return c.status?.phase === 'Failed' ? c : c.status?.phase === 'WaitingPromotion' ? Promise.reject(new Error('passed')) : undefined; }, 90_000);
      expect(c.events.some((e: any) => /^Halt rel\.default advancement success rate 9\d(\.\d+)?% vs primary 100% \(max 0\.5 points lower; SPRT LLR/.test(e.message))).toBe(true);
    } finally { t.stop(); }
  }, 120_000);

  it('stepWeightPromotion: after maxWeight the rest of the traffic moves by that step per interval', async () => {
    const t = traffic('reviews-promo', 40);
    try {
      writeCanary('promo', `interval: 1s\nthreshold: 2\nstepWeight: 50\nmaxWeight: 50\nstepWeightPromotion: 20\nmetrics: [${SR}]`);
      const c = await waitFor('Succeeded', async () => { const c = await canary('promo'); return c.status?.phase === 'Succeeded' ? c : c.status?.phase === 'Failed' ? Promise.reject(new Error('failed')) : undefined; }, 90_000);
      const msgs = c.events.map((e: any) => e.message);
      expect(msgs.filter((m: string) => m.startsWith('Advance promo.default promotion: canary weight')).map((m: string) => Number(m.split(' ').pop()))).toEqual([70, 90]);
      expect(c.weights.map((w: any) => w.weight)).toEqual([0, 50, 70, 90, 100]);
      expect(c.status.primary).toBe('v2');
    } finally { t.stop(); }
  }, 120_000);
});
