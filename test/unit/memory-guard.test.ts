// The memory guard (proxy/telemetry/memory.ts) in this process: it collects when ArrayBuffer
// memory grows by its threshold, and memory that stays live does not make it collect again and
// again. Major collections are counted with a PerformanceObserver ('gc' entries).
import { afterEach, describe, expect, it } from 'vitest';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { startMemoryGuard } from '../../proxy/telemetry/memory.ts';

const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let stop: (() => void) | null = null;
afterEach(() => { stop?.(); stop = null; });

/** Major GCs while `body` runs. */
async function majors(body: () => Promise<void>): Promise<number> {
  let n = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) n++;
  });
  obs.observe({ entryTypes: ['gc'] });
  try { await body(); await sleep(20); } finally { obs.disconnect(); }
  return n;
}

describe('memory guard', () => {
  it('collects when buffers pile up, and frees their memory', async () => {
    stop = startMemoryGuard({ thresholdBytes: 2 * MB, intervalMs: 5, maxIntervalMs: 5 });
    const before = process.memoryUsage().arrayBuffers;
    const n = await majors(async () => {
      // 16 MB of short-lived 64 KB buffers, as socket reads of a large body make them.
      for (let i = 0; i < 32; i++) {
        for (let k = 0; k < 8; k++) Buffer.allocUnsafeSlow(64 * 1024).fill(k);
        await sleep(6);
      }
    });
    expect(n).toBeGreaterThan(0);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * MB);
  });

  it('does not collect over and over while memory above its threshold stays live', async () => {
    stop = startMemoryGuard({ thresholdBytes: 1 * MB, intervalMs: 5, maxIntervalMs: 5 });
    const live: Buffer[] = [];
    const n = await majors(async () => {
      for (let i = 0; i < 48; i++) live.push(Buffer.allocUnsafeSlow(64 * 1024)); // 3 MB that stays
      await sleep(300); // ~60 checks
    });
    expect(live.length).toBe(48);
    // One collection for the growth; measured from what survived it, the live 3 MB is not growth.
    expect(n).toBeGreaterThanOrEqual(1);
    expect(n).toBeLessThanOrEqual(3);
  });
});
