// `meshlet install`: everything a cluster needs, printed as one YAML stream, so
// `meshlet install | kubectl apply -f -` is the whole setup:
//   namespace meshlet-system; meshlet's CRDs (and, with --istio-crds, Istio's networking kinds
//   for a cluster without Istio); the control ServiceAccount and its RBAC (read discovery and
//   config kinds cluster-wide, create Events and TokenReviews, Leases in its namespace); the ops
//   token and the webhook TLS Secrets; the control Deployment (2 replicas) and Service; the
//   MutatingWebhookConfiguration with its caBundle.
// The webhook CA is made anew on each run: re-applying rotates the Secret and the caBundle
// together; restart the control Deployment so it serves the new certificate.
import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import { helpText, parseFlags, type FlagSpec } from '../../cli/flags.ts';
import { makeServingCerts } from './certs.ts';
import { INJECTION_LABEL } from '../inject.ts';

export interface InstallOptions {
  image: string;
  namespace: string;
  replicas: number;
  istioCrds: boolean;
  certs: { caPem: string; certPem: string; keyPem: string };
  opsToken: string;
}

type Obj = Record<string, unknown>;

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A CRD whose spec is checked by meshlet (exactly as files are), not by an OpenAPI schema here. */
function crd(group: string, kind: string, plural: string, versions: string[], shortNames: string[] = []): Obj {
  return {
    apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}`, labels: { 'app.kubernetes.io/part-of': 'meshlet' } },
    spec: {
      group, scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List`, ...(shortNames.length ? { shortNames } : {}) },
      versions: versions.map((v, i) => ({
        name: v, served: true, storage: i === 0,
        schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }, status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } } },
        subresources: { status: {} },
      })),
    },
  };
}

export function manifests(o: InstallOptions): Obj[] {
  const ns = o.namespace;
  const labels = { app: 'meshlet-control', 'app.kubernetes.io/part-of': 'meshlet' };
  const docs: Obj[] = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'app.kubernetes.io/part-of': 'meshlet' } } },
    crd('meshlet.io', 'Dtab', 'dtabs', ['v1alpha1']),
    crd('meshlet.io', 'Canary', 'canaries', ['v1alpha1'], ['canary']),
    crd('meshlet.io', 'MetricTemplate', 'metrictemplates', ['v1alpha1']),
  ];
  if (o.istioCrds) {
    // For a cluster without Istio only: applying these over Istio's own CRDs would replace them.
    docs.push(
      crd('networking.istio.io', 'VirtualService', 'virtualservices', ['v1', 'v1beta1'], ['vs']),
      crd('networking.istio.io', 'DestinationRule', 'destinationrules', ['v1', 'v1beta1'], ['dr']),
      crd('networking.istio.io', 'ServiceEntry', 'serviceentries', ['v1', 'v1beta1'], ['se']),
      crd('security.istio.io', 'AuthorizationPolicy', 'authorizationpolicies', ['v1', 'v1beta1'], ['ap']),
      crd('security.istio.io', 'PeerAuthentication', 'peerauthentications', ['v1', 'v1beta1'], ['pa']),
      crd('security.istio.io', 'RequestAuthentication', 'requestauthentications', ['v1', 'v1beta1'], ['ra']),
    );
  }
  docs.push(
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'meshlet-control', namespace: ns, labels } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'meshlet-control', labels },
      rules: [
        { apiGroups: [''], resources: ['services', 'pods', 'namespaces'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['networking.istio.io'], resources: ['virtualservices', 'destinationrules', 'serviceentries'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['security.istio.io'], resources: ['authorizationpolicies', 'peerauthentications', 'requestauthentications'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['meshlet.io'], resources: ['*'], verbs: ['get', 'list', 'watch'] },
        // Canaries written for Flagger (flagger.app/v1beta1) are read too, where Flagger's CRDs exist.
        { apiGroups: ['flagger.app'], resources: ['canaries', 'metrictemplates'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['gateway.networking.k8s.io'], resources: ['httproutes'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'meshlet-control', labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'meshlet-control' },
      subjects: [{ kind: 'ServiceAccount', name: 'meshlet-control', namespace: ns }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'meshlet-control-leader', namespace: ns, labels },
      rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'meshlet-control-leader', namespace: ns, labels },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'meshlet-control-leader' },
      subjects: [{ kind: 'ServiceAccount', name: 'meshlet-control', namespace: ns }],
    },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'meshlet-ops-token', namespace: ns, labels }, type: 'Opaque', data: { token: b64(o.opsToken) } },
    {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'meshlet-webhook-tls', namespace: ns, labels }, type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(o.certs.certPem), 'tls.key': b64(o.certs.keyPem), 'ca.crt': b64(o.certs.caPem) },
    },
    {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'meshlet-control', namespace: ns, labels },
      spec: {
        replicas: o.replicas, selector: { matchLabels: { app: 'meshlet-control' } },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: 'meshlet-control',
            securityContext: { runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, fsGroup: 1337 },
            containers: [{
              name: 'control', image: o.image,
              args: ['control', '--kubernetes', '--config-dir', '/etc/meshlet/config', '--bind', '0.0.0.0', '--token-file', '/etc/meshlet/ops/token',
                '--webhook-port', '15017', '--webhook-tls-dir', '/etc/meshlet/webhook', '--sidecar-image', o.image,
                '--sidecar-control-url', `http://meshlet-control.${ns}:15010`, '--lease-namespace', ns],
              env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
              ports: [{ name: 'discovery', containerPort: 15010 }, { name: 'ops', containerPort: 15014 }, { name: 'webhook', containerPort: 15017 }],
              readinessProbe: { httpGet: { path: '/ready', port: 15014 }, periodSeconds: 5 },
              livenessProbe: { httpGet: { path: '/healthz', port: 15014 }, periodSeconds: 10 },
              resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              volumeMounts: [
                { name: 'config', mountPath: '/etc/meshlet/config' },
                { name: 'ops-token', mountPath: '/etc/meshlet/ops', readOnly: true },
                { name: 'webhook-tls', mountPath: '/etc/meshlet/webhook', readOnly: true },
              ],
            }],
            volumes: [
              // Policy comes from the API server (CRDs); the directory holds the ops API's file. A
              // git-sync sidecar or a ConfigMap can be mounted here instead, for a Flux-style repo.
              { name: 'config', emptyDir: {} },
              { name: 'ops-token', secret: { secretName: 'meshlet-ops-token' } },
              { name: 'webhook-tls', secret: { secretName: 'meshlet-webhook-tls' } },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'meshlet-control', namespace: ns, labels },
      spec: {
        selector: { app: 'meshlet-control' },
        ports: [
          { name: 'http-discovery', port: 15010, targetPort: 15010 },
          { name: 'http-ops', port: 15014, targetPort: 15014 },
          { name: 'https-webhook', port: 443, targetPort: 15017 },
        ],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'meshlet-sidecar-injector', labels },
      webhooks: [{
        name: 'sidecar-injector.meshlet.io',
        clientConfig: { service: { name: 'meshlet-control', namespace: ns, path: '/inject', port: 443 }, caBundle: b64(o.certs.caPem) },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
        namespaceSelector: { matchLabels: { [INJECTION_LABEL]: 'enabled' } },
        // As Istio: a pod in an injected namespace is not created unmeshed while the injector is
        // down. The handler itself never refuses: what it cannot inject it allows with a warning.
        failurePolicy: 'Fail', sideEffects: 'None', admissionReviewVersions: ['v1'], timeoutSeconds: 10, reinvocationPolicy: 'Never',
      }],
    },
  );
  return docs;
}

export function render(docs: Obj[]): string {
  return docs.map((d) => stringify(d, { lineWidth: 0 })).join('---\n');
}

const SPECS: FlagSpec[] = [
  { name: 'image', type: 'string', default: 'meshlet:latest', help: 'meshlet image for the control server, sidecars and init containers' },
  { name: 'namespace', type: 'string', default: 'meshlet-system', help: 'namespace of the control server' },
  { name: 'replicas', type: 'number', default: 2, help: 'control server replicas (discovery from any; ops writes behind a Lease)' },
  { name: 'istio-crds', type: 'boolean', default: false, help: "also print Istio's VirtualService/DestinationRule/ServiceEntry CRDs (only for a cluster without Istio)" },
];

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet install: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet install [flags] | kubectl apply -f -', 'Print the manifests that install meshlet on a cluster.', SPECS)); return 0; }
  const ns = p.flags.namespace as string;
  const replicas = p.flags.replicas as number;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) { console.error(`meshlet install: --namespace '${ns}' is not a valid namespace name`); return 2; }
  if (!Number.isInteger(replicas) || replicas < 1) { console.error('meshlet install: --replicas must be a whole number >= 1'); return 2; }
  const certs = await makeServingCerts([`meshlet-control.${ns}.svc`, `meshlet-control.${ns}.svc.cluster.local`, `meshlet-control.${ns}`]);
  process.stdout.write(render(manifests({ image: p.flags.image as string, namespace: ns, replicas, istioCrds: p.flags['istio-crds'] as boolean, certs, opsToken: randomBytes(24).toString('base64url') })));
  return 0;
}
