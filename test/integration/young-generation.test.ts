// bin/meshlet.js re-executes `meshlet proxy` in place with a 1 MB young generation
// (--max-semi-space-size=1, docs/operations.md), unless the user chose a size (command line or
// NODE_OPTIONS) or turned the re-exec off. The running process's own command line shows which.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { serviceYaml, spawnProxy, writeConfig, type SpawnedProxy } from '../helpers.ts';

const running: SpawnedProxy[] = [];
afterEach(async () => { for (const p of running.splice(0)) await p.stop(); });

const CONFIG = writeConfig(serviceYaml('young.test', [1]));
afterAll(() => rmSync(dirname(CONFIG), { recursive: true, force: true }));
const ARGS = (): string[] => ['--config', CONFIG, '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn'];

/** The argv of the ready proxy process (after any re-exec: same pid). */
async function argvOf(env: Record<string, string>): Promise<string[]> {
  const p = await spawnProxy(ARGS(), 15_000, env);
  running.push(p);
  expect(p.line, p.output()).not.toBeNull();
  return readFileSync(`/proc/${p.child.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

describe.skipIf(!existsSync('/proc/self/cmdline'))('the proxy young generation', () => {
  it('runs with --max-semi-space-size=1 by default', async () => {
    const argv = await argvOf({ NODE_OPTIONS: '' });
    expect(argv).toContain('--max-semi-space-size=1');
    expect(argv.indexOf('--max-semi-space-size=1')).toBeLessThan(argv.indexOf('proxy'));
  }, 30_000);

  it('leaves a size set in NODE_OPTIONS alone (either spelling)', async () => {
    for (const flag of ['--max-semi-space-size=8', '--max_semi_space_size=8']) {
      const argv = await argvOf({ NODE_OPTIONS: flag });
      expect(argv.some((a) => /semi.space/.test(a)), `${flag}: ${argv.join(' ')}`).toBe(false);
    }
  }, 30_000);

  it('does not re-execute with MESHLET_REEXEC=0', async () => {
    const argv = await argvOf({ NODE_OPTIONS: '', MESHLET_REEXEC: '0' });
    expect(argv.some((a) => /semi.space/.test(a))).toBe(false);
  }, 30_000);
});
