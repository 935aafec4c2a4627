// The harness cannot rot: `npm run bench -- --smoke` runs end to end. No speed assertions.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';

const RUN = new URL('../../bench/run.ts', import.meta.url).pathname;

describe('bench harness', () => {
  it('--smoke prints the table with a row for every arm (measured, skipped or failed with a reason)', () => {
    const r = spawnSync(process.execPath, [RUN, '--smoke'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| arm'));
    const arms = rows.map((l) => l.split('|')[1].trim());
    expect(arms).toEqual(['direct', 'meshlet-realistic', 'meshlet-minimal', 'undici-dispatch', 'nginx', 'haproxy']);
    for (const row of rows) {
      const cells = row.split('|').map((c) => c.trim());
      // Either numbers (rps, ratio, …) or an explicit reason.
      expect(/^\d+$/.test(cells[2]) || /^(skipped|failed): .+/.test(cells[2]), row).toBe(true);
    }
    expect(rows.find((l) => l.startsWith('| meshlet-minimal'))).toMatch(/^\| meshlet-minimal \| \d+ \|/);
  }, 150_000);
});
