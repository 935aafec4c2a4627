// Bounded memory while streaming. Each socket read allocates a fresh Buffer; a proxy that only
// moves bytes creates little other garbage, so V8 collects those buffers only once external
// memory passes its ~64 MB soft limit. Watching external memory and asking for a collection when it
// piles up keeps a streaming proxy's RSS near its working set.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFn = (opts?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let gc: GcFn | null = null;

function getGc(): GcFn | null {
  if (gc) return gc;
  try {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as GcFn;
  } catch {
    gc = null;
  }
  return gc;
}

export function startMemoryGuard(opts: { thresholdBytes?: number; intervalMs?: number } = {}): () => void {
  const threshold = opts.thresholdBytes ?? 8 * 1024 * 1024;
  const fn = getGc();
  if (!fn) return () => {};
  const t = setInterval(() => {
    // Backing stores of dead buffers are released by a full collection (a scavenge does not
    // return them); the heap of a proxy is small, so one costs about a millisecond.
    if (process.memoryUsage().arrayBuffers >= threshold) fn({ type: 'major' });
  }, opts.intervalMs ?? 20);
  t.unref();
  return () => clearInterval(t);
}
