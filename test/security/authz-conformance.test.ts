// AuthorizationPolicy conformance: one test per case, each derived from a statement in the
// comments of istio/api security/v1beta1/authorization_policy.proto (quoted or paraphrased in
// the case's `why`), the Istio conditions reference (istio.io docs/reference/config/security/
// conditions) or Envoy's uri_template semantics for `{*}` / `{**}`. The evaluator is the one the
// inbound filter runs (proxy/filters/authz/policy.ts); the socket-level behaviour (403 body,
// stats, mTLS principals) is tested in authz.test.ts.
import { describe, expect, it } from 'vitest';
import { WorkloadAuthz, authzProblems, type AuthorizationPolicySpec, type AuthzAttributes, type AuthzPolicyEntry } from '../../proxy/filters/authz/policy.ts';
import { normalizePath } from '../../proxy/filters/authz/match.ts';

const SLEEP = 'cluster.local/ns/demo/sa/sleep';
const base: AuthzAttributes = {
  method: 'GET', path: '/get', host: 'httpbin.demo', headers: [], sourceIp: '10.0.0.5', remoteIp: '10.0.0.5',
  destinationIp: '10.0.1.1', destinationPort: 8000, principal: SLEEP, sni: null, jwt: null,
};
type P = Partial<AuthzPolicyEntry> & { spec: AuthorizationPolicySpec };
interface Case { why: string; policies: P[]; req?: Partial<AuthzAttributes>; allow: boolean; by?: string | null; labels?: Record<string, string>; ns?: string }

const allowRule = (rule: object): P => ({ name: 'p', spec: { action: 'ALLOW', rules: [rule] } });
const denyRule = (rule: object): P => ({ name: 'd', spec: { action: 'DENY', rules: [rule] } });
const src = (s: object) => allowRule({ from: [{ source: s }] });
const op = (o: object) => allowRule({ to: [{ operation: o }] });
const when = (key: string, values?: string[], notValues?: string[]) => allowRule({ when: [{ key, ...(values ? { values } : {}), ...(notValues ? { notValues } : {}) }] });
const jwt = (principal: string, claims: Record<string, unknown> = {}, audiences: string[] = [], presenter = '') => ({ principal, claims, audiences, presenter });

const cases: Case[] = [
  // --- evaluation order (header comment: "CUSTOM, then DENY, then ALLOW") ---
  { why: 'no policies: allow', policies: [], allow: true },
  { why: '3. no ALLOW policies for the workload: allow (a DENY that does not match)', policies: [denyRule({ to: [{ operation: { paths: ['/admin'] } }] })], allow: true },
  { why: '2. a matching DENY policy denies', policies: [denyRule({ to: [{ operation: { paths: ['/get'] } }] })], allow: false, by: 'demo/d' },
  { why: 'DENY beats a matching ALLOW', policies: [allowRule({}), denyRule({})], allow: false, by: 'demo/d' },
  { why: '4. a matching ALLOW allows', policies: [op({ paths: ['/get'] })], allow: true, by: 'demo/p' },
  { why: '5. ALLOW policies exist, none matches: deny', policies: [op({ paths: ['/ip'] })], allow: false, by: null },
  { why: 'any of several ALLOW policies matching allows', policies: [op({ paths: ['/ip'] }), { name: 'q', spec: { rules: [{ to: [{ operation: { paths: ['/get'] } }] }] } }], allow: true, by: 'demo/q' },
  { why: 'the default action is ALLOW', policies: [{ name: 'p', spec: { rules: [{ to: [{ operation: { methods: ['POST'] } }] }] } }], allow: false },
  { why: '"If not set [rules], the match will never occur": ALLOW without rules denies all (allow-nothing)', policies: [{ name: 'p', spec: { action: 'ALLOW' } }], allow: false },
  { why: 'spec: {} is allow-nothing', policies: [{ name: 'p', spec: {} }], allow: false },
  { why: 'DENY without rules never matches: allow', policies: [{ name: 'd', spec: { action: 'DENY' } }], allow: true },
  { why: '"rules: - {}" allows all (allow-all)', policies: [allowRule({})], allow: true },
  { why: 'allow-all beside allow-nothing: allow', policies: [{ name: 'n', spec: {} }, allowRule({})], allow: true },
  { why: 'AUDIT policies do not affect whether requests are allowed (audit-only workload is allowed)', policies: [{ name: 'a', spec: { action: 'AUDIT', rules: [{}] } }], allow: true },
  { why: 'AUDIT does not count as an ALLOW policy beside a denying ALLOW', policies: [{ name: 'a', spec: { action: 'AUDIT', rules: [{}] } }, op({ paths: ['/x'] })], allow: false },
  { why: 'a dry-run DENY is not enforced', policies: [{ name: 'd', dryRun: true, spec: { action: 'DENY', rules: [{}] } }], allow: true },
  { why: 'a dry-run ALLOW does not make the workload deny-by-default', policies: [{ name: 'p', dryRun: true, spec: { action: 'ALLOW' } }], allow: true },
  // --- Rule: "at least one source, one operation and all conditions"; "An empty rule is always matched" ---
  { why: 'from: any one source matches (principal)', policies: [allowRule({ from: [{ source: { principals: ['x/ns/a/sa/b'] } }, { source: { principals: [SLEEP] } }] })], allow: true },
  { why: 'from: no source matches', policies: [allowRule({ from: [{ source: { principals: ['x/ns/a/sa/b'] } }, { source: { namespaces: ['test'] } }] })], allow: false },
  { why: 'to: any one operation matches', policies: [allowRule({ to: [{ operation: { methods: ['POST'] } }, { operation: { paths: ['/get'] } }] })], allow: true },
  { why: 'from matches but to does not: no match', policies: [allowRule({ from: [{ source: { principals: [SLEEP] } }], to: [{ operation: { methods: ['POST'] } }] })], allow: false },
  { why: 'all when conditions must match (one fails)', policies: [allowRule({ when: [{ key: 'source.namespace', values: ['demo'] }, { key: 'destination.port', values: ['9000'] }] })], allow: false },
  { why: 'all when conditions match', policies: [allowRule({ when: [{ key: 'source.namespace', values: ['demo'] }, { key: 'destination.port', values: ['8000'] }] })], allow: true },
  { why: 'a policy matches when at least one rule matches', policies: [{ name: 'p', spec: { rules: [{ to: [{ operation: { paths: ['/x'] } }] }, { to: [{ operation: { paths: ['/get'] } }] }] } }], allow: true },
  { why: 'the proto example: principal sleep, GET /info* -> allowed', policies: [allowRule({ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }, { source: { namespaces: ['test'] } }], to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }, { operation: { methods: ['POST'], paths: ['/data'] } }] })], req: { principal: 'cluster.local/ns/default/sa/sleep', path: '/info/x' }, allow: true },
  { why: 'the proto example: namespace test, POST /data -> allowed', policies: [allowRule({ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }, { source: { namespaces: ['test'] } }], to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }, { operation: { methods: ['POST'], paths: ['/data'] } }] })], req: { principal: 'cluster.local/ns/test/sa/any', method: 'POST', path: '/data' }, allow: true },
  { why: 'the proto example: namespace test, GET /data -> denied', policies: [allowRule({ from: [{ source: { namespaces: ['test'] } }], to: [{ operation: { methods: ['GET'], paths: ['/info*'] } }, { operation: { methods: ['POST'], paths: ['/data'] } }] })], req: { principal: 'cluster.local/ns/test/sa/any', path: '/data' }, allow: false },
  { why: 'the proto DENY example: dev namespace POST denied', policies: [denyRule({ from: [{ source: { namespaces: ['dev'] } }], to: [{ operation: { methods: ['POST'] } }] })], req: { principal: 'cluster.local/ns/dev/sa/x', method: 'POST' }, allow: false },
  { why: 'the proto DENY example: dev namespace GET allowed', policies: [denyRule({ from: [{ source: { namespaces: ['dev'] } }], to: [{ operation: { methods: ['POST'] } }] })], req: { principal: 'cluster.local/ns/dev/sa/x' }, allow: true },
  { why: 'the proto DENY example: POST on port 8080 denied', policies: [denyRule({ to: [{ operation: { methods: ['POST'], ports: ['8080'] } }] })], req: { method: 'POST', destinationPort: 8080 }, allow: false },
  { why: 'the proto DENY example: POST on another port allowed', policies: [denyRule({ to: [{ operation: { methods: ['POST'], ports: ['8080'] } }] })], req: { method: 'POST' }, allow: true },
  // --- Source: "Fields in the source are ANDed"; the proto's example principals admin|dev, namespaces prod|test, notIpBlocks ---
  { why: 'source fields ANDed: principal and namespace and not-ip all hold', policies: [src({ principals: ['td/ns/prod/sa/admin', 'td/ns/prod/sa/dev'], namespaces: ['prod', 'test'], notIpBlocks: ['203.0.113.4'] })], req: { principal: 'td/ns/prod/sa/dev' }, allow: true },
  { why: 'source fields ANDed: the excluded ip fails it', policies: [src({ principals: ['td/ns/prod/sa/admin'], namespaces: ['prod'], notIpBlocks: ['203.0.113.4'] })], req: { principal: 'td/ns/prod/sa/admin', sourceIp: '203.0.113.4' }, allow: false },
  { why: 'principals exact', policies: [src({ principals: [SLEEP] })], allow: true },
  { why: 'principals: another service account is refused', policies: [src({ principals: [SLEEP] })], req: { principal: 'cluster.local/ns/demo/sa/other' }, allow: false },
  { why: 'principals prefix "abc*"', policies: [src({ principals: ['cluster.local/ns/demo/*'] })], allow: true },
  { why: 'principals suffix "*abc"', policies: [src({ principals: ['*/sa/sleep'] })], allow: true },
  { why: 'principals presence "*" matches any mTLS peer', policies: [src({ principals: ['*'] })], allow: true },
  { why: 'principals "*" does not match plaintext (no peer identity)', policies: [src({ principals: ['*'] })], req: { principal: null }, allow: false },
  { why: 'notPrincipals excludes a principal', policies: [src({ notPrincipals: [SLEEP] })], allow: false },
  { why: 'notPrincipals "*" matches plaintext only', policies: [src({ notPrincipals: ['*'] })], req: { principal: null }, allow: true },
  { why: 'namespaces from the peer certificate', policies: [src({ namespaces: ['demo'] })], allow: true },
  { why: 'namespaces: another namespace is refused', policies: [src({ namespaces: ['demo'] })], req: { principal: 'cluster.local/ns/other/sa/sleep' }, allow: false },
  { why: 'namespaces require mTLS: plaintext has none', policies: [src({ namespaces: ['demo'] })], req: { principal: null }, allow: false },
  { why: 'notNamespaces', policies: [src({ notNamespaces: ['demo'] })], req: { principal: 'cluster.local/ns/prod/sa/x' }, allow: true },
  { why: 'namespaces prefix', policies: [src({ namespaces: ['de*'] })], allow: true },
  { why: 'serviceAccounts "ns/sa" exact', policies: [src({ serviceAccounts: ['demo/sleep'] })], allow: true },
  { why: 'notServiceAccounts', policies: [src({ notServiceAccounts: ['demo/sleep'] })], allow: false },
  { why: 'ipBlocks single IP', policies: [src({ ipBlocks: ['10.0.0.5'] })], allow: true },
  { why: 'ipBlocks CIDR', policies: [src({ ipBlocks: ['10.0.0.0/24'] })], allow: true },
  { why: 'ipBlocks CIDR miss', policies: [src({ ipBlocks: ['10.0.9.0/24'] })], allow: false },
  { why: 'ipBlocks IPv6 CIDR', policies: [src({ ipBlocks: ['2001:db8::/32'] })], req: { sourceIp: '2001:db8:0:1::7' }, allow: true },
  { why: 'ipBlocks: a v4-mapped IPv6 peer is its v4 address', policies: [src({ ipBlocks: ['127.0.0.0/8'] })], req: { sourceIp: '::ffff:127.0.0.1' }, allow: true },
  { why: 'remoteIpBlocks reads remote.ip (XFF), not the peer', policies: [src({ remoteIpBlocks: ['203.0.113.0/24'] })], req: { remoteIp: '203.0.113.9' }, allow: true },
  { why: 'notRemoteIpBlocks', policies: [src({ notRemoteIpBlocks: ['203.0.113.0/24'] })], req: { remoteIp: '203.0.113.9' }, allow: false },
  { why: 'requestPrincipals "<ISS>/<SUB>"', policies: [src({ requestPrincipals: ['example.com/sub-1'] })], req: { jwt: jwt('example.com/sub-1') }, allow: true },
  { why: 'requestPrincipals "*" requires a JWT', policies: [src({ requestPrincipals: ['*'] })], allow: false },
  { why: 'notRequestPrincipals', policies: [src({ notRequestPrincipals: ['example.com/*'] })], req: { jwt: jwt('example.com/sub-1') }, allow: false },
  // --- Operation: the proto's example hosts *.example.com, methods GET|HEAD, notPaths /admin* ---
  { why: 'operation example: suffix host, GET, not /admin', policies: [op({ hosts: ['*.example.com'], methods: ['GET', 'HEAD'], notPaths: ['/admin*'] })], req: { host: 'api.example.com', path: '/users' }, allow: true },
  { why: 'operation example: /admin path excluded', policies: [op({ hosts: ['*.example.com'], methods: ['GET', 'HEAD'], notPaths: ['/admin*'] })], req: { host: 'api.example.com', path: '/admin/x' }, allow: false },
  { why: 'hosts: "The match is case-insensitive"', policies: [op({ hosts: ['API.Example.com'] })], req: { host: 'api.EXAMPLE.com' }, allow: true },
  { why: 'notHosts', policies: [op({ notHosts: ['httpbin.demo'] })], allow: false },
  { why: 'ports: "as specified in the connection"', policies: [op({ ports: ['8000'] })], allow: true },
  { why: 'notPorts', policies: [op({ notPorts: ['8000'] })], allow: false },
  { why: 'methods are case-sensitive as sent', policies: [op({ methods: ['get'] })], allow: false },
  { why: 'notMethods', policies: [op({ notMethods: ['GET'] })], allow: false },
  { why: 'paths exact', policies: [op({ paths: ['/get'] })], allow: true },
  { why: 'paths: "abc*" matches "abc" too', policies: [op({ paths: ['/get*'] })], allow: true },
  { why: 'paths suffix', policies: [op({ paths: ['*.png'] })], req: { path: '/img/a.png' }, allow: true },
  { why: 'paths: the query is not part of the path', policies: [op({ paths: ['/get'] })], req: { path: normalizePath('/get?x=1') }, allow: true },
  { why: 'paths: dot segments are normalised before matching', policies: [denyRule({ to: [{ operation: { paths: ['/admin*'] } }] })], req: { path: normalizePath('/public/../admin/x') }, allow: false },
  { why: 'paths template {*}: one segment', policies: [op({ paths: ['/foo/{*}/bar'] })], req: { path: '/foo/x/bar' }, allow: true },
  { why: 'paths template {*} does not span segments', policies: [op({ paths: ['/foo/{*}/bar'] })], req: { path: '/foo/x/y/bar' }, allow: false },
  { why: 'paths template {*} needs a non-empty segment', policies: [op({ paths: ['/foo/{*}'] })], req: { path: '/foo/' }, allow: false },
  { why: 'paths template {**}: any rest', policies: [op({ paths: ['/foo/{**}'] })], req: { path: '/foo/a/b/c' }, allow: true },
  { why: 'paths template {**} does not match the parent without its slash', policies: [op({ paths: ['/foo/{**}'] })], req: { path: '/foo' }, allow: false },
  { why: 'paths template mixed {*} then {**}', policies: [op({ paths: ['/api/{*}/v1/{**}'] })], req: { path: '/api/x/v1/a/b' }, allow: true },
  // --- Condition keys (conditions reference) ---
  { why: 'when request.headers[...] with prefix "test*" (the seed)', policies: [when('request.headers[x-rfma-token]', ['test*'])], req: { headers: ['X-RFMA-Token', 'test123'] }, allow: true },
  { why: 'when request.headers[...]: another value is refused', policies: [when('request.headers[x-rfma-token]', ['test*'])], req: { headers: ['x-rfma-token', 'prod1'] }, allow: false },
  { why: 'when request.headers[...]: a missing header is refused', policies: [when('request.headers[x-rfma-token]', ['test*'])], allow: false },
  { why: 'when notValues: a missing header matches a negative condition', policies: [when('request.headers[x-block]', undefined, ['yes'])], allow: true },
  { why: 'when values and notValues together', policies: [when('request.headers[x-env]', ['*'], ['prod'])], req: { headers: ['x-env', 'prod'] }, allow: false },
  { why: 'when source.ip CIDR', policies: [when('source.ip', ['10.0.0.0/8'])], allow: true },
  { why: 'when remote.ip', policies: [when('remote.ip', ['10.0.0.5'])], allow: true },
  { why: 'when source.namespace', policies: [when('source.namespace', ['demo'])], allow: true },
  { why: 'when source.principal', policies: [when('source.principal', [SLEEP])], allow: true },
  { why: 'when request.auth.principal', policies: [when('request.auth.principal', ['iss/sub'])], req: { jwt: jwt('iss/sub') }, allow: true },
  { why: 'when request.auth.audiences: any audience', policies: [when('request.auth.audiences', ['b'])], req: { jwt: jwt('i/s', {}, ['a', 'b']) }, allow: true },
  { why: 'when request.auth.presenter', policies: [when('request.auth.presenter', ['app'])], req: { jwt: jwt('i/s', {}, [], 'app') }, allow: true },
  { why: 'when request.auth.claims[iss] (the proto example)', policies: [when('request.auth.claims[iss]', ['https://accounts.google.com'])], req: { jwt: jwt('https://accounts.google.com/1', { iss: 'https://accounts.google.com' }) }, allow: true },
  { why: 'when request.auth.claims[groups]: a list claim matches any element', policies: [when('request.auth.claims[groups]', ['admins'])], req: { jwt: jwt('i/s', { groups: ['dev', 'admins'] }) }, allow: true },
  { why: 'when request.auth.claims[a][b]: nested claim', policies: [when('request.auth.claims[realm][role]', ['ops'])], req: { jwt: jwt('i/s', { realm: { role: 'ops' } }) }, allow: true },
  { why: 'when destination.ip', policies: [when('destination.ip', ['10.0.1.0/24'])], allow: true },
  { why: 'when destination.port', policies: [when('destination.port', ['8000'])], allow: true },
  { why: 'when connection.sni', policies: [when('connection.sni', ['*.demo'])], req: { sni: 'httpbin.demo' }, allow: true },
  // --- scope: "metadata/namespace" and selector ---
  { why: 'a policy in another namespace does not apply', policies: [{ name: 'n', namespace: 'other', spec: {} }], allow: true },
  { why: 'a policy in the root namespace applies to every namespace', policies: [{ name: 'n', namespace: 'istio-system', spec: {} }], allow: false, by: null },
  { why: 'selector: matching labels apply', policies: [{ name: 'n', spec: { selector: { matchLabels: { app: 'httpbin' } } } }], labels: { app: 'httpbin', version: 'v1' }, allow: false },
  { why: 'selector: other labels do not', policies: [{ name: 'n', spec: { selector: { matchLabels: { app: 'httpbin' } } } }], labels: { app: 'sleep' }, allow: true },
  { why: 'root namespace selector version: v1 applies in all namespaces (proto example)', policies: [{ name: 'n', namespace: 'istio-system', spec: { selector: { matchLabels: { version: 'v1' } } } }], labels: { version: 'v1' }, ns: 'bar', allow: false },
];

describe('AuthorizationPolicy conformance (istio/api authorization_policy.proto)', () => {
  it('has at least 60 cases', () => { expect(cases.length).toBeGreaterThanOrEqual(60); });
  for (const [i, c] of cases.entries()) {
    it(`${i + 1}. ${c.why}`, () => {
      const entries = c.policies.map((p) => ({ name: p.name ?? 'p', namespace: p.namespace ?? 'demo', dryRun: p.dryRun, spec: p.spec }));
      const w = new WorkloadAuthz(entries, c.ns ?? 'demo', c.labels ?? { app: 'httpbin' });
      const d = w.decide({ ...base, ...c.req });
      expect(d.allowed, d.reason).toBe(c.allow);
      if (c.by !== undefined) expect(d.policy).toBe(c.by);
    });
  }
});

describe('validation (Istio ValidateAuthorizationPolicy; meshlet refuses unknown when keys)', () => {
  const problems = (spec: AuthorizationPolicySpec) => authzProblems({ name: 'p', namespace: 'demo', spec });
  it('an unknown when key is refused with a message naming it', () => {
    const e = problems({ rules: [{ when: [{ key: 'request.header[x]', values: ['a'] }] }] });
    expect(e.join()).toContain('unknown condition key "request.header[x]"');
  });
  it('a condition without values or notValues is refused', () => {
    expect(problems({ rules: [{ when: [{ key: 'source.ip' }] }] }).join()).toContain('at least one of values or notValues');
  });
  it('bad ip blocks, ports and templates are refused', () => {
    expect(problems({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] }).join()).toContain('prefix length');
    expect(problems({ rules: [{ to: [{ operation: { ports: ['http'] } }] }] }).join()).toContain('not a port number');
    expect(problems({ rules: [{ to: [{ operation: { paths: ['/a/{**}/b'] } }] }] }).join()).toContain('{**} must be the last segment');
  });
  it('empty from / to and empty sources are refused', () => {
    expect(problems({ rules: [{ from: [] }] }).join()).toContain('from: must not be empty');
    expect(problems({ rules: [{ to: [{ operation: {} }] }] }).join()).toContain('must not be empty');
  });
  it('CUSTOM needs a provider; others may not have one', () => {
    expect(problems({ action: 'CUSTOM', rules: [{}] }).join()).toContain('must name its provider');
    expect(problems({ action: 'DENY', provider: { name: 'x' }, rules: [{}] }).join()).toContain('only a CUSTOM policy');
  });
  it('the shadow decision counts dry-run policies as if enforced', () => {
    const w = new WorkloadAuthz([{ name: 'd', namespace: 'demo', dryRun: true, spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/headers'] } }] }] } }], 'demo', {});
    const d = w.decide({ ...base, path: '/headers' });
    expect(d.allowed).toBe(true);
    expect(d.shadow).toEqual({ allowed: false, policy: 'demo/d', rule: 0 });
  });
  it('a matching AUDIT policy marks the decision', () => {
    const w = new WorkloadAuthz([{ name: 'a', namespace: 'demo', spec: { action: 'AUDIT', rules: [{ to: [{ operation: { methods: ['GET'], paths: ['/user/profile/*'] } }] }] } }], 'demo', {});
    expect(w.decide({ ...base, path: '/user/profile/1' }).audit).toBe('demo/a');
    expect(w.decide(base).audit).toBe(null);
  });
});
