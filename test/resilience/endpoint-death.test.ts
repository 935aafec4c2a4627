// Endpoints dying under load with Istio's defaults (no DestinationRule: LEAST_REQUEST, no outlier
// detection, the default retry policy, no retry budget): no GET may fail. Upstreams are child
// processes killed with SIGKILL, so in-flight requests are reset and connects are refused.
import { afterAll, describe, expect, it } from 'vitest';
import { Fixtures, send, serviceYaml, type Reply } from '../helpers.ts';
import { killableUpstream, stats, until, type KillableUpstream } from './lib.ts';

const fx = new Fixtures();
afterAll(() => fx.closeAll());

const C = 'cluster.outbound|80||ratings;';

async function three(): Promise<KillableUpstream[]> {
  const ups = await Promise.all(['a', 'b', 'c'].map((n) => killableUpstream(n)));
  for (const u of ups) fx.add(() => u.close());
  return ups;
}

/**
 * `loops` concurrent clients sending GETs until `stop()` says so (bounded by `maxMs` and
 * `maxEach` per loop); each failure (status != 200 or a transport error) is recorded.
 */
async function load(port: number, loops: number, maxEach: number, maxMs: number, stop: () => boolean) {
  const replies: Reply[] = [];
  const errors: string[] = [];
  const deadline = performance.now() + maxMs;
  const loop = async () => {
    for (let i = 0; i < maxEach && !stop() && performance.now() < deadline; i++) {
      try { replies.push(await send(port, { host: 'ratings' })); } catch (e) { errors.push((e as Error).message); }
    }
  };
  await Promise.all(Array.from({ length: loops }, loop));
  const failed = replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.headers['x-meshlet-flags']} ${r.body}`);
  return { replies, errors, failed };
}

describe('one endpoint of three dies under load (Istio defaults)', () => {
  it('SIGKILL of one endpoint mid-load: 0 failed GETs, and the dead host is passed over', async () => {
    const ups = await three();
    const p = await fx.proxy(serviceYaml('ratings', ups.map((u) => u.port)));
    let killedAt = -1;
    // Kill endpoint a once traffic flows through every host (bounded wait); load 1.5 s more.
    const killer = (async () => {
      const t0 = performance.now();
      while (p.requestsTotal() < 150 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
      await ups[0].kill();
      killedAt = performance.now();
    })();
    const r = await load(p.ports.outbound, 12, 10_000, 10_000, () => killedAt > 0 && performance.now() - killedAt > 1500);
    await killer;
    expect(r.errors).toEqual([]);
    expect(r.failed).toEqual([]);
    expect(r.replies.length).toBeGreaterThan(200);
    const s = await stats(p.ports.admin);
    // Retries were never refused: Istio configures no budget and max_retries is 2^32-1.
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(0);
    // A refused connect puts the host in backoff (100 ms doubling), so in 1.5 s it is probed a
    // handful of times, not chosen for half the requests as LEAST_REQUEST did (a dead host has 0
    // active requests). Concurrent connects that fail together count once per probe window.
    const fails = s.get(`${C}.upstream_cx_connect_fail`)!;
    expect(fails).toBeGreaterThan(0);
    expect(fails).toBeLessThan(40);
    const bodies = new Set(r.replies.slice(-50).map((x) => x.body));
    expect(bodies.has('a')).toBe(false);
  });

  it('churn: one of three killed and restarted in turn, 6 times over ~4 s: 0 failed GETs', async () => {
    const ups = await three();
    const p = await fx.proxy(serviceYaml('ratings', ups.map((u) => u.port)));
    let stop = false;
    const chaos = (async () => {
      for (let k = 0; k < 6; k++) {
        await new Promise((r) => setTimeout(r, 300));
        const u = ups[k % 3];
        await u.kill();
        await new Promise((r) => setTimeout(r, 350)); // down for a while, serving nothing
        await u.restart();
      }
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
    })();
    const r = await load(p.ports.outbound, 12, 100_000, 20_000, () => stop);
    await chaos;
    expect(r.errors).toEqual([]);
    expect(r.failed).toEqual([]);
    expect(r.replies.length).toBeGreaterThan(300);
    // The restarted endpoints are used again (the connect backoff ends with a successful probe).
    const seen = new Set<string>();
    const back = await until(async () => {
      const tail = await Promise.all(Array.from({ length: 12 }, () => send(p.ports.outbound, { host: 'ratings' })));
      for (const x of tail) { expect(x.status).toBe(200); seen.add(x.body); }
      return seen.size === 3;
    }, 5000);
    expect(back).toBe(true);
    const s = await stats(p.ports.admin);
    expect(s.get(`${C}.upstream_rq_retry_overflow`)).toBe(0);
  });

  it('a connection reset before any response byte: an idempotent request goes once more to another host, a POST does not', async () => {
    const dropper = await fx.upstream((req) => req.socket.destroy());
    const live = await fx.upstream((_q, res) => res.end('live'));
    // ROUND_ROBIN: each request takes two turns (dropper, then live), so every first attempt meets
    // a reset on a fresh connection to the dropper.
    const p = await fx.proxy(serviceYaml('ratings', [dropper.port, live.port], `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ratings }
spec: { host: ratings, trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } } }
`));
    for (const method of ['GET', 'HEAD', 'PUT', 'DELETE']) {
      const r = await send(p.ports.outbound, { host: 'ratings', method });
      expect([method, r.status]).toEqual([method, 200]);
    }
    const post = await send(p.ports.outbound, { host: 'ratings', method: 'POST', body: 'x' });
    expect(post.status).toBe(503);
    expect(post.headers['x-meshlet-flags']).toBe('UC');
    expect(dropper.hits).toBe(5);
    expect(live.hits).toBe(4);
    // Each reset on a fresh connection is still the host's failure (counted, fed to outlier detection).
    expect((await stats(p.ports.admin)).get(`${C}.upstream_cx_destroy_remote_with_active_rq`)).toBe(5);
  });
});
