// `meshlet control`: flags -> startControl; SIGTERM/SIGINT close the servers.
import { helpText, parseFlags, type FlagSpec } from '../cli/flags.ts';
import { DEFAULT_CONTROL as D, startControl } from './main.ts';
import { readToken } from './http.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';

const SPECS: FlagSpec[] = [
  { name: 'config-dir', type: 'string', help: 'directory of resource files (Istio-shaped YAML), watched for changes' },
  { name: 'port', type: 'number', default: D.port, help: 'discovery port (proxies connect here; 0 = pick one)' },
  { name: 'api-port', type: 'number', default: D.apiPort, help: 'ops API port (meshlet ctl; 0 = pick one)' },
  { name: 'bind', type: 'string', default: D.bind, help: 'address both ports bind (non-loopback needs --token-file)' },
  { name: 'token-file', type: 'string', help: 'file holding the bearer token every request must carry' },
  { name: 'endpoint-ttl', type: 'number', default: D.endpointTtlMs / 1000, help: 'seconds a registered endpoint lives without a heartbeat' },
  { name: 'kubernetes', type: 'boolean', default: false, help: 'also discover Services/EndpointSlices/Pods and read Istio/meshlet custom resources from the Kubernetes API server' },
  { name: 'kubeconfig', type: 'string', help: 'with --kubernetes: kubeconfig file (default: in-cluster service account, else $KUBECONFIG / ~/.kube/config)' },
  { name: 'lease-namespace', type: 'string', help: 'with --kubernetes: several replicas; ops writes only on the holder of Lease meshlet-control-leader in this namespace' },
  { name: 'cluster-domain', type: 'string', default: 'cluster.local', help: 'with --kubernetes: the cluster DNS domain of Service hosts' },
  { name: 'webhook-port', type: 'number', help: 'serve the sidecar-injection admission webhook (HTTPS, POST /inject) on this port (Istio: 15017)' },
  { name: 'webhook-tls-dir', type: 'string', default: '/etc/meshlet/webhook', help: 'directory with tls.crt and tls.key (a kubernetes.io/tls Secret) for the webhook' },
  { name: 'sidecar-image', type: 'string', default: 'meshlet:latest', help: 'image of the injected sidecar and init container' },
  { name: 'sidecar-control-url', type: 'string', default: 'http://meshlet-control.meshlet-system:15010', help: 'control URL injected sidecars follow' },
  { name: 'log-level', type: 'string', default: 'info', help: 'trace|debug|info|warn|error|silent' },
  { name: 'ca-dir', type: 'string', help: "the CA's directory: a root is generated there on first start (ca-cert.pem, ca-key.pem, root-cert.pem), or Istio's plug-in cacerts are used as found; unset = a root in memory" },
  { name: 'trust-domain', type: 'string', default: 'cluster.local', help: 'SPIFFE trust domain of the identities signed' },
  { name: 'cert-ttl', type: 'number', default: 24, help: 'hours a workload certificate is valid at most' },
];

function certTtl(h: number): number {
  if (!Number.isFinite(h) || h <= 0) throw new Error(`--cert-ttl: must be a number of hours > 0, got ${h}`);
  return h * 3600_000;
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet control: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet control --config-dir <dir> [flags]', 'Run the control server: compile the directory into snapshots, stream them to proxies, serve the ops API.', SPECS)); return 0; }
  const f = p.flags;
  if (!f['config-dir']) { console.error('meshlet control: --config-dir <dir> is required'); return 2; }
  const ttl = f['endpoint-ttl'] as number;
  if (!(ttl > 0)) { console.error('meshlet control: --endpoint-ttl must be > 0'); return 2; }
  let control;
  try {
    const token = f['token-file'] ? readToken(f['token-file'] as string) : undefined;
    control = await startControl({
      configDir: f['config-dir'] as string, port: f.port as number, apiPort: f['api-port'] as number, bind: f.bind as string,
      token, endpointTtlMs: ttl * 1000, logLevel: f['log-level'] as string,
      ...(f['webhook-port'] !== undefined ? { webhook: {
        port: f['webhook-port'] as number,
        certPem: readFileSync(join(f['webhook-tls-dir'] as string, 'tls.crt'), 'utf8'), keyPem: readFileSync(join(f['webhook-tls-dir'] as string, 'tls.key'), 'utf8'),
        inject: { image: f['sidecar-image'] as string, controlUrl: f['sidecar-control-url'] as string },
      } } : {}),
      ...(f.kubernetes ? { kubernetes: {
        kubeconfig: f.kubeconfig as string | undefined, clusterDomain: f['cluster-domain'] as string,
        ...(f['lease-namespace'] ? { lease: { namespace: f['lease-namespace'] as string, identity: process.env.POD_NAME || `${hostname()}-${process.pid}` } } : {}),
      } } : {}),
      caDir: f['ca-dir'] as string | undefined, trustDomain: f['trust-domain'] as string, leafTtlMs: certTtl(f['cert-ttl'] as number),
    });
  } catch (e) {
    console.error(`meshlet control: ${(e as Error).message}`);
    return 1;
  }
  if (!control.log.isLevelEnabled('info')) {
    process.stdout.write(`${JSON.stringify({ level: 30, time: new Date().toISOString(), pid: process.pid, ports: control.ports, msg: 'meshlet control ready' })}\n`);
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    control.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return undefined;
}
