// MetricTemplate provider prometheus against a real Prometheus (Debian's `prometheus` package:
// `apt-get install prometheus`) scraping the caller sidecar's /stats/prometheus every second.
// Skipped when no `prometheus` binary is on PATH (it is optional: the built-in metrics need none).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControl, type RunningControl } from '../../control/main.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { startUpstream, type Upstream } from '../helpers.ts';
import { children, configDir, startMeshlet, waitFor, type Child } from './lib.ts';

const HAVE_PROMETHEUS = spawnSync('prometheus', ['--version'], { encoding: 'utf8' }).status === 0;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const SELECT = 'reporter="source",destination_service_name="reviews",destination_version="{{ canary }}"';
const TEMPLATE = `apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: { name: success }
spec:
  provider: { type: prometheus, address: "http://127.0.0.1:PROM_PORT" }
  query: |
    sum(rate(istio_requests_total{${SELECT},response_code!~"5.*"}[{{ interval }}])) / sum(rate(istio_requests_total{${SELECT}}[{{ interval }}])) * 100
`;

describe.skipIf(!HAVE_PROMETHEUS)('Canary with a MetricTemplate on a real Prometheus', () => {
  let control: RunningControl;
  let front: Child;
  let prom: ChildProcess;
  let promPort: number;
  let dir: string;
  const ups: Upstream[] = [];

  beforeAll(async () => {
    let n = 0;
    const v1 = await startUpstream((req, res) => { req.resume(); res.writeHead(200).end('v1'); });
    const v2 = await startUpstream((req, res) => { req.resume(); n++; res.writeHead(n % 3 === 0 ? 503 : 200).end('v2'); });
    ups.push(v1, v2);
    promPort = await freePort();
    dir = configDir({
      'mesh.yaml': `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews]
  ports: [{ number: 80, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${v1.port} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${v2.port} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec: { host: reviews, subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }] }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec: { hosts: [reviews], http: [{ route: [{ destination: { host: reviews, subset: v1 } }] }] }
`,
      'template.yaml': TEMPLATE.replace('PROM_PORT', String(promPort)),
    });
    control = await startControl({ configDir: dir, port: 0, apiPort: 0, logger: createLogger('error', 'control'), dir: { debounceMs: 20, settleMs: 20, pollMs: 500 } });
    front = await startMeshlet(['proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--control', `http://127.0.0.1:${control.ports.discovery}`,
      '--node-id', 'front', '--log-level', 'warn'], 'meshlet proxy ready');
    const pdir = mkdtempSync(join(tmpdir(), 'meshlet-prom-'));
    writeFileSync(join(pdir, 'prometheus.yml'), `global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: meshlet
    metrics_path: /stats/prometheus
    static_configs: [{ targets: ["127.0.0.1:${front.ports.admin}"] }]
`);
    prom = spawn('prometheus', [`--config.file=${join(pdir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(pdir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
    children.push(prom);
    await waitFor('prometheus ready', async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`).catch(() => null))?.ok, 30_000);
  }, 60_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await control?.close();
    for (const u of ups) await u.close();
  });

  it('a templated success rate from Prometheus fails a 33 % 5xx candidate', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const timer = setInterval(() => {
      const r = request({ host: '127.0.0.1', port: front.ports.outbound, path: '/', agent, headers: { host: 'reviews' } }, (res) => { res.resume(); });
      r.on('error', () => {});
      r.end();
    }, 25);
    try {
      writeFileSync(join(dir, 'canary.yaml'), `apiVersion: flagger.app/v1beta1
kind: Canary
metadata: { name: reviews }
spec:
  targetRef: { kind: Service, name: reviews }
  canary: { subset: v2 }
  analysis:
    interval: 2s
    threshold: 2
    stepWeight: 50
    fastRollback: { successRateBelow: 0 }
    metrics: [{ name: prom-success, templateRef: { name: success }, thresholdRange: { min: 99 }, interval: 10s }]
`);
      const c = await waitFor('Failed', async () => {
        const c = (await (await fetch(`http://127.0.0.1:${control.ports.api}/api/v1/canaries/reviews`)).json()) as any;
        return c.status?.phase === 'Failed' ? c : c.status?.phase === 'Succeeded' ? Promise.reject(new Error('succeeded')) : undefined;
      }, 90_000);
      expect(c.events.some((e: any) => /^Halt reviews\.default advancement prom-success [\d.]+ < 99$/.test(e.message))).toBe(true);
      const v = c.status.checks[0].value;
      expect(v).toBeGreaterThan(50);
      expect(v).toBeLessThan(80);
    } finally { clearInterval(timer); agent.destroy(); }
  }, 120_000);
});
