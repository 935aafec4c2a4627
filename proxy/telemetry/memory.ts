// Bounded memory while streaming. Each socket read allocates a fresh Buffer; a proxy that only
// moves bytes creates little other garbage, so V8 collects those buffers only once external
// memory passes its ~64 MB soft limit. Watching external memory and asking for a collection when it
// piles up keeps a streaming proxy's RSS near its working set.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
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

export interface MemoryGuardOptions {
  /** Ask for a full collection when ArrayBuffer memory reaches this (bytes; see `limit` for memory that stays live). */
  thresholdBytes?: number;
  /** Check interval while bytes are moving (ms). */
  intervalMs?: number;
  /** Longest interval when idle (ms): quiet checks double the interval up to this. */
  maxIntervalMs?: number;
}

/** ArrayBuffer growth between two checks below which the proxy counts as idle (bytes). */
const QUIET_GROWTH = 64 * 1024;

/**
 * ArrayBuffer memory, read cheaply: V8's external memory counts every backing store (plus a
 * small, steady amount of other native memory, `base`). process.memoryUsage() gives the same
 * figure but also reads the RSS from /proc on every call: ~10 µs here against ~0.4 µs, and the
 * guard reads it 50 times a second under load.
 */
function bufferBytes(base: number): number {
  return getHeapStatistics().external_memory - base;
}

/** Set while a guard runs and has slowed down: the next request brings it back to speed. */
let wake: (() => void) | null = null;

/**
 * A request started (called by the listeners, once per request): a guard that slowed down while
 * idle checks at full rate again at once. A null check when the guard is already fast.
 */
export function noteRequest(): void {
  if (wake !== null) wake();
}

/**
 * Checks ArrayBuffer memory on an adaptive schedule: every `intervalMs` (20) while it grows (socket
 * reads allocate a buffer each, so growth is traffic), doubling after each quiet check up to
 * `maxIntervalMs` (1 s) when idle, and back to full rate when a request starts (noteRequest). An
 * idle proxy wakes once a second instead of 50 times (those wake-ups were 1.3 % of a core).
 */
export function startMemoryGuard(opts: MemoryGuardOptions = {}): () => void {
  const threshold = opts.thresholdBytes ?? 8 * 1024 * 1024;
  const fast = opts.intervalMs ?? 20;
  const slow = Math.max(fast, opts.maxIntervalMs ?? 1000);
  let interval = fast;
  // The non-ArrayBuffer part of external memory, measured once (one process.memoryUsage()).
  const base = getHeapStatistics().external_memory - process.memoryUsage().arrayBuffers;
  let last = bufferBytes(base);
  // The level that triggers a collection: `threshold`, unless the last collection left half of
  // that or more alive (buffers held for retries, or native memory V8 counts as external): then
  // `threshold` above what it left, so memory that stays live never makes the guard collect on
  // every check. Back to `threshold` as that memory is released. (Measuring from whatever the
  // last collection left, always, would let buffers in flight at that moment raise the bound.)
  let limit = threshold;
  let timer: NodeJS.Timeout;
  let stopped = false;
  const arm = (): void => {
    timer = setTimeout(check, interval);
    timer.unref();
    // Only a slowed-down guard needs waking: at full rate a request costs nothing here.
    wake = interval > fast ? speedUp : null;
  };
  const speedUp = (): void => {
    clearTimeout(timer);
    interval = fast;
    arm();
  };
  const check = (): void => {
    if (stopped) return;
    const now = bufferBytes(base);
    if (limit > threshold && now + threshold < limit) limit = Math.max(threshold, now + threshold);
    if (now >= limit) {
      // Backing stores of dead buffers are released by a full collection (a scavenge does not
      // return them); the heap of a proxy is small, so one costs about a millisecond. gc() is
      // fetched at the first need: exposing it (a new vm context) costs an idle process CPU.
      const fn = getGc();
      if (fn === null) { wake = null; return; } // not available: stop checking
      fn({ type: 'major' });
      last = bufferBytes(base);
      limit = last >= threshold / 2 ? last + threshold : threshold;
      interval = fast;
    } else {
      interval = now - last > QUIET_GROWTH ? fast : Math.min(slow, interval * 2);
      last = now;
    }
    arm();
  };
  arm();
  return () => { stopped = true; clearTimeout(timer); wake = null; };
}
