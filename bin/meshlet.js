#!/usr/bin/env node
// The one entry point users learn. TypeScript runs directly on Node 24 (type stripping).
import module from 'node:module';

// Cache compiled (and type-stripped) modules on disk: a warm start skips the TypeScript
// stripper entirely, which saves ~25 MB of RSS per sidecar and most of the start-up time.
// Failure (read-only disk) only costs the cache.
try { module.enableCompileCache?.(); } catch { /* no cache */ }

// The proxy runs with a 1 MB young generation (V8's default grows it to 16 MB per semi-space
// under load, ~30 MB of RSS for a sidecar that keeps almost nothing per request). A larger one
// scavenges less often (4 MB: half the scavenge time at saturation) but the whole-process CPU
// difference stayed within this machine's noise for 5-7 MB more RSS (docs/performance.md). The
// flag only works at start-up, so the process re-executes itself in place (same pid) to add it.
// MESHLET_REEXEC=0 turns this off; an explicit --max-semi-space-size is left alone, on the
// command line or in NODE_OPTIONS (a command-line flag would override the NODE_OPTIONS one).
// V8 spells its flags with '-' or '_'.
const SEMI_SPACE = /--max[-_]semi[-_]space[-_]size/;
if (process.argv[2] === 'proxy' && process.env.MESHLET_REEXEC !== '0' && typeof process.execve === 'function'
  && !process.execArgv.some((a) => SEMI_SPACE.test(a)) && !SEMI_SPACE.test(process.env.NODE_OPTIONS ?? '')) {
  process.execve(process.execPath, [process.execPath, '--max-semi-space-size=1', ...process.execArgv, ...process.argv.slice(1)], process.env);
}

const { main } = await import('../cli/main.ts');
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.message : err); process.exitCode = 1; },
);
