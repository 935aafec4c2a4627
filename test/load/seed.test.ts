// Seed 000's circuit-breaker check, run as the seed runs it — `fortio load -c 3 -qps 0 -n 30
// -loglevel Warning http://ratings:9080/ratings/0` — with `meshlet load` through a real meshlet
// proxy (outbound listener, Host ratings:9080) configured with the seed's DestinationRule
// (maxConnections 1, http1MaxPendingRequests 1, maxRequestsPerConnection 1) over a slow upstream.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures } from '../helpers.ts';
import { ratings } from '../resilience/lib.ts';
import { run } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

describe('seed 000: meshlet load trips the circuit breaker', () => {
  it('prints "Code 503 : N (x %)" next to the 200s, and the report lines at -loglevel Warning', async () => {
    const up = await fx.upstream((_q, res) => { setTimeout(() => res.end('ratings'), 40); });
    const p = await fx.proxy(ratings([up.port], {
      policy: `    connectionPool:
      tcp: { maxConnections: 1 }
      http: { http1MaxPendingRequests: 1, maxRequestsPerConnection: 1 }`,
    }));
    const r = await run(['load', '-c', '3', '-qps', '0', '-n', '30', '-loglevel', 'Warning', '-H', 'Host: ratings:9080',
      `http://127.0.0.1:${p.ports.outbound}/ratings/0`]);
    expect(r.code).toBe(0);
    const m503 = /^Code 503 : (\d+) \((\d+\.\d) %\)$/m.exec(r.err);
    const m200 = /^Code 200 : (\d+) \((\d+\.\d) %\)$/m.exec(r.err);
    expect(m503, r.err).not.toBeNull();
    expect(m200, r.err).not.toBeNull();
    const n503 = Number(m503![1]);
    expect(n503).toBeGreaterThan(0);
    expect(n503 + Number(m200![1])).toBe(30);
    expect(m503![2]).toBe(((100 * n503) / 30).toFixed(1));
    // The lines the seed's -loglevel Warning used to lose:
    expect(r.err).toMatch(/^Fortio \S+ running at 0 queries per second, \d+->\d+ procs, for 30 calls: http/m);
    expect(r.err).toContain('Starting at max qps with 3 thread(s)');
    expect(r.err).toContain('for exactly 30 calls (10 per thread + 0)');
    expect(r.err).toMatch(/^Ended after \S+ : 30 calls\. qps=/m);
    expect(r.err).toMatch(/^Error cases : count \d+ avg/m);
    expect(r.err).toContain('# Socket and IP used for each connection:');
    expect(r.err).toMatch(/^Response Header Sizes : count 30 /m);
    expect(r.err).toMatch(/^All done 30 calls \(plus 0 warmup\) [\d.]+ ms avg, [\d.]+ qps$/m);
  });
});
