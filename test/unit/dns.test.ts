// DnsDiscovery on its own, with injected resolvers (nothing is looked up on the wire): bounded
// lookups, last-good on failure, one error report per failing spell, no callbacks after stop().
import { describe, expect, it } from 'vitest';
import { DnsDiscovery, type DnsLookup, type DnsStats } from '../../proxy/upstream/dns.ts';
import type { EndpointSpec } from '../../proxy/config/schema.ts';

const newStats = (): DnsStats => ({ update_attempt: 0, update_success: 0, update_failure: 0, membership_change: 0 });
const target = (address: string, port = 80, labels: Record<string, string> = {}): EndpointSpec => ({ address, port, labels });

async function until(cond: () => boolean, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  return cond();
}

describe('DnsDiscovery', () => {
  it('a lookup that never answers times out, counts as a failure and still warms the cluster', async () => {
    const stats = newStats();
    const hosts: EndpointSpec[][] = [];
    const errors: string[] = [];
    const never: DnsLookup = () => new Promise(() => {});
    const d = new DnsDiscovery([target('stuck.internal')], { mode: 'DNS', lookup: never, timeoutMs: 30, refreshMs: 60_000, stats, onHosts: (h) => hosts.push(h), onError: (n, e) => errors.push(`${n}: ${e.message}`) });
    await d.warmed;
    expect(stats).toEqual({ update_attempt: 1, update_success: 0, update_failure: 1, membership_change: 0 });
    expect(errors).toEqual(['stuck.internal: DNS lookup of stuck.internal timed out after 30 ms']);
    expect(hosts).toEqual([[]]);
    d.stop();
  });

  it('every address of every name, with the target port and labels; IP targets need no lookup', async () => {
    const stats = newStats();
    let got: EndpointSpec[] = [];
    const lookup: DnsLookup = async (n) => (n === 'a.internal' ? ['127.0.0.2', '127.0.0.3'] : ['127.0.0.4']);
    const d = new DnsDiscovery([target('a.internal', 81, { v: '1' }), target('b.internal', 82), target('127.0.0.9', 83)], { mode: 'DNS', lookup, refreshMs: 60_000, stats, onHosts: (h) => { got = h; } });
    await d.warmed;
    expect(got).toEqual([
      { address: '127.0.0.2', port: 81, labels: { v: '1' }, hostname: 'a.internal' },
      { address: '127.0.0.3', port: 81, labels: { v: '1' }, hostname: 'a.internal' },
      { address: '127.0.0.4', port: 82, labels: {}, hostname: 'b.internal' },
      { address: '127.0.0.9', port: 83, labels: {} },
    ]);
    expect(stats.update_attempt).toBe(2);
    d.stop();
  });

  it('a failing name keeps its last good addresses and is reported once per failing spell', async () => {
    const stats = newStats();
    let answer: string[] | Error = ['127.0.0.2'];
    let got: EndpointSpec[] = [];
    const errors: string[] = [];
    const lookup: DnsLookup = async () => { if (answer instanceof Error) throw answer; return answer; };
    const d = new DnsDiscovery([target('a.internal')], { mode: 'DNS', lookup, refreshMs: 5, stats, onHosts: (h) => { got = h; }, onError: (n) => errors.push(n) });
    await d.warmed;
    answer = new Error('getaddrinfo ENOTFOUND a.internal');
    expect(await until(() => stats.update_failure >= 4)).toBe(true);
    expect(got.map((h) => h.address)).toEqual(['127.0.0.2']);
    expect(errors).toEqual(['a.internal']);
    answer = ['127.0.0.3'];
    expect(await until(() => got[0]?.address === '127.0.0.3')).toBe(true);
    answer = new Error('again');
    expect(await until(() => errors.length === 2)).toBe(true);
    d.stop();
  });

  it('no callback after stop(), even from a lookup already in flight', async () => {
    let release!: (a: string[]) => void;
    let calls = 0;
    const d = new DnsDiscovery([target('a.internal')], {
      mode: 'DNS', lookup: () => new Promise((r) => { release = r; }), refreshMs: 5, stats: newStats(), onHosts: () => { calls++; },
    });
    expect(await until(() => release !== undefined)).toBe(true);
    d.stop();
    release(['127.0.0.2']);
    await d.warmed;
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(0);
  });
});
