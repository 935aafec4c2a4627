// ServiceEntry resolution: STATIC needs IP addresses, DNS resolves names (or the hosts), NONE is
// refused with a reason; errors name file, resource and field (Istio's ValidateServiceEntry rules).
import { describe, expect, it } from 'vitest';
import { parseResourceText, ConfigError } from '../../proxy/config/resources.ts';
import { compile } from '../../proxy/config/compile.ts';
import { snapshotProblems } from '../../proxy/xds/index.ts';

const se = (spec: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db }
spec:
  hosts: [db.example.internal]
  ports: [{ number: 5432, name: http }]
${spec}`;

function errorsOf(yaml: string): string[] {
  const errors: string[] = [];
  const rs = parseResourceText('se.yaml', yaml, errors);
  if (errors.length) return errors;
  try { compile(rs, { version: '1', source: 't' }); } catch (e) { if (e instanceof ConfigError) return e.errors; throw e; }
  return [];
}

function snap(yaml: string) {
  const errors: string[] = [];
  const rs = parseResourceText('se.yaml', yaml, errors);
  if (errors.length) throw new ConfigError(errors);
  return compile(rs, { version: '1', source: 't' });
}

describe('validation', () => {
  const cases: Array<[string, string, string[]]> = [
    ['STATIC (the default) with a host name', '  endpoints: [{ address: db-1.example.internal }]\n',
      ['se.yaml: ServiceEntry/db: spec.endpoints[0].address: "db-1.example.internal" is not an IP address: resolution STATIC (the default) needs IP addresses; set resolution: DNS to resolve host names']],
    ['explicit STATIC with a host name', '  resolution: STATIC\n  endpoints: [{ address: 10.0.0.1 }, { address: localhost }]\n',
      ['se.yaml: ServiceEntry/db: spec.endpoints[1].address: "localhost" is not an IP address: resolution STATIC needs IP addresses; set resolution: DNS to resolve host names']],
    ['STATIC with a unix socket', '  resolution: STATIC\n  endpoints: [{ address: "unix:///var/run/db.sock" }]\n',
      ['se.yaml: ServiceEntry/db: spec.endpoints[0].address: unix domain socket endpoints are not supported ("unix:///var/run/db.sock")']],
    ['NONE', '  resolution: NONE\n',
      ['se.yaml: ServiceEntry/db: spec.resolution: NONE (pass-through to the original destination of an intercepted connection) is not possible: a Node process cannot read that destination (SO_ORIGINAL_DST); use STATIC with endpoint IP addresses, or DNS']],
    ['DNS with an address that is neither FQDN nor IP', '  resolution: DNS\n  endpoints: [{ address: "db_1..x" }]\n',
      ['se.yaml: ServiceEntry/db: spec.endpoints[0].address: endpoint address "db_1..x" is not a valid FQDN or an IP address']],
    ['DNS_ROUND_ROBIN with two endpoints', '  resolution: DNS_ROUND_ROBIN\n  endpoints: [{ address: a.example.internal }, { address: b.example.internal }]\n',
      ['se.yaml: ServiceEntry/db: spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN, got 2']],
    ['an unknown resolution', '  resolution: DYNAMIC\n',
      ['se.yaml: ServiceEntry/db: spec.resolution: must be one of STATIC, DNS, DNS_ROUND_ROBIN, NONE, got string "DYNAMIC"']],
  ];
  for (const [name, spec, want] of cases) it(name, () => expect(errorsOf(se(spec))).toEqual(want));

  it('DNS without endpoints resolves the hosts, which must then be FQDNs', () => {
    const wild = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext }
spec:
  hosts: ["*.example.internal"]
  ports: [{ number: 80, name: http }]
  resolution: DNS
`;
    expect(errorsOf(wild)).toEqual(['se.yaml: ServiceEntry/ext: spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS (got "*.example.internal")']);
  });

  it('STATIC with IPv4 and IPv6 addresses, and with no endpoints (registered later), is valid', () => {
    expect(errorsOf(se('  resolution: STATIC\n  endpoints: [{ address: 10.0.0.1 }, { address: "::1" }]\n'))).toEqual([]);
    expect(errorsOf(se('  resolution: STATIC\n'))).toEqual([]);
  });
});

describe('compiled clusters', () => {
  it('DNS endpoints keep their names, ports and labels; the cluster says how to resolve them', () => {
    const s = snap(se('  resolution: DNS\n  endpoints:\n    - { address: localhost, labels: { version: v1 } }\n    - { address: 127.0.0.9, ports: { http: 6000 } }\n'));
    const c = s.clusters.find((x) => x.subset === '')!;
    expect(c.resolution).toBe('DNS');
    expect(c.endpoints).toEqual([
      { address: 'localhost', port: 5432, labels: { version: 'v1' } },
      { address: '127.0.0.9', port: 6000, labels: {} },
    ]);
    expect(snapshotProblems(s)).toEqual([]);
  });

  it('DNS without endpoints: each host is its own endpoint; targetPort is the endpoint port', () => {
    const s = snap(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext }
spec:
  hosts: [api.example.internal, Other.Example.Internal]
  ports: [{ number: 80, name: http, targetPort: 8080 }]
  resolution: DNS_ROUND_ROBIN
`);
    expect(s.clusters.map((c) => [c.name, c.resolution, c.endpoints])).toEqual([
      ['outbound|80||api.example.internal', 'DNS_ROUND_ROBIN', [{ address: 'api.example.internal', port: 8080, labels: {} }]],
      ['outbound|80||other.example.internal', 'DNS_ROUND_ROBIN', [{ address: 'other.example.internal', port: 8080, labels: {} }]],
    ]);
  });

  it('STATIC clusters carry no resolution field (unchanged snapshots)', () => {
    const s = snap(se('  endpoints: [{ address: 10.0.0.1 }]\n'));
    expect('resolution' in s.clusters[0]).toBe(false);
  });

  it('a snapshot from the wire with an unknown resolution is refused', () => {
    const s = snap(se('  resolution: DNS\n  endpoints: [{ address: localhost }]\n'));
    (s.clusters[0] as { resolution: string }).resolution = 'NONE';
    expect(snapshotProblems(s)).toEqual(['snapshot.clusters[0].resolution: must be one of DNS, DNS_ROUND_ROBIN']);
  });
});
