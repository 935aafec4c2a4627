// The external corpus over real sockets: a deterministic share of the cases (every llhttp,
// picohttpparser and http-garden case, every response case, and every 40th smuggler case by id)
// sent through a running proxy to real upstreams on loopback. Each case's client connects from its
// own 127.2.x.y address, so the X-Forwarded-For the proxy adds tells the recording upstream which
// case a request belongs to. What the upstream receives and what the client gets must be exactly
// what the in-process model (replay.ts) says, and the model has 0 security-relevant disagreements
// (corpus.test.ts), so neither has the running proxy. Every wait is bounded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Fixtures, serviceYaml } from '../helpers.ts';
import { loadCorpus, rawBytes, replayRequest, replayResponse, responseBytes, type CorpusCase, type RequestOutcome, type ResponseOutcome } from './replay.ts';
import { header, readWire } from './wire.ts';

const corpus = loadCorpus();
const fx = new Fixtures();
const sockets = new Set<Socket>();
const servers: Server[] = [];

/** The share: all non-smuggler cases, all responses, every 40th smuggler case (sorted by id). */
function share(cases: CorpusCase[]): CorpusCase[] {
  const smuggler = cases.filter((c) => c.source.repo === 'defparam/smuggler').sort((a, b) => (a.id < b.id ? -1 : 1));
  return [...cases.filter((c) => c.source.repo !== 'defparam/smuggler'), ...smuggler.filter((_, i) => i % 40 === 0)];
}
const cases = share(corpus.cases);
const addr = (i: number) => `127.2.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

interface Seen { xff: string; method: string; target: string; raw: string[]; body: Buffer; complete: boolean; trailers: string[] }
const seen: Seen[] = [];
const malformed: string[] = [];
let upstreamBytes = 0;

/** The recording upstream: reads the proxy's requests with the independent reader, answers each complete one. */
function recordingUpstream(): Promise<number> {
  const srv = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let recorded: Seen[] = [];
    let answered = 0;
    s.on('data', (d: Buffer) => {
      upstreamBytes += d.length;
      buf = Buffer.concat([buf, d]);
      const r = readWire(buf, true);
      if (r.malformed !== null) { malformed.push(`${r.malformed} in ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`); s.destroy(); return; }
      // Re-read from the start each time (a connection carries a few small requests): update the records.
      for (let k = 0; k < r.messages.length; k++) {
        const m = r.messages[k];
        const xff = (header(m.raw, 'x-forwarded-for') ?? '').split(',').at(-1)!.trim();
        const rec: Seen = { xff, method: m.method!, target: m.target!, raw: m.raw, body: m.body, complete: m.complete, trailers: m.trailers };
        if (k < recorded.length) Object.assign(recorded[k], rec); else { recorded.push(rec); seen.push(rec); }
      }
      while (answered < r.messages.length && r.messages[answered].complete) {
        s.write(r.messages[answered].method === 'HEAD' ? 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n' : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        answered++;
      }
      if (answered === r.messages.length && answered > 0) {
        // Everything answered: start over with the next bytes (one request at a time per connection).
        buf = Buffer.alloc(0);
        recorded = [];
        answered = 0;
      }
    });
  });
  servers.push(srv);
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port)));
}

/** The response upstream: `GET /r/<n>` gets response case n's bytes, then the upstream closes. */
function responseUpstream(): Promise<number> {
  const srv = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      const m = /^\S+ \/r\/(\d+) /.exec(text);
      const c = m ? cases[Number(m[1])] : undefined;
      if (c === undefined) { s.destroy(); return; }
      s.end(responseBytes(c));
    });
  });
  servers.push(srv);
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port)));
}

interface ClientResult { bytes: Buffer; closed: boolean }

/** One client connection from `local`: write, then collect until `done` holds, it closes, or `ms` pass. */
function client(port: number, local: string, payload: Buffer, done: (b: Buffer) => boolean, ms: number): Promise<ClientResult> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: local });
    sockets.add(s);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      s.destroy();
      sockets.delete(s);
      resolve({ bytes: Buffer.concat(chunks), closed });
    };
    const t = setTimeout(() => finish(false), ms);
    s.on('connect', () => s.write(payload));
    s.on('data', (d: Buffer) => { chunks.push(d); if (done(Buffer.concat(chunks))) finish(false); });
    s.on('error', () => {});
    s.on('close', () => finish(true));
  });
}

async function pool<T>(items: T[], width: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => { while (next < items.length) await fn(items[next++]); }));
}

interface Run { c: CorpusCase; i: number; model: RequestOutcome | ResponseOutcome; client: ClientResult }
const runs: Run[] = [];
let port = 0;

beforeAll(async () => {
  const rec = await recordingUpstream();
  const resp = await responseUpstream();
  fx.add(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  });
  // The response upstream closes after every answer (the corpus bytes say nothing about keep-alive):
  // one request per upstream connection, so no case lands on a connection the previous one closed.
  const oneShot = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: resp }
spec:
  host: resp
  trafficPolicy:
    connectionPool:
      http: { maxRequestsPerConnection: 1 }
`;
  const p = await fx.proxy([serviceYaml('up', [rec]), serviceYaml('a', [rec]), serviceYaml('hypnotoad.org', [rec]), serviceYaml('resp', [resp]), oneShot].join('---\n'));
  port = p.ports.outbound;

  await pool(cases.map((c, i) => ({ c, i })), 12, async ({ c, i }) => {
    if (c.kind === 'request') {
      const model = replayRequest(rawBytes(c));
      const forwardedComplete = model.forwarded.filter((f) => f.complete);
      const want = forwardedComplete.length + (model.status !== null ? 1 : 0);
      const methods = [...forwardedComplete.map((f) => f.method), 'GET'];
      // Done when the answers the model expects are here; a case that leaves the proxy waiting
      // (an incomplete head or body) ends after a short bound.
      const r = await client(port, addr(i), rawBytes(c), (b) => want > 0 && readWire(b, false, { methods }).messages.filter((m) => m.complete && m.status! >= 200).length >= want, want > 0 ? 5000 : 300);
      runs.push({ c, i, model, client: r });
    } else {
      const req = rawBytes(c).toString('latin1');
      const method = req.slice(0, req.indexOf(' '));
      const model = replayResponse(method, responseBytes(c));
      const r = await client(port, addr(i), Buffer.from(`${method} /r/${i} HTTP/1.1\r\nHost: resp\r\n\r\n`, 'latin1'),
        (b) => readWire(b, false, { methods: [method] }).messages.some((m) => m.complete && m.status! >= 200), 5000);
      runs.push({ c, i, model, client: r });
    }
  });
  // Let the upstream side settle: no new bytes for 150 ms (bounded at 3 s).
  const until = performance.now() + 3000;
  let last = -1;
  while (performance.now() < until && upstreamBytes !== last) {
    last = upstreamBytes;
    await new Promise((r) => setTimeout(r, 150));
  }
}, 120_000);

afterAll(async () => { await fx.closeAll(); });

function trimmed(raw: string[]): string[] {
  // Headers the proxy adds or owns are not part of the comparison.
  const skip = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-request-id', 'x-envoy-attempt-count', 'content-length', 'transfer-encoding', 'connection']);
  const out: string[] = [];
  for (let k = 0; k < raw.length; k += 2) if (!skip.has(raw[k].toLowerCase())) out.push(raw[k], raw[k + 1]);
  return out;
}

describe('external HTTP/1.1 corpus over real sockets through the proxy', () => {
  it('ran a representative share of the corpus', () => {
    expect(runs).toHaveLength(cases.length);
    const repos = new Set(runs.map((r) => r.c.source.repo));
    expect(repos.size).toBe(4);
    expect(runs.filter((r) => r.c.kind === 'response').length).toBe(93);
    console.log(`corpus over sockets: ${runs.length} cases (${runs.filter((r) => r.c.kind === 'response').length} responses)`);
  });

  it('nothing malformed reached an upstream', () => {
    expect(malformed).toEqual([]);
    // The share exercises the forwarding path, not only refusals.
    expect(seen.filter((x) => x.complete).length).toBeGreaterThan(50);
  });

  it('each request case: the upstream got exactly what the model forwards, the client exactly its answers', () => {
    const problems: string[] = [];
    for (const r of runs) {
      if (r.c.kind !== 'request') continue;
      const m = r.model as RequestOutcome;
      const ip = addr(r.i);
      const got = seen.filter((s) => s.xff === ip);
      const routable = m.forwarded.every((f) => f.host !== undefined);
      if (!routable) continue; // an HTTP/1.0 request without Host has no route: a local 404, nothing forwarded
      const wantComplete = m.forwarded.filter((f) => f.complete);
      const gotComplete = got.filter((s) => s.complete);
      const id = r.c.id;
      if (got.length > m.forwarded.length) problems.push(`${id}: upstream saw ${got.length} request(s), model forwards ${m.forwarded.length}`);
      if (gotComplete.length !== wantComplete.length) { problems.push(`${id}: ${gotComplete.length} complete at the upstream, model ${wantComplete.length}`); continue; }
      for (let k = 0; k < wantComplete.length; k++) {
        const w = wantComplete[k];
        const g = gotComplete[k];
        if (g.method !== w.method || g.target !== w.url) problems.push(`${id}: request ${k + 1} is ${g.method} ${g.target}, model ${w.method} ${w.url}`);
        if (!g.body.equals(w.body)) problems.push(`${id}: request ${k + 1} body ${JSON.stringify(g.body.toString('latin1'))}, model ${JSON.stringify(w.body.toString('latin1'))}`);
        // Every field the client sent and the model keeps arrives byte-exact (hop-by-hop ones excepted).
        const want = trimmed(w.raw);
        const have = trimmed(g.raw);
        for (let j = 0; j < want.length; j += 2) {
          const n = want[j].toLowerCase();
          if (['connection', 'keep-alive', 'te', 'trailer', 'upgrade', 'expect', 'proxy-connection'].includes(n) || n.startsWith('proxy-')) continue;
          if (!have.some((v, x) => x % 2 === 0 && v.toLowerCase() === n && have[x + 1] === want[j + 1])) problems.push(`${id}: field ${want[j]}: ${JSON.stringify(want[j + 1])} not forwarded as is`);
        }
        if (w.trailers !== null && g.trailers.join('\n') !== w.trailers.join('\n')) problems.push(`${id}: trailers ${JSON.stringify(g.trailers)}, model ${JSON.stringify(w.trailers)}`);
      }
      if (rawBytes(r.c).subarray(0, 24).toString('latin1') === 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') {
        // The listeners also speak h2c (docs/protocols.md): the full preface starts an HTTP/2 session
        // instead of a 400 (Envoy's AUTO codec does the same). Nothing was forwarded (checked
        // above); the client's first bytes are the server's SETTINGS frame (type 4).
        if (r.client.bytes.length < 9 || r.client.bytes[3] !== 4) problems.push(`${id}: no HTTP/2 SETTINGS frame in answer to the preface`);
        continue;
      }
      const methods = [...wantComplete.map((f) => f.method), 'GET'];
      const statuses = readWire(r.client.bytes, false, { methods, closed: r.client.closed }).messages.filter((x) => x.complete && x.status! >= 200).map((x) => x.status);
      const expected = [...wantComplete.map(() => 200), ...(m.status !== null ? [m.status] : [])];
      if (statuses.slice(0, expected.length).join() !== expected.join()) problems.push(`${id}: client got ${statuses.join(',') || 'nothing'}, model ${expected.join(',') || 'nothing'}`);
    }
    if (problems.length > 0) console.error(problems.join('\n'));
    expect(problems).toEqual([]);
  });

  it('each response case: the client got exactly what the model relays (or the 502/503, or a reset mid-body)', () => {
    const problems: string[] = [];
    for (const r of runs) {
      if (r.c.kind !== 'response') continue;
      const m = r.model as ResponseOutcome;
      const req = rawBytes(r.c).toString('latin1');
      const method = req.slice(0, req.indexOf(' '));
      const read = readWire(r.client.bytes, false, { methods: [method], closed: r.client.closed });
      if (read.malformed !== null && !(m.relayed && !m.complete)) { problems.push(`${r.c.id}: malformed answer: ${read.malformed}`); continue; }
      const final = read.messages.find((x) => x.status! >= 200);
      const id = r.c.id;
      if (m.relayed && m.complete) {
        if (final === undefined || !final.complete) { problems.push(`${id}: no complete response, model relays ${m.status}`); continue; }
        if (final.status !== m.status) problems.push(`${id}: status ${final.status}, model ${m.status}`);
        if (!final.body.equals(m.body)) problems.push(`${id}: body ${JSON.stringify(final.body.toString('latin1').slice(0, 60))}, model ${JSON.stringify(m.body.toString('latin1').slice(0, 60))}`);
        if (header(final.raw, 'date') === undefined) problems.push(`${id}: no Date`);
      } else if (m.relayed) {
        // Truncated: the client must never see a complete response.
        if (final !== undefined && final.complete) problems.push(`${id}: a truncated response arrived complete (${final.status})`);
      } else if (final === undefined || final.status !== m.status) {
        problems.push(`${id}: got ${final?.status ?? 'nothing'}, model ${m.status}`);
      }
    }
    if (problems.length > 0) console.error(problems.join('\n'));
    expect(problems).toEqual([]);
  });
});
