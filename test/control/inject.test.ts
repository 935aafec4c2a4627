// `meshlet inject`: the sidecar container added to Kubernetes workloads, idempotently.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { injectText } from '../../control/inject.ts';
import { BIN, configDir } from './lib.ts';

const DEPLOY = `apiVersion: apps/v1
kind: Deployment
metadata: { name: reviews-v2 }
spec:
  selector: { matchLabels: { app: reviews, version: v2 } }
  template:
    metadata: { labels: { app: reviews, version: v2 } }
    spec:
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

const opts = { controlUrl: 'http://meshlet-control:15010', image: 'meshlet:latest' };

describe('meshlet inject', () => {
  it('adds the meshlet sidecar with the control URL, service, version label and app port; other documents pass through', () => {
    const r = injectText(DEPLOY, opts);
    expect(r.injected).toEqual(['Deployment/reviews-v2']);
    const [deploy, svc] = parseAllDocuments(r.text).map((d) => d.toJS());
    const containers = deploy.spec.template.spec.containers;
    expect(containers.map((c: any) => c.name)).toEqual(['reviews', 'meshlet']);
    const m = containers[1];
    expect(m.image).toBe('meshlet:latest');
    expect(m.args).toEqual(['proxy', '--control', 'http://meshlet-control:15010', '--node-id', '$(POD_NAME)', '--bind', '0.0.0.0', '--advertise-address', '$(POD_IP)', '--service', 'reviews', '--labels', 'version=v2', '--app-port', '9080']);
    expect(m.ports.map((p: any) => p.containerPort)).toEqual([15001, 15006, 15000]);
    expect(m.env).toEqual([
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    ]);
    expect(m.securityContext).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false });
    expect(m.securityContext.runAsUser).toBeGreaterThan(0);
    expect(svc).toEqual({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'reviews' }, spec: { ports: [{ port: 9080 }] } });
  });

  it('is idempotent: injecting twice gives the same manifest, one sidecar', () => {
    const once = injectText(DEPLOY, opts).text;
    const twice = injectText(once, opts).text;
    expect(twice).toBe(once);
    expect(twice.match(/name: meshlet$/gm)).toHaveLength(1);
  });

  it('handles a bare Pod, and names the document when the app label or a containerPort is missing', () => {
    const pod = 'apiVersion: v1\nkind: Pod\nmetadata: { name: p, labels: { app: ratings } }\nspec:\n  containers: [{ name: r, image: r, ports: [{ containerPort: 8080 }] }]\n';
    const out = parseAllDocuments(injectText(pod, opts).text)[0].toJS();
    expect(out.spec.containers[1].args).toEqual(['proxy', '--control', opts.controlUrl, '--node-id', '$(POD_NAME)', '--bind', '0.0.0.0', '--advertise-address', '$(POD_IP)', '--service', 'ratings', '--app-port', '8080']);
    expect(() => injectText(pod.replace('app: ratings', 'tier: x'), opts)).toThrow(/document 1 \(Pod\/p\): the pod template needs an 'app'/);
    expect(() => injectText(pod.replace(', ports: [{ containerPort: 8080 }]', ''), opts)).toThrow(/document 1 \(Pod\/p\): no containerPort/);
  });

  it('runs as `meshlet inject -f <file> --control-url <url>`', () => {
    const dir = configDir({});
    const file = join(dir, 'deploy.yaml');
    writeFileSync(file, DEPLOY);
    const r = spawnSync(process.execPath, [BIN, 'inject', '-f', file, '--control-url', 'http://cp:15010'], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('- http://cp:15010');
    expect(r.stdout).toBe(injectText(DEPLOY, { controlUrl: 'http://cp:15010', image: 'meshlet:latest' }).text);
    const bad = spawnSync(process.execPath, [BIN, 'inject', '-f', join(dir, 'missing.yaml')], { encoding: 'utf8', timeout: 15_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('missing.yaml');
  });
});
