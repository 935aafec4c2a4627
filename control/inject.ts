// `meshlet inject -f deploy.yaml`: add the meshlet sidecar to Kubernetes workloads (Pod,
// Deployment, StatefulSet, DaemonSet, ReplicaSet, Job). Other documents pass through unchanged.
// Idempotent: an existing `meshlet` container is replaced in place by a freshly built one.
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import { helpText, parseFlags, type FlagSpec } from '../cli/flags.ts';

export const SIDECAR_NAME = 'meshlet';

export interface InjectOptions { controlUrl: string; image: string }

const SPECS: FlagSpec[] = [
  { name: 'filename', alias: ['f'], type: 'string', help: "manifest file ('-' = stdin)" },
  { name: 'control-url', type: 'string', default: 'http://meshlet-control.meshlet-system:15010', help: 'control server discovery URL the sidecar follows' },
  { name: 'image', type: 'string', default: 'meshlet:latest', help: 'sidecar image' },
];

const TEMPLATE_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

type Obj = Record<string, any>;

function sidecar(pod: Obj, labels: Record<string, string>, where: string, opts: InjectOptions): Obj {
  const app = labels.app ?? labels['app.kubernetes.io/name'];
  if (!app) throw new Error(`${where}: the pod template needs an 'app' (or app.kubernetes.io/name) label: it names the service`);
  const version = labels.version ?? labels['app.kubernetes.io/version'];
  const appContainers = (pod.containers as Obj[]).filter((c) => c?.name !== SIDECAR_NAME);
  const port = appContainers.flatMap((c) => (Array.isArray(c.ports) ? c.ports : [])).find((p: Obj) => typeof p?.containerPort === 'number')?.containerPort;
  if (port === undefined) throw new Error(`${where}: no containerPort on the app containers: the sidecar needs --app-port`);
  // Listen on the pod's addresses (probes and other pods reach it there) and register the pod IP.
  const args = ['proxy', '--control', opts.controlUrl, '--node-id', '$(POD_NAME)', '--bind', '0.0.0.0', '--advertise-address', '$(POD_IP)', '--service', String(app)];
  if (version) args.push('--labels', `version=${version}`);
  args.push('--app-port', String(port));
  return {
    name: SIDECAR_NAME,
    image: opts.image,
    args,
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    ],
    ports: [
      { name: 'mesh-outbound', containerPort: 15001 },
      { name: 'mesh-inbound', containerPort: 15006 },
      { name: 'mesh-admin', containerPort: 15000 },
    ],
    readinessProbe: { httpGet: { path: '/ready', port: 15000 }, periodSeconds: 2 },
    securityContext: {
      runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] },
    },
  };
}

function injectPod(pod: Obj | undefined, labels: Record<string, string>, where: string, opts: InjectOptions): boolean {
  if (!pod || !Array.isArray(pod.containers)) throw new Error(`${where}: no containers list in the pod spec`);
  const sc = sidecar(pod, labels, where, opts);
  const i = pod.containers.findIndex((c: Obj) => c?.name === SIDECAR_NAME);
  if (i >= 0) pod.containers[i] = sc; else pod.containers.push(sc);
  return true;
}

/** Inject into every workload of a (multi-document) manifest; returns the new YAML text. */
export function injectText(text: string, opts: InjectOptions): { text: string; injected: string[] } {
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: string[] = [];
  const injected: string[] = [];
  list.forEach((doc, n) => {
    if (doc.errors.length > 0) throw new Error(`document ${n + 1}: invalid YAML: ${doc.errors[0].message.split('\n')[0]}`);
    const v = doc.toJS() as Obj | null;
    if (v === null || v === undefined) return;
    const where = `document ${n + 1} (${v.kind ?? '?'}/${v.metadata?.name ?? '?'})`;
    if (v.kind === 'Pod') {
      injectPod(v.spec, v.metadata?.labels ?? {}, where, opts);
      injected.push(`${v.kind}/${v.metadata?.name}`);
    } else if (TEMPLATE_KINDS.has(v.kind)) {
      const t = v.spec?.template;
      injectPod(t?.spec, t?.metadata?.labels ?? {}, where, opts);
      injected.push(`${v.kind}/${v.metadata?.name}`);
    }
    out.push(stringify(v, { lineWidth: 0 }));
  });
  return { text: out.join('---\n'), injected };
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet inject: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet inject -f <manifest.yaml|-> [--control-url <url>]', 'Print the manifest with a meshlet sidecar added to each workload.', SPECS)); return 0; }
  const file = p.flags.filename as string | undefined;
  if (!file) { console.error('meshlet inject: -f <file> is required'); return 2; }
  let text: string;
  try { text = readFileSync(file === '-' ? 0 : file, 'utf8'); } catch (e) { console.error(`meshlet inject: ${file}: ${(e as Error).message}`); return 1; }
  try {
    const r = injectText(text, { controlUrl: p.flags['control-url'] as string, image: p.flags.image as string });
    if (r.injected.length === 0) console.error('meshlet inject: no Pod or workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job) found; printed unchanged');
    process.stdout.write(r.text);
    return 0;
  } catch (e) {
    console.error(`meshlet inject: ${file}: ${(e as Error).message}`);
    return 1;
  }
}
