// Injection: `meshlet inject` and the mutating admission webhook give the same, working pod:
// the iptables init container (the only one with NET_ADMIN), the sidecar as a native sidecar
// (restartPolicy Always, startup/readiness/liveness probes on the health port), outbound and
// admin on localhost, resources, the downward API, the projected token; opt-outs honoured. The
// webhook is reached over HTTPS with the CA `meshlet install` would put in its caBundle, with
// an AdmissionReview in kube-apiserver's shape, and its JSONPatch is applied here (RFC 6902).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { injectText, injectPod } from '../../control/inject.ts';
import { makeServingCerts } from '../../control/kubernetes/certs.ts';
import { startControl, type RunningControl } from '../../control/main.ts';
import { createLogger } from '../../proxy/telemetry/log.ts';
import { BIN, configDir } from '../control/lib.ts';
import { podAdmissionReview } from './fake-apiserver.ts';

const DEPLOY = `apiVersion: apps/v1
kind: Deployment
metadata: { name: reviews-v2 }
spec:
  selector: { matchLabels: { app: reviews, version: v2 } }
  template:
    metadata:
      labels: { app: reviews, version: v2 }
      annotations: { traffic.sidecar.meshlet.io/excludeOutboundPorts: "5432" }
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
        - name: reviews
          image: reviews:2
          ports: [{ containerPort: 9080 }]
---
apiVersion: v1
kind: Service
metadata: { name: reviews }
spec: { ports: [{ port: 9080 }] }
`;

const opts = { controlUrl: 'http://meshlet-control.meshlet-system:15010', image: 'meshlet:1' };

/** RFC 6902 add/replace/remove on object members (what the webhook emits). */
function applyPatch(doc: any, ops: Array<{ op: string; path: string; value?: unknown }>): any {
  const out = structuredClone(doc);
  for (const o of ops) {
    const keys = o.path.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = keys.pop()!;
    let t = out;
    for (const k of keys) { if (t[k] === undefined) throw new Error(`path ${o.path}: ${k} missing`); t = t[k]; }
    if (o.op === 'add') t[last] = o.value;
    else if (o.op === 'replace') { if (!(last in t)) throw new Error(`replace of missing ${o.path}`); t[last] = o.value; }
    else if (o.op === 'remove') { if (!(last in t)) throw new Error(`remove of missing ${o.path}`); delete t[last]; }
    else throw new Error(`op ${o.op}`);
  }
  return out;
}

describe('meshlet inject', () => {
  it('produces a pod whose traffic goes through the sidecar and whose sidecar can join the control server', () => {
    const r = injectText(DEPLOY, opts);
    expect(r.injected).toEqual(['Deployment/reviews-v2']);
    const [deploy, svc] = parseAllDocuments(r.text).map((d) => d.toJS());
    const t = deploy.spec.template;
    expect(t.spec.containers.map((c: any) => c.name)).toEqual(['reviews']);
    expect(t.spec.initContainers.map((c: any) => c.name)).toEqual(['meshlet-init', 'meshlet']);
    const [init, sc] = t.spec.initContainers;
    // The init step: capture rules, exclusions (annotation), the only container with NET_ADMIN.
    expect(init.args).toEqual(['iptables', '--proxy-uid', '1337', '--proxy-gid', '1337', '--outbound-port', '15001', '--inbound-port', '15006',
      '--inbound-ports', '9080', '--exclude-inbound-ports', '15021', '--exclude-outbound-ports', '5432']);
    expect(init.securityContext.capabilities.add).toEqual(['NET_ADMIN', 'NET_RAW']);
    expect(sc.securityContext.capabilities).toEqual({ drop: ['ALL'] });
    expect(sc.securityContext).toMatchObject({ runAsUser: 1337, runAsNonRoot: true, allowPrivilegeEscalation: false });
    // Native sidecar: starts first, holds the app until ready, stops last.
    expect(sc.restartPolicy).toBe('Always');
    expect(sc.startupProbe.httpGet).toEqual({ path: '/healthz/ready', port: 15021 });
    expect(sc.readinessProbe.httpGet).toEqual({ path: '/healthz/ready', port: 15021 });
    expect(sc.livenessProbe.tcpSocket).toEqual({ port: 15021 });
    expect(sc.resources).toEqual({ requests: { cpu: '100m', memory: '64Mi' }, limits: { memory: '256Mi' } });
    // Outbound and admin on localhost only; inbound on the pod IP; endpoints from EndpointSlices.
    expect(sc.args).toEqual(['proxy', '--control', opts.controlUrl, '--control-token-file', '/var/run/secrets/meshlet/token',
      '--node-id', '$(POD_NAME).$(POD_NAMESPACE)', '--namespace', '$(POD_NAMESPACE)', '--service', 'reviews',
      '--bind', '127.0.0.1', '--inbound-bind', '0.0.0.0', '--health-port', '15021', '--register=false', '--inbound-dtab-headers', 'strip', '--labels', 'version=v2', '--app-port', '9080']);
    expect(sc.env.map((e: any) => [e.name, e.valueFrom.fieldRef.fieldPath])).toEqual([
      ['POD_NAME', 'metadata.name'], ['POD_NAMESPACE', 'metadata.namespace'], ['POD_IP', 'status.podIP'], ['SERVICE_ACCOUNT', 'spec.serviceAccountName']]);
    // The projected token the control server checks by TokenReview: no hand-made secret.
    expect(t.spec.volumes).toEqual([{ name: 'meshlet-token', projected: { sources: [{ serviceAccountToken: { audience: 'meshlet-control', expirationSeconds: 3600, path: 'token' } }] } }]);
    expect(sc.volumeMounts).toEqual([{ name: 'meshlet-token', mountPath: '/var/run/secrets/meshlet', readOnly: true }]);
    expect(t.metadata.labels['security.istio.io/tlsMode']).toBe('istio');
    // The Service is untouched: interception makes a targetPort change unnecessary.
    expect(svc).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'reviews' }, spec: { ports: [{ port: 9080 }] } });
  });

  it('is idempotent, honours the opt-out annotation and skips hostNetwork pods', () => {
    const once = injectText(DEPLOY, opts).text;
    expect(injectText(once, opts).text).toBe(once);
    const pod = 'apiVersion: v1\nkind: Pod\nmetadata: { name: p, labels: { app: ratings } }\nspec:\n  containers: [{ name: r, image: r, ports: [{ containerPort: 8080 }] }]\n';
    const optOut = pod.replace('labels: { app: ratings }', 'labels: { app: ratings }, annotations: { sidecar.meshlet.io/inject: "false" }');
    const r1 = injectText(optOut, opts);
    expect(r1.injected).toEqual([]);
    expect(r1.skipped[0]).toMatch(/sidecar.meshlet.io\/inject/);
    const r2 = injectText(pod.replace('spec:\n', 'spec:\n  hostNetwork: true\n'), opts);
    expect(r2.skipped[0]).toMatch(/hostNetwork/);
    // No app label: the pod's name names the service; no containerPort: no inbound capture.
    const bare = parseAllDocuments(injectText(pod.replace('labels: { app: ratings }', 'labels: {}').replace(', ports: [{ containerPort: 8080 }]', ''), opts).text)[0].toJS();
    expect(bare.spec.initContainers[1].args).toContain('p');
    expect(bare.spec.initContainers[0].args).toContain('--inbound-ports');
    expect(bare.spec.initContainers[0].args[bare.spec.initContainers[0].args.indexOf('--inbound-ports') + 1]).toBe('');
  });

  it('runs as `meshlet inject -f <file>`', () => {
    const dir = configDir({});
    const file = join(dir, 'deploy.yaml');
    writeFileSync(file, DEPLOY);
    const r = spawnSync(process.execPath, [BIN, 'inject', '-f', file, '--control-url', 'http://cp:15010', '--image', 'meshlet:1'], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(injectText(DEPLOY, { controlUrl: 'http://cp:15010', image: 'meshlet:1' }).text);
    const bad = spawnSync(process.execPath, [BIN, 'inject', '-f', join(dir, 'missing.yaml')], { encoding: 'utf8', timeout: 15_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('missing.yaml');
  });
});

describe('the mutating admission webhook (HTTPS, AdmissionReview v1)', () => {
  let control: RunningControl;
  let caPem: string;
  beforeAll(async () => {
    const certs = await makeServingCerts(['meshlet-control.meshlet-system.svc', 'localhost']);
    caPem = certs.caPem;
    control = await startControl({ configDir: configDir({}), port: 0, apiPort: 0, logger: createLogger('silent'), webhook: { port: 0, certPem: certs.certPem, keyPem: certs.keyPem, inject: opts } });
  });
  afterAll(async () => { await control?.close(); });

  const review = (body: unknown): Promise<any> => new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const r = request({ host: '127.0.0.1', port: control.ports.webhook, servername: 'meshlet-control.meshlet-system.svc', ca: caPem, method: 'POST', path: '/inject?timeout=10s',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => { try { resolve({ status: res.statusCode, json: JSON.parse(b) }); } catch (e) { reject(e); } });
    });
    r.on('error', reject);
    r.end(text);
  });

  it("the webhook's JSONPatch produces the pod `meshlet inject` produces", async () => {
    const template = parseAllDocuments(DEPLOY)[0].toJS().spec.template;
    const pod = { metadata: { generateName: 'reviews-v2-5d8f-', ...template.metadata }, spec: template.spec };
    const req = podAdmissionReview(pod, 'bookinfo');
    const r = await review(req);
    expect(r.status).toBe(200);
    expect(r.json.apiVersion).toBe('admission.k8s.io/v1');
    expect(r.json.kind).toBe('AdmissionReview');
    expect(r.json.response.uid).toBe((req.request as any).uid);
    expect(r.json.response.allowed).toBe(true);
    expect(r.json.response.patchType).toBe('JSONPatch');
    const patch = JSON.parse(Buffer.from(r.json.response.patch, 'base64').toString());
    const patched = applyPatch((req.request as any).object, patch);
    // What `meshlet inject` makes of the same pod.
    const expected = structuredClone((req.request as any).object);
    injectPod(expected.metadata, expected.spec, opts);
    expect(patched).toEqual(expected);
    expect(patched.spec.initContainers.map((c: any) => c.name)).toEqual(['meshlet-init', 'meshlet']);
    // And what the CLI prints for the Deployment has the same pod template.
    const cli = parseAllDocuments(injectText(DEPLOY, opts).text)[0].toJS().spec.template;
    expect(patched.spec).toEqual(cli.spec);
  });

  it('allows an opted-out pod, a hostNetwork pod and a non-Pod review unchanged (never blocks)', async () => {
    const base = { metadata: { name: 'x', labels: { app: 'x' } }, spec: { containers: [{ name: 'x', image: 'x' }] } };
    for (const pod of [
      { ...base, metadata: { ...base.metadata, annotations: { 'sidecar.meshlet.io/inject': 'false' } } },
      { ...base, spec: { ...base.spec, hostNetwork: true } },
    ]) {
      const r = await review(podAdmissionReview(pod, 'ns'));
      expect(r.json.response.allowed).toBe(true);
      expect(r.json.response.patch).toBeUndefined();
    }
    const odd = await review({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u1', kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, object: {} } });
    expect(odd.json.response).toMatchObject({ uid: 'u1', allowed: true });
    const bad = await new Promise<number>((resolve) => {
      const r = request({ host: '127.0.0.1', port: control.ports.webhook, ca: caPem, servername: 'localhost', method: 'POST', path: '/inject', headers: { 'content-type': 'application/json' } }, (res) => { res.resume(); resolve(res.statusCode!); });
      r.end('{not json');
    });
    expect(bad).toBe(400);
  });
});
