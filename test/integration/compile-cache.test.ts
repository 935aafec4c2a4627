// bin/warm-compile-cache.js (run by the Dockerfile at image build): after it, a fresh process
// loads meshlet's modules from the compile cache and never loads Node's TypeScript stripper,
// whose memory a cold sidecar would otherwise keep (docs/operations.md).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNode } from '../helpers.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function run(args: string[], cache: string): Promise<{ code: number | null; out: string; err: string }> {
  return runNode(args, { env: { ...process.env, NODE_COMPILE_CACHE: cache } });
}

/** Whether a fresh process importing the proxy through `cache` loaded the TypeScript stripper (amaro). */
async function strips(cache: string): Promise<boolean> {
  const probe = `import m from 'node:module'; m.enableCompileCache(); await import(${JSON.stringify(join(ROOT, 'proxy/main.ts'))});
console.log(JSON.stringify(process.moduleLoadList.some((x) => x.includes('amaro'))));`;
  const r = await run(['--input-type=module', '-e', probe], cache);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out.trim()) as boolean;
}

describe('warm-compile-cache', () => {
  it('compiles every module, after which a new process loads the proxy without type-stripping', async () => {
    const cold = mkdtempSync(join(tmpdir(), 'meshlet-cc-cold-'));
    const warm = mkdtempSync(join(tmpdir(), 'meshlet-cc-warm-'));
    dirs.push(cold, warm);
    // The control: an empty cache strips (so the check below can fail).
    expect(await strips(cold)).toBe(true);
    const r = await run([join(ROOT, 'bin/warm-compile-cache.js')], warm);
    expect(r.code, r.err).toBe(0);
    const m = /compile cache: (\d+)\/(\d+) modules of (\S+) in (\S+)/.exec(r.out);
    expect(m, r.out).not.toBeNull();
    expect(Number(m![1])).toBe(Number(m![2]));
    expect(Number(m![2])).toBeGreaterThan(50);
    expect(m![4].startsWith(warm)).toBe(true);
    expect(readdirSync(m![4]).length).toBeGreaterThan(50);
    expect(await strips(warm)).toBe(false);
  }, 90_000);

  it('fails with a message when the root has no modules to load', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'meshlet-cc-bad-'));
    dirs.push(cache);
    const r = await run([join(ROOT, 'bin/warm-compile-cache.js'), join(cache, 'nope')], cache);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/ENOENT|no such file/);
  });
});
