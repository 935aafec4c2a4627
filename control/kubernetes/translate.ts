// Kubernetes objects -> meshlet resources, as pure functions (the informers feed them; tests call
// them directly too). A Service with its EndpointSlices and Pods becomes the ServiceEntry a user
// would have written by hand (so the compiler, its checks and the snapshot are the same as for
// the directory source); custom resources (Istio's, meshlet's) go through the same parser and
// schema checks as files.
import { parseResource, type Resource } from '../../proxy/config/resources.ts';
import { TLS_MODE_LABEL } from '../../proxy/config/compile.ts';

export type KObj = { apiVersion?: string; kind?: string; metadata?: Record<string, any>; spec?: any; status?: any; [k: string]: any };

/** The sidecar container's name (control/inject.ts): a pod with it is meshed. */
export const SIDECAR_CONTAINER = 'meshlet';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export const nsName = (o: KObj): string => `${o.metadata?.namespace ?? 'default'}/${o.metadata?.name}`;

function meshed(pod: KObj): boolean {
  const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c: KObj) => c?.name);
  return names.includes(SIDECAR_CONTAINER);
}

/**
 * EndpointSlice endpoint conditions (discovery.k8s.io/v1): `ready` unset means ready;
 * `serving` unset means the value of ready; `terminating` unset means false. Ready and not
 * terminating endpoints take traffic. Terminating ones drain: they leave the cluster (its pool
 * finishes their in-flight requests), except that a service with no ready endpoint at all falls
 * back to its serving-terminating ones, as kube-proxy does (ProxyTerminatingEndpoints, GA 1.28),
 * so a rollout's last replica still answers while it shuts down gracefully.
 */
function conditions(ep: KObj): { ready: boolean; serving: boolean; terminating: boolean } {
  const c = ep.conditions ?? {};
  const ready = c.ready ?? true;
  return { ready: ready === true, serving: (c.serving ?? ready) === true, terminating: c.terminating === true };
}

export interface ServiceTranslation { resources: Resource[]; problems: string[] }

/** Services + EndpointSlices + Pods -> one ServiceEntry per Service (host <name>.<ns>.svc.<domain>). */
export function servicesToEntries(services: KObj[], slices: KObj[], pods: KObj[], clusterDomain = 'cluster.local'): ServiceTranslation {
  const problems: string[] = [];
  const podByKey = new Map(pods.map((p) => [nsName(p), p]));
  const slicesBySvc = new Map<string, KObj[]>();
  for (const s of slices) {
    const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const k = `${s.metadata?.namespace ?? 'default'}/${svc}`;
    (slicesBySvc.get(k) ?? slicesBySvc.set(k, []).get(k)!).push(s);
  }
  const resources: Resource[] = [];
  for (const svc of [...services].sort((a, b) => nsName(a).localeCompare(nsName(b)))) {
    const ns = svc.metadata?.namespace ?? 'default';
    const name = svc.metadata?.name as string;
    // ExternalName Services are DNS aliases with no endpoints; Gateway API forbids them as parents too.
    if (svc.spec?.type === 'ExternalName') continue;
    const tcp = ((svc.spec?.ports ?? []) as KObj[]).filter((p) => (p.protocol ?? 'TCP') === 'TCP');
    if (tcp.length === 0) continue;
    // An unnamed port (allowed when a Service has one) is "http" here: ServiceEntry ports need names.
    const ports = tcp.map((p) => ({
      number: p.port as number, name: (p.name as string | undefined) || 'http', protocol: 'HTTP' as const,
      ...(typeof p.targetPort === 'number' ? { targetPort: p.targetPort } : {}),
      slicePortName: (p.name as string | undefined) ?? '',
    }));
    type Ep = { address: string; ports: Record<string, number>; labels: Record<string, string>; serviceAccount?: string; ready: boolean };
    const eps = new Map<string, Ep>();
    for (const slice of slicesBySvc.get(`${ns}/${name}`) ?? []) {
      if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') continue;   // FQDN slices: not pod endpoints
      const slicePorts = (slice.ports ?? []) as KObj[];
      for (const ep of (slice.endpoints ?? []) as KObj[]) {
        const c = conditions(ep);
        const usable = c.ready && !c.terminating;
        if (!usable && !(c.serving && c.terminating)) continue;
        const pod = ep.targetRef?.kind === 'Pod' ? podByKey.get(`${ep.targetRef.namespace ?? ns}/${ep.targetRef.name}`) : undefined;
        const labels: Record<string, string> = { ...(pod?.metadata?.labels ?? {}) };
        if (pod && meshed(pod) && labels[TLS_MODE_LABEL] === undefined) labels[TLS_MODE_LABEL] = 'istio';
        const portMap: Record<string, number> = {};
        for (const p of ports) {
          const sp = slicePorts.find((x) => (x.name ?? '') === p.slicePortName);
          if (sp && typeof sp.port === 'number') portMap[p.name] = sp.port;
        }
        for (const address of (ep.addresses ?? []) as string[]) {
          // The same endpoint in two slices (a slice being replaced): counted once, ready wins.
          const key = `${address}|${JSON.stringify(portMap)}`;
          const prev = eps.get(key);
          if (prev && prev.ready) continue;
          eps.set(key, {
            address, ports: portMap, labels, ready: usable,
            ...(pod ? { serviceAccount: (pod.spec?.serviceAccountName as string | undefined) || 'default' } : {}),
          });
        }
      }
    }
    const all = [...eps.values()];
    const chosen = all.some((e) => e.ready) ? all.filter((e) => e.ready) : all;
    const spec = {
      hosts: [`${name}.${ns}.svc.${clusterDomain}`],
      ports: ports.map(({ slicePortName: _s, ...p }) => p),
      resolution: 'STATIC',
      endpoints: chosen.sort((a, b) => a.address.localeCompare(b.address) || JSON.stringify(a.ports).localeCompare(JSON.stringify(b.ports))).map(({ ready: _r, ...e }) => e),
    };
    const errors: string[] = [];
    const r = parseResource(`apiserver:Service ${ns}/${name}`, { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name, namespace: ns }, spec }, errors);
    if (r) resources.push(r); else problems.push(...errors);
  }
  return { resources, problems };
}

/**
 * A custom resource as the API server returns it -> the document a file would hold: only what
 * a user writes (apiVersion, kind, metadata name/namespace/labels/annotations, spec); the
 * server's fields (uid, resourceVersion, managedFields, status ...) are not the user's config.
 */
export function customToDocument(o: KObj): Record<string, unknown> {
  const md = o.metadata ?? {};
  return {
    apiVersion: o.apiVersion, kind: o.kind,
    metadata: {
      name: md.name, namespace: md.namespace ?? 'default',
      ...(md.labels ? { labels: md.labels } : {}),
      ...(md.annotations ? { annotations: withoutServerAnnotations(md.annotations) } : {}),
    },
    spec: o.spec,
  };
}

function withoutServerAnnotations(a: Record<string, string>): Record<string, string> {
  // kubectl's last-applied copy is the whole object again: not config, and it can be large.
  const { 'kubectl.kubernetes.io/last-applied-configuration': _l, ...rest } = a;
  return rest;
}

/** A custom resource checked exactly as a file's document is; errors name the object. */
export function parseCustom(o: KObj, errors: string[]): Resource | undefined {
  return parseResource(`apiserver:${o.kind} ${nsName(o)}`, customToDocument(o), errors);
}
