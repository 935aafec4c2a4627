import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Two cores: integration tests start real servers and child processes.
    maxWorkers: 2,
    // The JSON report feeds .ci/run's one-line summary ('N passed, N failed').
    reporters: ['default', 'json'],
    outputFile: { json: 'test/artifacts/vitest.json' },
  },
});
