// Fixtures for the Kubernetes tests: objects in the API server's shapes (Kubernetes 1.30-1.33),
// and a control server + proxy wired to the fake API server, all in this process on port 0.
import { KubeConfig } from '@kubernetes/client-node';
import { createServer, type Server } from 'node:http';
import { startControl, type RunningControl } from '../../control/main.ts';
import { waitFor } from '../control/lib.ts';
import { startProxy, type RunningProxy } from '../../proxy/main.ts';
import { startControlClient } from '../../proxy/xds/client.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { configDir } from '../control/lib.ts';
import type { FakeApiServer, KObj } from './fake-apiserver.ts';

export function kubeConfigFor(api: FakeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return kc;
}

export function service(ns: string, name: string, ports: Array<{ port: number; name?: string; targetPort?: number | string }>): KObj {
  return {
    apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, labels: { app: name } },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', selector: { app: name }, ports: ports.map((p) => ({ protocol: 'TCP', targetPort: p.port, ...p })) },
  };
}

export function pod(ns: string, name: string, labels: Record<string, string>, opts: { ip?: string; sa?: string; sidecar?: boolean } = {}): KObj {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels },
    spec: {
      serviceAccountName: opts.sa ?? 'default',
      containers: [{ name: 'app', image: 'app:1' }, ...(opts.sidecar ? [] : [])],
      ...(opts.sidecar ? { initContainers: [{ name: 'meshlet', image: 'meshlet:1', restartPolicy: 'Always' }] } : {}),
    },
    status: { phase: 'Running', podIP: opts.ip ?? '127.0.0.1' },
  };
}

export interface SliceEndpoint { ip?: string; pod: string; ready?: boolean; serving?: boolean; terminating?: boolean }

/** An EndpointSlice as the EndpointSlice controller writes it. */
export function slice(ns: string, svc: string, name: string, portName: string | undefined, port: number, eps: SliceEndpoint[]): KObj {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    ports: [{ ...(portName !== undefined ? { name: portName } : {}), port, protocol: 'TCP' }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip ?? '127.0.0.1'],
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
      targetRef: { kind: 'Pod', namespace: ns, name: e.pod }, nodeName: 'node-1',
    })),
  };
}

/** An HTTP server answering with its name (the "pod"). */
export async function podServer(name: string): Promise<{ server: Server; port: number; hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => { res.writeHead(200, { 'content-type': 'text/plain', 'x-pod': name }); res.end(name); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    server, port: (server.address() as { port: number }).port, hits: () => hits,
    close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}

export async function controlFor(api: FakeApiServer, files: Record<string, string> = {}, extra: Record<string, unknown> = {}): Promise<RunningControl> {
  return startControl({
    configDir: configDir(files), port: 0, apiPort: 0, logger: createLogger('silent'),
    kubernetes: { kc: kubeConfigFor(api), debounceMs: 10 }, dir: { pollMs: 50, debounceMs: 20, settleMs: 20 }, ...extra,
  });
}

/** A proxy in `namespace` following the control server. */
/**
 * A proxy in `namespace` following the control server, authenticated by a service-account token
 * the fake API server's TokenReview accepts (audience meshlet-control), as an injected pod's is.
 */
export async function proxyIn(control: RunningControl, namespace: string, nodeId: string, api?: FakeApiServer): Promise<{ proxy: RunningProxy; stop(): Promise<void> }> {
  const log = createLogger('silent');
  let token: string | undefined;
  if (api) { token = `sa-token-${nodeId}`; api.addToken(token, { namespace, serviceAccount: 'default', audiences: ['meshlet-control'], podName: nodeId }); }
  const proxy = await startProxy({ outboundPort: 0, inboundPort: 0, adminPort: 0, logger: log, namespace } as never);
  const client = startControlClient(proxy as never, { url: `http://127.0.0.1:${control.ports.discovery}`, nodeId, labels: {}, log, token });
  return { proxy, async stop() { await client.stop(); await proxy.drain(0); } };
}

/** waitFor with a generous default: these tests share two cores with the rest of the suite. */
export function waitLong<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> {
  return waitFor(what, fn, timeoutMs);
}
