// `meshlet curl` (and `meshlet load -curl`) with fortio's curl flags: head as received on stderr
// (stdout with -curl-stdout-headers), body on stdout, exit 0 only for 200.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, type Upstream } from '../helpers.ts';
import { rawServer, run, type RawServer } from './lib.ts';

let ok: Upstream, unavailable: Upstream, created: Upstream, raw: RawServer, chunked: Upstream;
beforeAll(async () => {
  ok = await startUpstream((_q, r) => { r.setHeader('X-Custom-Case', 'yes'); r.end('ok'); });
  unavailable = await startUpstream((_q, r) => { r.statusCode = 503; r.end('no'); });
  created = await startUpstream((_q, r) => { r.statusCode = 201; r.end('made'); });
  chunked = await startUpstream((_q, r) => { r.write('a'); setTimeout(() => r.end('b'), 10); });
  raw = await rawServer((s) => (s.line.startsWith('GET /old') ? { status: 301, headers: ['Location: /new'] } : { body: `${s.line}|${s.body}` }));
});
afterAll(async () => { await ok.close(); await unavailable.close(); await created.close(); await chunked.close(); await raw.close(); });

describe('meshlet curl', () => {
  it('200: the head as received on stderr, the body on stdout, exit 0; -quiet and -loglevel are accepted', async () => {
    const [plain, quiet, level] = await Promise.all([
      run(['curl', `http://127.0.0.1:${ok.port}/`]),
      run(['curl', '-quiet', `http://127.0.0.1:${ok.port}/`]),
      run(['curl', '-loglevel', 'Warning', `http://127.0.0.1:${ok.port}/`]),
    ]);
    for (const r of [plain, quiet, level]) {
      expect(r.code).toBe(0);
      expect(r.out).toBe('ok');
      expect(r.err).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(r.err).toContain('X-Custom-Case: yes\r\n'); // as the server spelled it
      expect(r.err.endsWith('\r\n\r\n')).toBe(true);
    }
  });
  it('exit 1 for 503 and for 201 (only 200 is success, as fortio); connection refused exits 1', async () => {
    const dead = await startUpstream(() => {});
    await dead.close();
    const [a, b, c] = await Promise.all([
      run(['curl', `http://127.0.0.1:${unavailable.port}/`]),
      run(['curl', `http://127.0.0.1:${created.port}/`]),
      run(['curl', '-timeout', '1s', `http://127.0.0.1:${dead.port}/`]),
    ]);
    expect([a.code, b.code, c.code]).toEqual([1, 1, 1]);
    expect(a.out).toBe('no');
    expect(a.err).toMatch(/Error status 503/);
    expect(c.out).toBe('');
  });
  it('-curl-stdout-headers puts the head on stdout; chunked bodies come out de-chunked', async () => {
    const [h, ch] = await Promise.all([
      run(['curl', '-curl-stdout-headers', `http://127.0.0.1:${ok.port}/`]),
      run(['curl', `http://127.0.0.1:${chunked.port}/`]),
    ]);
    expect(h.out).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/);
    expect(ch.out).toBe('ab');
  });
  it('-X, -payload, -stream (payload from stdin), -L follows the redirect', async () => {
    const [x, stream, follow, nofollow] = await Promise.all([
      run(['curl', '-X', 'PUT', '-payload', 'abc', `http://127.0.0.1:${raw.port}/p`]),
      run(['curl', '-stream', `http://127.0.0.1:${raw.port}/s`], { stdin: 'from-stdin' }),
      run(['curl', '-L', `http://127.0.0.1:${raw.port}/old`]),
      run(['curl', `http://127.0.0.1:${raw.port}/old`]),
    ]);
    expect(x.out).toBe('PUT /p HTTP/1.1|abc');
    expect(stream.out).toBe('POST /s HTTP/1.1|from-stdin');
    expect(follow.code).toBe(0);
    expect(follow.out).toBe('GET /new HTTP/1.1|');
    expect(follow.err).not.toContain('301');
    expect(nofollow.code).toBe(1);
    expect(nofollow.err).toMatch(/^HTTP\/1\.1 301 /);
  });
  it('meshlet load -curl fetches once; unknown curl flags exit 2; -h2 exits 2 (not in curl mode)', async () => {
    const [lc, bad, h2] = await Promise.all([
      run(['load', '-curl', `http://127.0.0.1:${ok.port}/`]),
      run(['curl', '-c', '2', `http://127.0.0.1:${ok.port}/`]),
      run(['curl', '-h2', `http://127.0.0.1:${ok.port}/`]),
    ]);
    expect(lc.code).toBe(0);
    expect(lc.out).toBe('ok');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('flag provided but not defined: -c');
    expect(h2.code).toBe(2);
    expect(h2.err).toContain('-h2: not supported in curl mode');
  });
});
