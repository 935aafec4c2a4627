// RE2 regexes on real sockets: a ReDoS header is answered without stalling the proxy, RE2-only
// syntax routes, and the admin /stats filter is RE2 with Envoy's partial-match semantics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echo, Fixtures, send, twoSubsetYaml } from '../helpers.ts';
import type { RunningProxy } from '../../proxy/main.ts';

const HOST = 'reviews.default.svc.cluster.local';
const fx = new Fixtures();
let p: RunningProxy;

beforeAll(async () => {
  const v1 = await fx.upstream(echo('v1'));
  const v2 = await fx.upstream(echo('v2'));
  p = await fx.proxy(twoSubsetYaml(HOST, { v1: v1.port, v2: v2.port }, `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
    - name: redos
      match: [{ headers: { x-user: { regex: "(a+)+b" } } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: re2-syntax
      match: [{ uri: { regex: "(?i)/users/(?P<id>[[:digit:]]+)\\\\z" } }]
      route: [{ destination: { host: reviews, subset: v2 } }]
    - route: [{ destination: { host: reviews, subset: v1 } }]
`));
});
afterAll(() => fx.closeAll());

describe('route regexes are RE2', () => {
  it('(a+)+b against 30 a\'s in a header: answered, and the event loop keeps ticking', async () => {
    // JS RegExp needed 1-10 s for 28 a's (doubling per extra a), with the whole proxy frozen.
    // Behaviour asserted: the request is answered by the fallback route, and a 10 ms timer never
    // waits 2 s (the event loop was not pinned; JS took 4-30 s here). Longer inputs: test/unit/regex.test.ts.
    let last = performance.now();
    let worstGap = 0;
    const ticker = setInterval(() => { const now = performance.now(); worstGap = Math.max(worstGap, now - last); last = now; }, 10);
    try {
      for (const n of [30]) {
        const r = await send(p.ports.outbound, { host: 'reviews', headers: { 'x-user': 'a'.repeat(n) } });
        expect(r.status).toBe(200);
        expect(r.headers['x-upstream']).toBe('v1');
      }
      const m = await send(p.ports.outbound, { host: 'reviews', headers: { 'x-user': 'aaab' } });
      expect(m.headers['x-upstream']).toBe('v2');
    } finally {
      clearInterval(ticker);
    }
    expect(worstGap).toBeLessThan(2000);
  });

  it('(?i), (?P<name>...), [[:digit:]] and \\z mean what RE2 says', async () => {
    const to = async (path: string) => (await send(p.ports.outbound, { host: 'reviews', path })).headers['x-upstream'];
    expect(await to('/USERS/42')).toBe('v2');
    expect(await to('/users/42?x=1')).toBe('v2'); // the query is not part of uri
    expect(await to('/users/42/')).toBe('v1');
    expect(await to('/users/x')).toBe('v1');
  });
});

describe('admin /stats?filter= is RE2, partial match', () => {
  it('filters by an RE2 search, anchors when asked, and refuses an invalid pattern with RE2\'s message', async () => {
    await send(p.ports.outbound, { host: 'reviews' });
    const lines = async (f: string) => (await send(p.ports.admin, { path: `/stats?filter=${encodeURIComponent(f)}` })).body.trim().split('\n').filter(Boolean);
    const partial = await lines('upstream_rq_total');
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.every((l) => l.includes('upstream_rq_total'))).toBe(true);
    expect(await lines('(?i)UPSTREAM_RQ_TOTAL')).toEqual(partial);
    const anchored = await lines(`^cluster\\.outbound\\|80\\|v1\\|${HOST.replace(/\./g, '\\.')};\\.upstream_rq_total$`);
    expect(anchored).toHaveLength(1);
    expect(anchored[0]).toMatch(new RegExp(`^cluster\\.outbound\\|80\\|v1\\|${HOST.replace(/\./g, '\\.')};\\.upstream_rq_total: [1-9]\\d*$`));
    expect(await lines('^upstream_rq_total')).toEqual([]);
    expect(await lines('upstream_rq_total\\z')).toEqual(partial);
    const bad = await send(p.ports.admin, { path: `/stats?filter=${encodeURIComponent('(?=x)y')}` });
    expect(bad.status).toBe(400);
    expect(bad.body).toBe('invalid filter: error parsing regexp: invalid or unsupported Perl syntax: `(?=`\n');
    // A ReDoS filter is answered too.
    const redos = await send(p.ports.admin, { path: `/stats?filter=${encodeURIComponent('^(a+)+b$')}` });
    expect(redos.status).toBe(200);
  });
});
