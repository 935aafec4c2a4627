// The external HTTP/1.1 corpus (test/corpus/README.md) replayed against the engine: every case
// in-process through the engine's own parser, driven as the connections drive it. Security-relevant
// disagreements (forwarding what must be refused, a body framed differently than the corpus
// parses it, a changed header value, an invalid response relayed, a crash, a second request) must
// be 0; every other disagreement is pinned in disagreements.json with its reason (explained in
// docs/http-conformance.md), so a new one fails here. The socket-level share is in corpus-socket.test.ts.
import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import {
  classifyRequest, classifyResponse, loadCorpus, replay, replayRequest, replayResponse, type CorpusCase, type Verdict,
} from './replay.ts';

const corpus = loadCorpus();
const pinned = JSON.parse(readFileSync(new URL('./disagreements.json', import.meta.url), 'utf8')) as Record<string, string>;

/** The reasons a disagreement may have (docs/http-conformance.md explains each). */
const REASONS = new Set(['missing-host', 'invalid-host', 'incomplete-head', 'asterisk-form', 'not-http', 'http09', 'fragment', 'userinfo',
  'response-transfer-coding', 'chunk-size-bound']);

describe('external HTTP/1.1 corpus, in-process', () => {
  it('holds the 9 471 cases from the four sources', () => {
    expect(corpus.count).toBe(9471);
    expect(corpus.cases).toHaveLength(9471);
    const repos = new Set(corpus.cases.map((c) => c.source.repo));
    expect([...repos].sort()).toEqual(['defparam/smuggler', 'h2o/picohttpparser', 'narfindustries/http-garden', 'nodejs/llhttp']);
  });

  it('every case: 0 security-relevant disagreements, and exactly the pinned non-security ones', () => {
    const counts: Record<Verdict, number> = { agree: 0, disagree: 0, security: 0 };
    const security: string[] = [];
    const disagree = new Map<string, string>();
    for (const c of corpus.cases) {
      const { result } = replay(c);
      counts[result.verdict]++;
      if (result.verdict === 'security') security.push(`${c.id}: ${result.why}`);
      else if (result.verdict === 'disagree') disagree.set(c.id, result.why);
    }
    mkdirSync(new URL('../artifacts/', import.meta.url), { recursive: true });
    writeFileSync(new URL('../artifacts/corpus-counts.json', import.meta.url), `${JSON.stringify({ cases: corpus.cases.length, ...counts }, null, 1)}\n`);
    console.log(`corpus in-process: ${corpus.cases.length} cases: ${counts.agree} agree, ${counts.disagree} disagree, ${counts.security} security`);
    expect(security).toEqual([]);
    // A new disagreement, or a pinned one that went away: re-pin deliberately (test/corpus/pin.ts).
    const unexpected = [...disagree].filter(([id]) => pinned[id] === undefined).map(([id, why]) => `${id}: ${why}`);
    const gone = Object.keys(pinned).filter((id) => !disagree.has(id));
    expect(unexpected).toEqual([]);
    expect(gone).toEqual([]);
    for (const [id, reason] of Object.entries(pinned)) expect(REASONS, id).toContain(reason);
    expect(counts.agree + counts.disagree).toBe(corpus.cases.length);
  });

  it('the classifier can fail: a second request, a body framed differently and a relayed invalid response are security', () => {
    const byId = new Map(corpus.cases.map((c) => [c.id, c] as const));
    // CL.TE probe the corpus refuses: pretend the engine forwarded it.
    const clte = corpus.cases.find((c) => c.kind === 'request' && c.expect === 'reject' && c.expect_detail.forward_max === 0 && c.id.endsWith(':clte'))!;
    const o = replayRequest(Buffer.from(clte.raw_base64, 'base64'));
    expect(o.forwarded).toEqual([]);
    const forged = { ...o, status: null, forwarded: [{ method: 'POST', url: '/', host: 'up', raw: [], body: Buffer.from('Z'), complete: true, trailers: null }] };
    expect(classifyRequest(clte, forged).verdict).toBe('security');
    // Two pipelined requests the corpus reads as two: a different body for the first is a desync.
    const two = byId.get('llhttp:test/request/pipelining.md:4+host')!;
    const p = replayRequest(Buffer.from(two.raw_base64, 'base64'));
    expect(classifyRequest(two, p).verdict).toBe('agree');
    const shifted = { ...p, forwarded: p.forwarded.map((f, i) => (i === 0 ? { ...f, body: Buffer.from('AAA\r\n') } : f)) };
    expect(classifyRequest(two, shifted).verdict).toBe('security');
    // A response the corpus refuses (bare CR in the head) relayed whole.
    const bad = byId.get('llhttp:test/response/invalid.md:108')! as CorpusCase;
    const r = replayResponse('GET', Buffer.from(bad.response_base64!, 'base64'));
    expect(r.relayed).toBe(false);
    expect(classifyResponse(bad, { ...r, relayed: true, complete: true, status: 200 }).verdict).toBe('security');
  });

  it('the issue 13 vectors: TE with U+00A0 / U+0085, absolute-form, leading-zero chunk sizes, strict chunk lines', () => {
    const req = (s: string) => replayRequest(Buffer.from(s, 'latin1'));
    for (const te of ['chunked\xa0', '\xa0chunked', 'chunked\x85', '\ufeffchunked'.replace('\ufeff', '\xef\xbb\xbf'), 'chunked\x0b']) {
      const o = req(`POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: ${te}\r\n\r\n1\r\nZ\r\n0\r\n\r\n`);
      expect(o.forwarded, JSON.stringify(te)).toEqual([]);
      expect(o.status, JSON.stringify(te)).toBe(400); // chunked is not the final coding: MUST 400 (RFC 9112 section 6.3)
    }
    const r = replayResponse('GET', Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\xa0\r\n\r\n1\r\nZ\r\n0\r\n\r\n', 'latin1'));
    expect(r.status).toBe(502);
    // Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 section 6.1), both ways.
    expect(req('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n').status).toBe(400);
    expect(replayResponse('GET', Buffer.from('HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nZ\r\n0\r\n\r\n')).status).toBe(502);
    const abs = req('GET http://Reviews:9080/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n');
    expect(abs.forwarded.map((f) => [f.url, f.host, f.raw])).toEqual([['/x?y=1', 'Reviews:9080', ['Host', 'Reviews:9080']]]);
    expect(req('GET http://reviews:9080 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n').forwarded[0].url).toBe('/');
    expect(req('GET http://reviews:9080?q HTTP/1.1\r\nHost: reviews\r\n\r\n').forwarded[0].url).toBe('/?q');
    expect(req('GET http://u:p@reviews/ HTTP/1.1\r\nHost: reviews\r\n\r\n').status).toBe(400);
    expect(req('GET ftp://reviews/ HTTP/1.1\r\nHost: reviews\r\n\r\n').status).toBe(400);
    const lz = req('POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n00000000000001\r\nZ\r\n0000\r\n\r\n');
    expect(lz.forwarded.map((f) => [f.body.toString(), f.complete])).toEqual([['Z', true]]);
    expect(req('POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n').status).toBe(400); // 2^48: too large
    for (const line of ['a \r\n', '2;\r\n', '2;=x\r\n', '2;a=\r\n', '2;a="x\r\n']) {
      expect(req(`POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n${line}`).status, JSON.stringify(line)).toBe(400);
    }
    for (const line of ['2;a\r\n', '2 ;a=b\r\n', '2;a="q\\"x" ;b\r\n']) {
      const o = req(`POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n${line}ok\r\n0\r\n\r\n`);
      expect(o.forwarded.map((f) => f.body.toString()), JSON.stringify(line)).toEqual(['ok']);
    }
    for (const target of ['!', '*', 'x', '/\x80', '/a#frag', '/\x7f']) {
      expect(req(`GET ${target} HTTP/1.1\r\nHost: up\r\n\r\n`).status, JSON.stringify(target)).toBe(400);
    }
    expect(req('PRI * HTTP/1.1\r\nHost: up\r\n\r\n').status).toBe(400);
    for (const host of ['up:80x', 'user@up', 'up:1:2', '[::1', 'up]', 'up\x80']) {
      expect(req(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`).code, JSON.stringify(host)).toBe('HPE_INVALID_HOST');
    }
    for (const host of ['up', 'up:8080', '[::1]:8080', '[::1]', '10.0.0.1', 'reviews.default.svc.cluster.local:9080', '']) {
      expect(req(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`).forwarded.map((f) => f.host), JSON.stringify(host)).toEqual([host]);
    }
    expect(req('OPTIONS * HTTP/1.1\r\nHost: up\r\n\r\n').forwarded.map((f) => f.url)).toEqual(['*']);
  });
});
