// The Node pipe references of the hop bench (bench/peers/tcp-pipe.ts, tls-pipe.ts) are the floor
// the meshlet pairs are read against, so they must do the same work as a hop: carry a request end
// to end, and with TLS really verify both sides (a floor that skipped verification would be
// cheaper than any real mTLS hop). And the ratio block must compute what it says.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { request } from 'undici';
import { runNode, startUpstream, type Upstream } from '../helpers.ts';
import { jsonPort, peerEnv, startProc, type Proc } from '../../bench/lib/procs.ts';
import { peerFile } from '../../bench/lib/arms.ts';
import { hopArms, hopRatios, makeCerts, type HopResult } from '../../bench/hop.ts';

let up: Upstream;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-pipes-'));
  up = await startUpstream((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { res.setHeader('x-up', '1'); res.end(`${req.method} ${req.url} ${req.headers.host} ${body}`); });
  });
});
afterAll(async () => { await up.close(); rmSync(dir, { recursive: true, force: true }); });

const arm = (name: string) => hopArms().find((a) => a.name === name)!;

async function through(port: number): Promise<{ status: number; body: string; up: string | string[] | undefined }> {
  const r = await request(`http://127.0.0.1:${port}/x?y=1`, { method: 'POST', headers: { host: 'upstream.bench' }, body: 'ping', headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: r.statusCode, body: await r.body.text(), up: r.headers['x-up'] };
}

describe('pipe pairs of the hop bench', () => {
  it('tcp-pipe-pair carries a request through two pipes and back', async () => {
    const hop = await arm('tcp-pipe-pair').start(up.port, dir, null);
    try {
      expect(hop.procs).toHaveLength(2);
      expect(await through(hop.port)).toEqual({ status: 200, body: 'POST /x?y=1 upstream.bench ping', up: '1' });
    } finally { await hop.stop(); }
  });

  it('tls-pipe-pair carries it over mutual TLS 1.3; the inbound side refuses a client without a certificate', async () => {
    const certs = makeCerts(dir)!;
    const hop = await arm('tls-pipe-pair').start(up.port, dir, certs);
    try {
      expect(await through(hop.port)).toEqual({ status: 200, body: 'POST /x?y=1 upstream.bench ping', up: '1' });
      // The inbound pipe, called directly with the CA but no client certificate: TLS 1.3 finishes
      // the client's side of the handshake, then the server's alert ends the connection before
      // any byte of the upstream's answer.
      const inbound = hop.procs[1];
      const outcome = await new Promise<string>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: inbound.port, ca: readFileSync(certs.ca), servername: 'inbound.bench', minVersion: 'TLSv1.3' });
        let data = '';
        s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nhost: upstream.bench\r\n\r\n'));
        s.on('data', (d) => { data += d; });
        s.on('error', (e) => resolve(`error: ${(e as NodeJS.ErrnoException).code ?? e.message}`));
        s.on('close', () => resolve(data ? `data: ${data}` : 'closed'));
        s.setTimeout(5000, () => { s.destroy(); resolve('timeout'); });
      });
      expect(outcome).toBe('error: ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    } finally { await hop.stop(); }
  });

  it('the outbound tls pipe refuses a server whose certificate does not carry the name it expects', async () => {
    const certs = makeCerts(dir)!;
    const start = (side: string, args: string[]): Promise<Proc> => startProc(`tls-pipe-${side}`, process.execPath, [peerFile('tls-pipe.ts'), '--port', '0', ...args], { ready: jsonPort, env: peerEnv() });
    const inbound = await start('in', ['--upstream', `127.0.0.1:${up.port}`, '--tls', 'listen', '--cert', certs.inCert, '--key', certs.inKey, '--ca', certs.ca]);
    try {
      const outbound = await start('out', ['--upstream', `127.0.0.1:${inbound.port}`, '--tls', 'connect', '--cert', certs.outCert, '--key', certs.outKey, '--ca', certs.ca, '--servername', 'someone-else.bench']);
      try {
        await expect(through(outbound.port)).rejects.toThrow(/other side closed|socket|reset/i);
      } finally { await outbound.stop(); }
    } finally { await inbound.stop(); }
  });
});

describe('peer start-up', () => {
  it('--warm loads a peer\'s modules into the compile cache and exits without listening', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'meshlet-peer-cache-'));
    try {
      const r = await runNode([peerFile('tls-pipe.ts'), '--warm'], { env: { ...process.env, NODE_COMPILE_CACHE: cache }, killAfterMs: 20_000 });
      expect(r.code, r.err).toBe(0);
      expect(r.out).toBe(''); // no {"port": …} line: it never listened
      // One entry per compiled module: the peer, args.ts and pipe.ts at least.
      const entries = readdirSync(cache, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
      expect(entries.length).toBeGreaterThanOrEqual(3);
    } finally { rmSync(cache, { recursive: true, force: true }); }
  });
});

describe('hop ratios', () => {
  const row = (arm: string, round: number, closed: number, fixed: number): HopResult => ({ arm, round, about: '', cpuUsPerReq: closed, fixedCpuUsPerReq: fixed });
  it('divides CPU per request of A by B per round, skipping rounds or arms that did not run', () => {
    const out = hopRatios([
      row('meshlet-mesh-mtls', 1, 150, 300), row('haproxy-pair-mtls', 1, 100, 250), row('tls-pipe-pair', 1, 120, 200),
      row('meshlet-mesh-mtls', 2, 160, 330), { arm: 'haproxy-pair-mtls', round: 2, about: '', failed: 'boom' }, row('tls-pipe-pair', 2, 80, 220),
    ]);
    const lines = out.split('\n');
    expect(lines[0]).toBe('| CPU µs/req, A ÷ B | round | closed loop | @fixed rate | goal |');
    expect(lines).toContain('| meshlet-mesh-mtls ÷ haproxy-pair-mtls | 1 | 1.50 | 1.20 | ≤ 1.5 |');
    expect(lines).toContain('| meshlet-mesh-mtls ÷ tls-pipe-pair | 1 | 1.25 | 1.50 |  |');
    expect(lines).toContain('| meshlet-mesh-mtls ÷ tls-pipe-pair | 2 | 2.00 | 1.50 |  |');
    expect(lines).toContain('| tls-pipe-pair ÷ haproxy-pair-mtls | 1 | 1.20 | 0.80 |  |');
    // Round 2's haproxy arm failed: no row divides by it.
    expect(lines.filter((l) => l.includes('haproxy-pair-mtls | 2'))).toEqual([]);
    expect(lines).toHaveLength(2 + 4);
  });
  it('is empty when no pair of arms ran', () => {
    expect(hopRatios([row('direct', 1, 0, 0)])).toBe('');
  });
});
