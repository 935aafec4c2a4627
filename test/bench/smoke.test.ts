// The harness cannot rot: `npm run bench -- --smoke` runs end to end, and each peer proxy really
// proxies. No speed assertions anywhere: CI machines are shared and noisy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'undici';
import { runNode, startUpstream, type Upstream } from '../helpers.ts';
import { startProc, jsonPort } from '../../bench/lib/procs.ts';
import { allArms, type Arm } from '../../bench/lib/arms.ts';
import { PLANS, benchArms } from '../../bench/run.ts';

const RUN = new URL('../../bench/run.ts', import.meta.url).pathname;
const PEERS = new URL('../../bench/peers/', import.meta.url).pathname;

describe('bench harness', () => {
  it('--smoke prints the table with a row for every arm (measured, skipped or failed with a reason) and writes JSON and SVG', async () => {
    // Async: a synchronous spawn would block vitest's worker for the whole run.
    const res = await runNode([RUN, '--smoke'], { killAfterMs: 100_000 });
    const r = { status: res.code, stdout: res.out, stderr: res.err };
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^node v\d+\.\d+\.\d+ · \d+ cores · closed loop: .+ · fixed rate: \d+ rps open loop \(meshlet load\)/m);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| arm'));
    const arms = rows.map((l) => l.split('|')[1].trim());
    expect(arms).toEqual(['direct', 'meshlet-realistic', 'meshlet-minimal', 'undici-dispatch', 'nginx', 'haproxy']);
    for (const row of rows) {
      const cells = row.split('|').map((c) => c.trim());
      // Either numbers (rps, ratio, …) or an explicit reason.
      expect(/^\d+$/.test(cells[2]) || /^(skipped|failed): .+/.test(cells[2]), row).toBe(true);
    }
    expect(rows[0]).toMatch(/^\| direct \| \d+ \| 1\.00 \|/);
    const m = /wrote (\S+\.json) and (\S+\.svg)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const json = JSON.parse(readFileSync(m![1], 'utf8'));
    expect(json.results.map((x: { arm: string }) => x.arm)).toEqual(arms);
    expect(json.meta.node).toBe(process.version);
    expect(existsSync(m![2]) && readFileSync(m![2], 'utf8').startsWith('<svg')).toBe(true);
  }, 110_000);

  it('an unknown arm or flag is refused before anything starts', () => {
    const a = spawnSync(process.execPath, [RUN, '--arms', 'direct,nope'], { encoding: 'utf8', timeout: 20_000 });
    expect(a.status).toBe(2);
    expect(a.stderr).toContain('unknown arm(s): nope');
    const b = spawnSync(process.execPath, [RUN, '--fast'], { encoding: 'utf8', timeout: 20_000 });
    expect(b.status).toBe(2);
    expect(b.stderr).toContain('unknown flag(s) --fast');
  });
});

describe('an arm that cannot start', () => {
  it('is reported as "<arm> arm failed: <reason>" and the run goes on with the next arm', async () => {
    const broken: Arm = {
      name: 'meshlet-broken', about: 'exits at start', skip: () => null,
      start: () => startProc('meshlet-broken', process.execPath, ['-e', 'console.error("no config"); process.exit(3)'], { ready: jsonPort }),
    };
    const direct = allArms().find((a) => a.name === 'direct')!;
    const log: string[] = [];
    const { results } = await benchArms([direct, broken, { ...direct, name: 'direct-again' }], { ...PLANS.smoke, idle: 0 }, (l) => log.push(l));
    expect(results.map((r) => r.arm)).toEqual(['direct', 'meshlet-broken', 'direct-again']);
    expect(results[1].failed).toMatch(/exited 3: no config/);
    expect(log).toContain(`meshlet-broken arm failed: ${results[1].failed}`);
    expect(results[2].rps).toBeGreaterThan(0);
  });
});

describe('peer proxies', () => {
  let up: Upstream;
  const seen: Array<{ host?: string; url?: string; body: string }> = [];
  beforeAll(async () => {
    up = await startUpstream((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { seen.push({ host: req.headers.host, url: req.url, body }); res.setHeader('x-up', '1'); res.end(Buffer.alloc(1024, 'a')); });
    });
  });
  afterAll(async () => { await up.close(); });

  for (const peer of ['undici-dispatch', 'reply-from', 'http-proxy']) {
    it(`${peer} forwards method, path, Host and body, and streams the answer back`, async () => {
      const p = await startProc(peer, process.execPath, [`${PEERS}${peer}.ts`, '--port', '0', '--upstream', `127.0.0.1:${up.port}`], { ready: jsonPort });
      try {
        seen.length = 0;
        const r = await request(`http://127.0.0.1:${p.port}/x?y=1`, { method: 'POST', headers: { host: 'upstream.bench' }, body: 'ping' });
        const body = Buffer.from(await r.body.arrayBuffer());
        expect(r.statusCode).toBe(200);
        expect(body.length).toBe(1024);
        expect(r.headers['x-up']).toBe('1');
        expect(seen).toEqual([{ host: 'upstream.bench', url: '/x?y=1', body: 'ping' }]);
      } finally {
        await p.stop();
      }
    });
  }
});
