// EndpointPool on real loopback sockets: admission order (max_requests at attach, pending
// checked before queueing, oldest first), maxConnections never rejecting, connect failures,
// connect timeouts, and idle connections the upstream drops.
import { afterAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { EndpointPool, type Breakers, type Conn, type PoolFailure, type Waiter } from '../../proxy/upstream/pool.ts';
import { newClusterStats } from '../../proxy/telemetry/stats.ts';
import { DEFAULT_CONNECTION_POOL, type ConnectionPoolSpec } from '../../proxy/config/schema.ts';
import { deadPort } from '../helpers.ts';
import { blackhole, until } from './lib.ts';

const closers: Array<() => Promise<void> | void> = [];
afterAll(async () => { for (const c of closers.reverse()) await c(); });

/** A TCP server that accepts and holds sockets (the pool only needs connections, not requests). */
async function tcpServer(onSocket: (s: Socket) => void = () => {}): Promise<{ port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => { sockets.add(s); s.on('error', () => {}); s.once('close', () => sockets.delete(s)); onSocket(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
  return { port: (server.address() as { port: number }).port, sockets };
}

function breakers(limits: Partial<ConnectionPoolSpec>): Breakers {
  return { limits: { ...DEFAULT_CONNECTION_POOL, ...limits }, stats: newClusterStats(), cxActive: 0, rqActive: 0, pendingActive: 0, retriesActive: 0, hostsInBackoff: 0 };
}

class W implements Waiter {
  conn: Conn | null = null;
  failure: { reason: PoolFailure; detail: string } | null = null;
  readonly name: string;
  readonly log: string[];
  readonly fresh: boolean;
  constructor(name: string, log: string[], fresh = false) { this.name = name; this.log = log; this.fresh = fresh; }
  onAttached(conn: Conn): void { this.conn = conn; this.log.push(`${this.name}:attached`); }
  onPoolFailure(reason: PoolFailure, detail: string): void { this.failure = { reason, detail }; this.log.push(`${this.name}:${reason}`); }
}

function pool(port: number, br: Breakers): EndpointPool {
  const p = new EndpointPool('127.0.0.1', port, br);
  closers.push(() => p.destroy());
  return p;
}

describe('EndpointPool admission', () => {
  it('pending is checked before queueing, max_connections only stops growth, freed connections serve the oldest waiter', async () => {
    const { port } = await tcpServer();
    const br = breakers({ maxConnections: 1, maxPendingRequests: 3 });
    const p = pool(port, br);
    const log: string[] = [];
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => new W(n, log));
    p.request(a); p.request(b); p.request(c);
    p.request(d); // a, b, c all wait until the connect completes: the queue (3) is full
    expect(log).toEqual(['d:overflow']);
    expect(br.stats.upstream_rq_pending_overflow).toBe(1);
    expect(br.stats.upstream_cx_overflow).toBeGreaterThan(0); // b and c could not open a second connection
    await until(async () => a.conn !== null, 2000);
    expect(log).toEqual(['d:overflow', 'a:attached']);
    expect(br.stats.upstream_cx_total).toBe(1);
    expect(br.stats.upstream_rq_pending_total).toBe(3);
    p.release(a.conn!, true);
    p.release(b.conn!, true);
    expect(log).toEqual(['d:overflow', 'a:attached', 'b:attached', 'c:attached']);
    expect(br.stats.upstream_rq_pending_active).toBe(0);
    expect(br.stats.upstream_rq_total).toBe(3);
    p.release(c.conn!, true);
    expect(br.stats.upstream_rq_active).toBe(0);
  });

  it('a waiter that needs a fresh connection never gets a used one (resend after a stale keep-alive connection)', async () => {
    const { port } = await tcpServer();
    const br = breakers({ maxConnections: 1, maxPendingRequests: 3 });
    const p = pool(port, br);
    const log: string[] = [];
    const a = new W('a', log);
    p.request(a);
    await until(async () => a.conn !== null, 2000);
    const used = a.conn!;
    // A fresh waiter queued while the only connection is busy is passed over when it is released...
    const f = new W('f', log, true);
    p.request(f);
    p.release(used, true);
    expect(f.conn).toBeNull();
    // ...and at the connection limit the idle (suspect) connection makes room for a new one.
    await until(async () => f.conn !== null, 2000);
    expect(f.conn).not.toBe(used);
    expect(f.conn!.requests).toBe(1);
    expect(used.closed).toBe(true);
    expect(br.stats.upstream_cx_total).toBe(2);
    expect(br.cxActive).toBe(1);
    // An ordinary waiter takes the warm connection as before.
    const fc = f.conn!;
    p.release(fc, true);
    const b = new W('b', log);
    p.request(b);
    expect(b.conn).toBe(fc);
    p.release(fc, true);
  });

  it('http1MaxPendingRequests 1: one request may wait beside the active one, the third overflows', async () => {
    const { port } = await tcpServer();
    const br = breakers({ maxConnections: 1, maxPendingRequests: 1 });
    const p = pool(port, br);
    const log: string[] = [];
    const a = new W('a', log);
    p.request(a);
    await until(async () => a.conn !== null, 2000);
    const b = new W('b', log), c = new W('c', log);
    p.request(b); p.request(c);
    expect(log).toEqual(['a:attached', 'c:overflow']);
    expect(br.stats['circuit_breakers.default.rq_pending_open']).toBe(1);
    expect(br.stats['circuit_breakers.default.cx_open']).toBe(1);
    p.release(a.conn!, true);
    expect(log).toEqual(['a:attached', 'c:overflow', 'b:attached']);
    expect(br.stats.upstream_cx_total).toBe(1);
    p.release(b.conn!, true);
  });

  it('max_requests is checked when a request attaches to a connection', async () => {
    const { port } = await tcpServer();
    const br = breakers({ maxRequests: 1 });
    const p = pool(port, br);
    const log: string[] = [];
    const a = new W('a', log), b = new W('b', log);
    p.request(a); p.request(b); // both pending, two connects
    await until(async () => log.length === 2, 2000);
    expect(log).toEqual(['a:attached', 'b:overflow']);
    expect(br.stats.upstream_rq_pending_overflow).toBe(1);
    // An idle connection does not bypass it either.
    const c = new W('c', log);
    p.request(c);
    expect(log[2]).toBe('c:overflow');
    p.release(a.conn!, true);
    const d = new W('d', log);
    p.request(d);
    expect(log[3]).toBe('d:attached');
    p.release(d.conn!, true);
  });

  it('maxConnections never rejects: a host with no connection opens one anyway (counted as cx_overflow)', async () => {
    const s1 = await tcpServer(), s2 = await tcpServer();
    const br = breakers({ maxConnections: 1 });
    const p1 = pool(s1.port, br), p2 = pool(s2.port, br);
    const log: string[] = [];
    const a = new W('a', log), b = new W('b', log);
    p1.request(a);
    await until(async () => a.conn !== null, 2000);
    p2.request(b);
    await until(async () => b.conn !== null, 2000);
    expect(log).toEqual(['a:attached', 'b:attached']);
    expect(br.stats.upstream_cx_overflow).toBe(1);
    expect(br.cxActive).toBe(2);
    p1.release(a.conn!, true); p2.release(b.conn!, true);
  });
});

describe('EndpointPool failures', () => {
  it('a connect failure fails the requests queued beyond connections still on their way', async () => {
    const port = await deadPort();
    const br = breakers({ maxConnections: 1 });
    const p = pool(port, br);
    const log: string[] = [];
    const ws = ['a', 'b', 'c'].map((n) => new W(n, log));
    for (const w of ws) p.request(w);
    await until(async () => log.length === 3, 2000);
    expect(log).toEqual(['a:connect_failure', 'b:connect_failure', 'c:connect_failure']);
    expect(ws[0].failure!.detail).toBe('delayed connect error: Connection refused');
    expect(br.stats.upstream_cx_connect_fail).toBe(1);
    expect(br.stats.upstream_rq_pending_failure_eject).toBe(3);
    expect(br.stats.upstream_rq_pending_active).toBe(0);
    expect(br.cxActive).toBe(0);
    expect(p.hostStats.cx_connect_fail).toBe(1);
  });

  it('connect timeout: connection timeout failure, upstream_cx_connect_timeout', async () => {
    const bh = await blackhole(4000);
    closers.push(() => bh.close());
    const br = breakers({ connectTimeoutMs: 200 });
    const p = pool(bh.port, br);
    const log: string[] = [];
    const a = new W('a', log);
    const t0 = performance.now();
    p.request(a);
    await until(async () => log.length === 1, 3000);
    expect(log).toEqual(['a:connect_timeout']);
    expect(a.failure!.detail).toBe('connection timeout');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    expect(br.stats.upstream_cx_connect_timeout).toBe(1);
    expect(br.stats.upstream_cx_connect_fail).toBe(1);
    expect(br.cxActive).toBe(0);
  });

  it('an idle, never-used connection the upstream resets neither crashes the process nor stays in the pool', async () => {
    const srv = await tcpServer((s) => setTimeout(() => s.resetAndDestroy(), 50));
    const br = breakers({});
    const p = pool(srv.port, br);
    const log: string[] = [];
    const a = new W('a', log);
    p.request(a);
    expect(p.cancel(a)).toBe(true); // gave up before the connect finished: the connection goes idle unused
    expect(br.stats.upstream_rq_cancelled).toBe(1);
    await until(async () => br.stats.upstream_cx_total === 1 && br.cxActive === 0, 2000);
    expect(br.cxActive).toBe(0);
    expect(p.connectionCount).toBe(0);
  });

  it('an idle connection the upstream closed (FIN) is not handed to the next request', async () => {
    const srv = await tcpServer((s) => setTimeout(() => s.end(), 50));
    const br = breakers({});
    const p = pool(srv.port, br);
    const log: string[] = [];
    const a = new W('a', log);
    p.request(a);
    p.cancel(a);
    await until(async () => br.stats.upstream_cx_total === 1 && br.cxActive === 0, 2000);
    expect(br.cxActive).toBe(0);
    const b = new W('b', log);
    p.request(b);
    await until(async () => b.conn !== null, 2000);
    expect(br.stats.upstream_cx_total).toBe(2); // a fresh connection, not the dead one
    p.release(b.conn!, true);
  });
});
