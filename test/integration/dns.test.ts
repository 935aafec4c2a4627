// ServiceEntry resolution: DNS on real sockets. The OS resolver is used for `localhost` only
// (answered from /etc/hosts, 127.0.0.1); names that must fail or change are answered by an
// injected lookup returning loopback addresses, so nothing but 127.0.0.0/8 is ever contacted.
import { afterAll, describe, expect, it } from 'vitest';
import { echo, Fixtures, send, snapshotFromYaml, stat } from '../helpers.ts';
import { until } from '../resilience/lib.ts';
import type { DnsLookup } from '../../proxy/upstream/dns.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const dnsEntry = (host: string, resolution: string, endpoints: string, port = 80) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db }
spec:
  hosts: [${host}]
  ports: [{ number: ${port}, name: http }]
  resolution: ${resolution}
${endpoints}`;

const notFound = (name: string) => Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });

describe('resolution: DNS with the OS resolver', () => {
  it('an endpoint named localhost resolves to 127.0.0.1 and routes, from the first request on', async () => {
    const up = await fx.upstream(echo('db'));
    const p = await fx.proxy(dnsEntry('db.internal', 'DNS', `  endpoints: [{ address: localhost, ports: { http: ${up.port} }, labels: { version: v1 } }]\n`));
    // startProxy waits for DNS clusters to warm: no 503 UH window at startup.
    const r = await send(p.ports.outbound, { host: 'db.internal' });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('db');
    const clusters = (await send(p.ports.admin, { path: '/clusters' })).body;
    expect(clusters).toContain(`outbound|80||db.internal::127.0.0.1:${up.port}::hostname::localhost\n`);
    expect(clusters).toContain(`outbound|80||db.internal::127.0.0.1:${up.port}::labels::version=v1\n`);
    expect(await stat(p.ports.admin, 'cluster.outbound|80||db.internal;.membership_total')).toBe(1);
    expect(await stat(p.ports.admin, 'cluster.outbound|80||db.internal;.update_success')).toBeGreaterThanOrEqual(1);
    expect(await stat(p.ports.admin, 'cluster.outbound|80||db.internal;.update_failure')).toBe(0);
  });

  it('without endpoints the ServiceEntry host itself is resolved', async () => {
    const up = await fx.upstream(echo('self'));
    const p = await fx.proxy(dnsEntry('localhost', 'DNS', '', up.port));
    const r = await send(p.ports.outbound, { host: `localhost:${up.port}` });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('self');
  });
});

describe('resolution: DNS, names answered by an injected lookup', () => {
  it('a name that does not resolve: 503 UH (no healthy upstream), the proxy keeps serving', async () => {
    const up = await fx.upstream(echo('ok'));
    const lookup: DnsLookup = async (name) => { if (name === 'ok.internal') return ['127.0.0.1']; throw notFound(name); };
    const p = await fx.proxy(`${dnsEntry('gone.internal', 'DNS', '  endpoints: [{ address: nowhere.internal }]\n')}---
${dnsEntry('ok.internal', 'DNS', `  endpoints: [{ address: ok.internal, ports: { http: ${up.port} } }]\n`).replace('name: db', 'name: ok')}`, { dnsLookup: lookup, dnsRefreshMs: 50 });
    for (let i = 0; i < 3; i++) {
      const r = await send(p.ports.outbound, { host: 'gone.internal' });
      expect(r.status).toBe(503);
      expect(r.headers['x-meshlet-flags']).toBe('UH');
      expect(r.body).toBe('no healthy upstream');
    }
    expect((await send(p.ports.outbound, { host: 'ok.internal' })).status).toBe(200);
    expect((await send(p.ports.admin, { path: '/ready' })).status).toBe(200);
    expect(await until(async () => (await stat(p.ports.admin, 'cluster.outbound|80||gone.internal;.update_failure'))! >= 3, 5_000)).toBe(true);
    expect(await stat(p.ports.admin, 'cluster.outbound|80||gone.internal;.membership_total')).toBe(0);
  });

  it('re-resolution follows a changed answer, keeps the last good hosts when a lookup fails, and takes every address', async () => {
    const a = await fx.upstream(echo('a'), '127.0.0.2');
    const b = await fx.upstream(echo('b'), '127.0.0.3', a.port);
    let answer: string[] | 'fail' = ['127.0.0.2'];
    const lookup: DnsLookup = async (name) => {
      if (name !== 'db.internal') throw notFound(name);
      if (answer === 'fail') throw notFound(name);
      return answer;
    };
    const p = await fx.proxy(dnsEntry('db.internal', 'DNS', `  endpoints: [{ address: db.internal, ports: { http: ${a.port} } }]\n`), { dnsLookup: lookup, dnsRefreshMs: 50 });
    const who = async () => (await send(p.ports.outbound, { host: 'db.internal' })).headers['x-upstream'];
    const C = 'cluster.outbound|80||db.internal;.';
    expect(await who()).toBe('a');

    answer = ['127.0.0.3'];
    expect(await until(async () => (await who()) === 'b', 5_000)).toBe(true);
    expect(await stat(p.ports.admin, `${C}membership_total`)).toBe(1);

    // Failing lookups: the last good host stays (Envoy keeps hosts on a failed resolution).
    answer = 'fail';
    const failures = (await stat(p.ports.admin, `${C}update_failure`))!;
    expect(await until(async () => (await stat(p.ports.admin, `${C}update_failure`))! >= failures + 3, 5_000)).toBe(true);
    for (let i = 0; i < 5; i++) expect(await who()).toBe('b');

    // Two addresses: two hosts (STRICT_DNS), both used.
    answer = ['127.0.0.2', '127.0.0.3'];
    expect(await until(async () => (await stat(p.ports.admin, `${C}membership_total`)) === 2, 5_000)).toBe(true);
    const seen = new Set<string>();
    for (let i = 0; i < 40 && seen.size < 2; i++) seen.add(String(await who()));
    expect(seen).toEqual(new Set(['a', 'b']));
    expect(await stat(p.ports.admin, `${C}membership_change`)).toBeGreaterThanOrEqual(2);
  });

  it('DNS_ROUND_ROBIN (LOGICAL_DNS) uses only the first address of the answer', async () => {
    const a = await fx.upstream(echo('a'), '127.0.0.2');
    const b = await fx.upstream(echo('b'), '127.0.0.3', a.port);
    const p = await fx.proxy(dnsEntry('db.internal', 'DNS_ROUND_ROBIN', `  endpoints: [{ address: db.internal, ports: { http: ${a.port} } }]\n`),
      { dnsLookup: async () => ['127.0.0.3', '127.0.0.2'], dnsRefreshMs: 50 });
    expect(await stat(p.ports.admin, 'cluster.outbound|80||db.internal;.membership_total')).toBe(1);
    for (let i = 0; i < 10; i++) expect((await send(p.ports.outbound, { host: 'db.internal' })).headers['x-upstream']).toBe('b');
    expect(b.hits).toBe(10);
    expect(a.hits).toBe(0);
  });

  it('a config reload with new DNS targets keeps serving the known hosts until the new names answer', async () => {
    const a = await fx.upstream(echo('a'), '127.0.0.2');
    const b = await fx.upstream(echo('b'), '127.0.0.3', a.port);
    let release: (() => void) | null = null;
    const lookup: DnsLookup = async (name) => {
      if (name === 'old.internal') return ['127.0.0.2'];
      if (name === 'new.internal') { await new Promise<void>((r) => { release = r; }); return ['127.0.0.3']; }
      throw notFound(name);
    };
    const yaml = (name: string) => dnsEntry('db.internal', 'DNS', `  endpoints: [{ address: ${name}, ports: { http: ${a.port} } }]\n`);
    const p = await fx.proxy(yaml('old.internal'), { dnsLookup: lookup, dnsRefreshMs: 60_000 });
    expect((await send(p.ports.outbound, { host: 'db.internal' })).headers['x-upstream']).toBe('a');
    p.apply(snapshotFromYaml(yaml('new.internal'), '2'));
    // The lookup of the new name is pending: the old host still serves.
    expect((await send(p.ports.outbound, { host: 'db.internal' })).headers['x-upstream']).toBe('a');
    expect(await until(async () => release !== null, 5_000)).toBe(true);
    release!();
    expect(await until(async () => (await send(p.ports.outbound, { host: 'db.internal' })).headers['x-upstream'] === 'b', 5_000)).toBe(true);
    expect(b.hits).toBeGreaterThan(0);
  });
});
