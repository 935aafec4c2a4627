// Sidecar injection, one pod mutation shared by `meshlet inject -f deploy.yaml` (Pod, Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job, CronJob; other documents pass through) and the
// mutating admission webhook (control/kubernetes/webhook.ts), so both give the same pod:
//
//  - initContainers[0] `meshlet-init`: `meshlet iptables` writes the NAT rules that send the
//    pod's TCP through the sidecar (outbound -> 15001, inbound -> 15006), the only container with
//    NET_ADMIN/NET_RAW, and it exits;
//  - initContainers[1] `meshlet`: the sidecar as a native sidecar (restartPolicy: Always,
//    Kubernetes >= 1.29): it starts before the app containers, its startupProbe holds them until
//    it has config (no app request leaves before the proxy can route it), it stops after them, and
//    a Job completes when its app exits;
//  - outbound and admin listeners on 127.0.0.1 only (other pods reach neither), the inbound
//    listener on 0.0.0.0 (captured traffic arrives at the pod IP), /healthz/ready on 15021 for
//    kubelet; requests and limits; the pod's name, namespace, IP and service account through the
//    downward API; a projected service-account token with audience meshlet-control that the
//    control server checks with a TokenReview: no hand-made secret in the pod.
//
// Idempotent: containers and volumes of ours are replaced in place.
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import { helpText, parseFlags, type FlagSpec } from '../cli/flags.ts';

export const SIDECAR_NAME = 'meshlet';
export const INIT_NAME = 'meshlet-init';
export const TOKEN_VOLUME = 'meshlet-token';
export const TOKEN_DIR = '/var/run/secrets/meshlet';
export const PROXY_UID = 1337;
export const PORTS = { outbound: 15001, inbound: 15006, admin: 15000, health: 15021 } as const;

/** Annotations a pod may carry (Istio's names under sidecar.meshlet.io / traffic.sidecar.meshlet.io). */
export const ANNOTATIONS = {
  inject: 'sidecar.meshlet.io/inject',                              // "false": leave this pod alone
  status: 'sidecar.meshlet.io/status',                              // written by the injector
  cpu: 'sidecar.meshlet.io/proxyCPU',
  memory: 'sidecar.meshlet.io/proxyMemory',
  memoryLimit: 'sidecar.meshlet.io/proxyMemoryLimit',
  excludeOutboundPorts: 'traffic.sidecar.meshlet.io/excludeOutboundPorts',
  excludeInboundPorts: 'traffic.sidecar.meshlet.io/excludeInboundPorts',
  excludeOutboundIPRanges: 'traffic.sidecar.meshlet.io/excludeOutboundIPRanges',
  trustDtab: 'sidecar.meshlet.io/trustInboundDtabHeaders',            // "true": honour l5d-dtab from other pods
} as const;
export const INJECTION_LABEL = 'meshlet-injection';                  // namespace label: "enabled"
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

export interface InjectOptions { controlUrl: string; image: string }

const SPECS: FlagSpec[] = [
  { name: 'filename', alias: ['f'], type: 'string', help: "manifest file ('-' = stdin)" },
  { name: 'control-url', type: 'string', default: 'http://meshlet-control.meshlet-system:15010', help: 'control server discovery URL the sidecar follows' },
  { name: 'image', type: 'string', default: 'meshlet:latest', help: 'sidecar image' },
];

const TEMPLATE_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);

type Obj = Record<string, any>;

const env = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });

/** Why a pod is not injected, or null when it is. */
export function skipReason(meta: Obj | undefined, spec: Obj | undefined): string | null {
  if (!spec || !Array.isArray(spec.containers)) return 'no containers list in the pod spec';
  if (String(meta?.annotations?.[ANNOTATIONS.inject] ?? '').toLowerCase() === 'false') return `annotation ${ANNOTATIONS.inject}: "false"`;
  // A hostNetwork pod shares the node's network namespace: its iptables would capture the node.
  if (spec.hostNetwork === true) return 'hostNetwork pod (its rules would capture the whole node)';
  return null;
}

/** The service a pod serves: its app label, as Istio's canonical-service defaults do. */
function appName(meta: Obj): string {
  const l = meta.labels ?? {};
  const n = l.app ?? l['app.kubernetes.io/name'] ?? l['service.istio.io/canonical-name'];
  if (n) return String(n);
  const base = meta.name ?? String(meta.generateName ?? '').replace(/-$/, '');
  return base || 'unknown';
}

/**
 * Inject into one pod (metadata + spec, mutated in place). `meshlet inject` calls it on a copy of
 * a workload's template, the webhook on the Pod being created.
 */
export function injectPod(meta: Obj, spec: Obj, opts: InjectOptions): void {
  const ann: Obj = meta.annotations ?? {};
  const labels: Obj = meta.labels ?? {};
  const app = appName(meta);
  const version = labels.version ?? labels['app.kubernetes.io/version'];
  const appContainers = (spec.containers as Obj[]).filter((c) => c?.name !== SIDECAR_NAME);
  const appPorts = appContainers.flatMap((c) => (Array.isArray(c.ports) ? c.ports : []))
    .filter((p: Obj) => typeof p?.containerPort === 'number' && (p.protocol ?? 'TCP') === 'TCP').map((p: Obj) => p.containerPort as number);
  const port = appPorts[0];

  const args = [
    'proxy', '--control', opts.controlUrl, '--control-token-file', `${TOKEN_DIR}/token`,
    '--node-id', '$(POD_NAME).$(POD_NAMESPACE)', '--namespace', '$(POD_NAMESPACE)', '--service', app,
    '--bind', '127.0.0.1', '--inbound-bind', '0.0.0.0', '--health-port', String(PORTS.health),
    // Endpoints come from the EndpointSlices: the sidecar does not register itself.
    '--register=false',
    // l5d-dtab is honoured from the pod's own app (the outbound listener is on localhost, so only
    // it can reach it); from other pods it is stripped unless the pod opts in: any pod could
    // otherwise reroute this one's calls (until mTLS tells a meshed caller from any other).
    '--inbound-dtab-headers', String(ann[ANNOTATIONS.trustDtab]).toLowerCase() === 'true' ? 'trust' : 'strip',
  ];
  if (version) args.push('--labels', `version=${version}`);
  if (port !== undefined) args.push('--app-port', String(port));
  const sidecar: Obj = {
    name: SIDECAR_NAME, image: opts.image, args,
    restartPolicy: 'Always',
    env: [env('POD_NAME', 'metadata.name'), env('POD_NAMESPACE', 'metadata.namespace'), env('POD_IP', 'status.podIP'), env('SERVICE_ACCOUNT', 'spec.serviceAccountName')],
    ports: [{ name: 'mesh-health', containerPort: PORTS.health, protocol: 'TCP' }],
    // The app containers start only once this succeeds (native sidecar ordering).
    startupProbe: { httpGet: { path: '/healthz/ready', port: PORTS.health }, periodSeconds: 1, failureThreshold: 600 },
    readinessProbe: { httpGet: { path: '/healthz/ready', port: PORTS.health }, periodSeconds: 2, failureThreshold: 3 },
    // Liveness is "the process answers": config trouble (503 on readiness) is not fixed by a restart.
    livenessProbe: { tcpSocket: { port: PORTS.health }, periodSeconds: 10, failureThreshold: 3 },
    resources: {
      requests: { cpu: ann[ANNOTATIONS.cpu] ?? '100m', memory: ann[ANNOTATIONS.memory] ?? '64Mi' },
      // No CPU limit (CFS throttling adds latency to every request); memory is bounded.
      limits: { memory: ann[ANNOTATIONS.memoryLimit] ?? '256Mi' },
    },
    volumeMounts: [{ name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true }],
    securityContext: {
      runAsNonRoot: true, runAsUser: PROXY_UID, runAsGroup: PROXY_UID, allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] },
    },
  };

  const iptArgs = ['iptables', '--proxy-uid', String(PROXY_UID), '--proxy-gid', String(PROXY_UID),
    '--outbound-port', String(PORTS.outbound), '--inbound-port', String(PORTS.inbound),
    // Inbound capture of the app's ports; the sidecar's own ports are never captured.
    '--inbound-ports', appPorts.length ? appPorts.join(',') : '',
    '--exclude-inbound-ports', [String(PORTS.health), ann[ANNOTATIONS.excludeInboundPorts]].filter(Boolean).join(','),
  ];
  if (ann[ANNOTATIONS.excludeOutboundPorts]) iptArgs.push('--exclude-outbound-ports', String(ann[ANNOTATIONS.excludeOutboundPorts]));
  if (ann[ANNOTATIONS.excludeOutboundIPRanges]) iptArgs.push('--exclude-outbound-cidrs', String(ann[ANNOTATIONS.excludeOutboundIPRanges]));
  const init: Obj = {
    name: INIT_NAME, image: opts.image, args: iptArgs,
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '64Mi' } },
    securityContext: {
      runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
  };

  spec.containers = appContainers;   // an old-style (pre-native) meshlet container is replaced
  spec.initContainers = [init, sidecar, ...((spec.initContainers ?? []) as Obj[]).filter((c) => c?.name !== SIDECAR_NAME && c?.name !== INIT_NAME)];
  const volume = { name: TOKEN_VOLUME, projected: { sources: [{ serviceAccountToken: { audience: 'meshlet-control', expirationSeconds: 3600, path: 'token' } }] } };
  spec.volumes = [...((spec.volumes ?? []) as Obj[]).filter((v) => v?.name !== TOKEN_VOLUME), volume];
  meta.labels = { ...labels, [TLS_MODE_LABEL]: 'istio' };
  meta.annotations = { ...ann, [ANNOTATIONS.status]: JSON.stringify({ version: 1, initContainers: [INIT_NAME, SIDECAR_NAME], volumes: [TOKEN_VOLUME] }) };
}

/** The pod (metadata, spec) of a workload document, or null for other kinds. */
function podOf(v: Obj): { meta: Obj; spec: Obj } | null {
  if (v.kind === 'Pod') return { meta: (v.metadata ??= {}), spec: v.spec };
  if (TEMPLATE_KINDS.has(v.kind)) { const t = v.spec?.template; return t ? { meta: (t.metadata ??= {}), spec: t.spec } : null; }
  if (v.kind === 'CronJob') { const t = v.spec?.jobTemplate?.spec?.template; return t ? { meta: (t.metadata ??= {}), spec: t.spec } : null; }
  return null;
}

/** Inject into every workload of a (multi-document) manifest; returns the new YAML text. */
export function injectText(text: string, opts: InjectOptions): { text: string; injected: string[]; skipped: string[] } {
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: string[] = [];
  const injected: string[] = [];
  const skipped: string[] = [];
  list.forEach((doc, n) => {
    if (doc.errors.length > 0) throw new Error(`document ${n + 1}: invalid YAML: ${doc.errors[0].message.split('\n')[0]}`);
    const v = doc.toJS() as Obj | null;
    if (v === null || v === undefined) return;
    const name = `${v.kind ?? '?'}/${v.metadata?.name ?? '?'}`;
    const pod = typeof v === 'object' ? podOf(v) : null;
    if (pod) {
      // A workload's pods inherit the workload's opt-out annotation too.
      const meta = { ...pod.meta, annotations: { ...(v.kind !== 'Pod' ? v.metadata?.annotations : {}), ...pod.meta.annotations } };
      const why = skipReason(meta, pod.spec);
      if (why === 'no containers list in the pod spec') throw new Error(`document ${n + 1} (${name}): ${why}`);
      if (why) skipped.push(`${name}: ${why}`);
      else { injectPod(pod.meta, pod.spec, opts); injected.push(name); }
    }
    out.push(stringify(v, { lineWidth: 0 }));
  });
  return { text: out.join('---\n'), injected, skipped };
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet inject: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet inject -f <manifest.yaml|-> [--control-url <url>]', 'Print the manifest with the meshlet sidecar, its iptables init container and its token added to each workload (the same pod the admission webhook makes).', SPECS)); return 0; }
  const file = p.flags.filename as string | undefined;
  if (!file) { console.error('meshlet inject: -f <file> is required'); return 2; }
  let text: string;
  try { text = readFileSync(file === '-' ? 0 : file, 'utf8'); } catch (e) { console.error(`meshlet inject: ${file}: ${(e as Error).message}`); return 1; }
  try {
    const r = injectText(text, { controlUrl: p.flags['control-url'] as string, image: p.flags.image as string });
    for (const s of r.skipped) console.error(`meshlet inject: skipped ${s}`);
    if (r.injected.length === 0 && r.skipped.length === 0) console.error('meshlet inject: no Pod or workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) found; printed unchanged');
    process.stdout.write(r.text);
    return 0;
  } catch (e) {
    console.error(`meshlet inject: ${file}: ${(e as Error).message}`);
    return 1;
  }
}
