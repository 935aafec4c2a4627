#!/usr/bin/env node
// The one entry point users learn. TypeScript runs directly on Node 24 (type stripping).
import { main } from '../cli/main.ts';

main(process.argv.slice(2)).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { console.error(err instanceof Error ? err.message : err); process.exitCode = 1; },
);
