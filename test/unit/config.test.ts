// Resource validation: every error names file, resource and field; nothing is silently ignored.
import { describe, expect, it } from 'vitest';
import { parseResourceText, ConfigError } from '../../proxy/config/resources.ts';
import { compile, hostAliases, ISTIO_DEFAULT_RETRY } from '../../proxy/config/compile.ts';
import { parseDuration } from '../../proxy/config/duration.ts';

function build(yaml: string) {
  const errors: string[] = [];
  const rs = parseResourceText('m.yaml', yaml, errors);
  if (errors.length) throw new ConfigError(errors);
  return compile(rs, { version: '1', source: 'test' });
}

function errorsOf(yaml: string): string[] {
  try { build(yaml); } catch (e) { if (e instanceof ConfigError) return e.errors; throw e; }
  return [];
}

const SE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews }
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{ number: 9080, name: http }]
  endpoints:
    - { address: 127.0.0.1, ports: { http: 1001 }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: 1002 }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`;

const vs = (http: string) => `${SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
${http}`;

describe('validation errors name file, resource and field', () => {
  const cases: Array<[string, string, string]> = [
    ['unknown field', vs('    - route: [{ destination: { host: reviews } }]\n      retires: { attempts: 1 }\n'), 'm.yaml (document 3): VirtualService/reviews: spec.http[0].retires: unknown field'],
    ['weights not summing to 100', vs('    - route:\n        - { destination: { host: reviews, subset: v1 }, weight: 50 }\n        - { destination: { host: reviews, subset: v2 }, weight: 40 }\n'), 'm.yaml (document 3): VirtualService/reviews: spec.http[0].route: weights sum to 90, must be 100'],
    ['undefined subset', vs('    - route: [{ destination: { host: reviews, subset: v9 } }]\n'), 'm.yaml (document 3): VirtualService/reviews: spec.http[0].route[0].destination.subset: subset "v9" is not defined by a DestinationRule for host "reviews.default.svc.cluster.local"'],
    ['bad regex', vs('    - match: [{ uri: { regex: "(unclosed" } }]\n      route: [{ destination: { host: reviews } }]\n'), 'm.yaml (document 3): VirtualService/reviews: spec.http[0].match[0].uri.regex: invalid regex'],
    ['unknown destination host', vs('    - route: [{ destination: { host: nope } }]\n'), 'spec.http[0].route[0].destination.host: no ServiceEntry defines host "nope"'],
    ['bad duration', vs('    - route: [{ destination: { host: reviews } }]\n      timeout: 5 seconds\n'), 'spec.http[0].timeout: invalid duration "5 seconds"'],
    ['wrong type', vs('    - route: [{ destination: { host: reviews }, weight: "100" }]\n'), 'spec.http[0].route[0].weight: must be an integer'],
    ['two of exact/prefix/regex', vs('    - match: [{ uri: { exact: /a, prefix: /a } }]\n      route: [{ destination: { host: reviews } }]\n'), 'spec.http[0].match[0].uri: exactly one of exact, prefix, regex is required'],
    ['unknown retry condition', vs('    - route: [{ destination: { host: reviews } }]\n      retries: { attempts: 2, retryOn: "5xx,sometimes" }\n'), 'spec.http[0].retries.retryOn: unknown retry condition "sometimes"'],
    ['unknown kind', 'apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: { name: g }\nspec: {}\n', 'm.yaml: Gateway/g: kind: unknown kind "Gateway"'],
    ['missing required field', 'apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: s }\nspec: { hosts: [a] }\n', 'm.yaml: ServiceEntry/s: spec.ports: is required'],
    ['invalid YAML', 'kind: [unclosed\n', 'm.yaml: invalid YAML'],
    ['two DestinationRules for one host', `${SE}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: again }\nspec: { host: reviews.default.svc.cluster.local }\n`, 'DestinationRule/again: spec.host: host "reviews.default.svc.cluster.local" already has DestinationRule/reviews'],
  ];
  for (const [name, yaml, want] of cases) {
    it(name, () => {
      const errs = errorsOf(yaml);
      expect(errs.length, 'expected an error').toBeGreaterThan(0);
      expect(errs.join('\n')).toContain(want);
    });
  }
});

describe('compiled snapshot', () => {
  it('names clusters the Istio way and applies Istio defaults', () => {
    const s = build(vs('    - route:\n        - { destination: { host: reviews, subset: v1 }, weight: 80 }\n        - { destination: { host: reviews, subset: v2 }, weight: 20 }\n'));
    expect(s.clusters.map((c) => c.name).sort()).toEqual([
      'outbound|9080|v1|reviews.default.svc.cluster.local',
      'outbound|9080|v2|reviews.default.svc.cluster.local',
      'outbound|9080||reviews.default.svc.cluster.local',
    ]);
    const v1 = s.clusters.find((c) => c.subset === 'v1')!;
    expect(v1.endpoints).toEqual([{ address: '127.0.0.1', port: 1001, labels: { version: 'v1' } }]);
    expect(v1.lb).toBe('LEAST_REQUEST');
    expect(v1.connectionPool.maxConnections).toBe(4294967295);
    expect(v1.connectionPool.connectTimeoutMs).toBe(10_000);
    expect(v1.outlier).toBeUndefined();
    const route = s.virtualHosts.find((v) => v.name === 'default/reviews')!.routes[0];
    expect(route.retries).toEqual(ISTIO_DEFAULT_RETRY);
    expect(route.timeoutMs).toBeUndefined();
    expect(s.dtab).toBe('/srv => /#/meshlet; /svc => /srv;');
    expect(s.hash).toMatch(/^[0-9a-f]{16}$/);
  });

  it('the same content hashes the same; a weight change does not', () => {
    const a = build(vs('    - route: [{ destination: { host: reviews, subset: v1 } }]\n'));
    const b = build(vs('    - route: [{ destination: { host: reviews, subset: v1 } }]\n'));
    const c = build(vs('    - route: [{ destination: { host: reviews, subset: v2 } }]\n'));
    expect(a.hash).toBe(b.hash);
    expect(a.hash).not.toBe(c.hash);
  });

  it('outlier defaults follow Istio: 5 consecutive 5xx, 10s, 30s, 10 %, minHealthPercent 0', () => {
    const s = build(SE.replace('  subsets:', '  trafficPolicy: { outlierDetection: {} }\n  subsets:'));
    const od = s.clusters[0].outlier!;
    expect(od).toMatchObject({ consecutive5xx: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10, minHealthPercent: 0, enforceGateway: false });
  });

  it('split local-origin errors without a threshold get Envoy\'s default of 5, enforced', () => {
    const s = build(SE.replace('  subsets:', '  trafficPolicy: { outlierDetection: { splitExternalLocalOriginErrors: true } }\n  subsets:'));
    expect(s.clusters[0].outlier).toMatchObject({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 5 });
  });

  it('retryOn status codes become retriable-status-codes', () => {
    const s = build(vs('    - route: [{ destination: { host: reviews } }]\n      retries: { attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,503" }\n'));
    const r = s.virtualHosts.find((v) => v.name === 'default/reviews')!.routes[0].retries!;
    expect(r).toEqual({ attempts: 3, perTryTimeoutMs: 2000, retryOn: 'gateway-error,retriable-status-codes', retriableStatusCodes: [503] });
  });

  it('host aliases of Kubernetes FQDNs', () => {
    expect(hostAliases('Reviews.Default.svc.cluster.local')).toEqual(['reviews.default.svc.cluster.local', 'reviews', 'reviews.default', 'reviews.default.svc']);
    expect(hostAliases('api.example.com')).toEqual(['api.example.com']);
  });

  it('durations', () => {
    expect(parseDuration('1s')).toBe(1000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('0.5s')).toBe(500);
    expect(parseDuration('3m')).toBe(180_000);
    expect(parseDuration('5')).toBeUndefined();
  });
});
