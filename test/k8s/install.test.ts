// `meshlet install`: one YAML stream with everything a cluster needs; the webhook's caBundle
// verifies the serving certificate in the Secret, for the Service's DNS name; the RBAC covers
// what the control server reads and writes; the Deployment runs the flags the CLI accepts.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { BIN } from '../control/lib.ts';

describe('meshlet install', () => {
  const r = spawnSync(process.execPath, [BIN, 'install', '--image', 'ghcr.io/example/meshlet:1.0', '--replicas', '2'], { encoding: 'utf8', timeout: 30_000 });
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS());
  const find = (kind: string, name?: string) => docs.find((d) => d.kind === kind && (!name || d.metadata.name === name));

  it('prints the namespace, CRDs, RBAC, Secrets, Deployment, Service and webhook configuration', () => {
    expect(r.status).toBe(0);
    expect(docs.map((d) => d.kind)).toEqual(['Namespace', 'CustomResourceDefinition', 'CustomResourceDefinition', 'CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding',
      'Secret', 'Secret', 'Deployment', 'Service', 'MutatingWebhookConfiguration']);
    expect(find('Namespace').metadata.name).toBe('meshlet-system');
    const dep = find('Deployment');
    expect(dep.spec.replicas).toBe(2);
    const c = dep.spec.template.spec.containers[0];
    expect(c.image).toBe('ghcr.io/example/meshlet:1.0');
    expect(c.args).toEqual(expect.arrayContaining(['control', '--kubernetes', '--bind', '0.0.0.0', '--webhook-port', '15017', '--sidecar-image', 'ghcr.io/example/meshlet:1.0']));
    const rules = find('ClusterRole').rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
    const can = (group: string, res: string, verb: string) => rules.some((x) => x.apiGroups.includes(group) && (x.resources.includes(res) || x.resources.includes('*')) && x.verbs.includes(verb));
    for (const [g, res] of [['', 'services'], ['', 'pods'], ['discovery.k8s.io', 'endpointslices'], ['networking.istio.io', 'virtualservices'], ['networking.istio.io', 'destinationrules'], ['networking.istio.io', 'serviceentries'], ['meshlet.io', 'dtabs'], ['gateway.networking.k8s.io', 'httproutes']]) {
      expect(can(g, res, 'list') && can(g, res, 'watch')).toBe(true);
    }
    expect(can('authentication.k8s.io', 'tokenreviews', 'create')).toBe(true);
    expect(can('', 'events', 'create')).toBe(true);
    expect(find('Role').rules[0]).toEqual({ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] });
  });

  it("the webhook's caBundle verifies the Secret's serving certificate for the Service name", () => {
    const hook = find('MutatingWebhookConfiguration').webhooks[0];
    expect(hook.clientConfig.service).toEqual({ name: 'meshlet-control', namespace: 'meshlet-system', path: '/inject', port: 443 });
    expect(hook.namespaceSelector).toEqual({ matchLabels: { 'meshlet-injection': 'enabled' } });
    expect(hook.rules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }]);
    const svc = find('Service', 'meshlet-control');
    expect(svc.spec.ports.find((p: any) => p.port === 443).targetPort).toBe(15017);
    const tls = find('Secret', 'meshlet-webhook-tls');
    expect(tls.type).toBe('kubernetes.io/tls');
    const ca = new X509Certificate(Buffer.from(hook.clientConfig.caBundle, 'base64'));
    const cert = new X509Certificate(Buffer.from(tls.data['tls.crt'], 'base64'));
    expect(ca.ca).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkHost('meshlet-control.meshlet-system.svc')).toBe('meshlet-control.meshlet-system.svc');
    expect(Buffer.from(find('Secret', 'meshlet-ops-token').data.token, 'base64').length).toBeGreaterThanOrEqual(24);
  });

  it('--istio-crds adds the Istio kinds; bad flags are clear errors', () => {
    const withIstio = spawnSync(process.execPath, [BIN, 'install', '--istio-crds'], { encoding: 'utf8', timeout: 30_000 });
    const names = parseAllDocuments(withIstio.stdout).map((d) => d.toJS()).filter((d) => d.kind === 'CustomResourceDefinition').map((d) => d.metadata.name);
    expect(names).toEqual(['dtabs.meshlet.io', 'canaries.meshlet.io', 'metrictemplates.meshlet.io', 'virtualservices.networking.istio.io', 'destinationrules.networking.istio.io', 'serviceentries.networking.istio.io',
      'authorizationpolicies.security.istio.io', 'peerauthentications.security.istio.io', 'requestauthentications.security.istio.io']);
    const bad = spawnSync(process.execPath, [BIN, 'install', '--namespace', 'Bad_NS'], { encoding: 'utf8', timeout: 30_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('not a valid namespace name');
  });
});
