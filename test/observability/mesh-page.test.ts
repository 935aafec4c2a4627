// The mesh page in a real browser (Debian's Chromium driven by playwright-core) against a running
// Bookinfo mesh: control server + sidecars + apps as real processes on loopback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import { startBookinfo, type Bookinfo } from '../../examples/bookinfo/run.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const ARTIFACTS = new URL('../artifacts/', import.meta.url).pathname;

let mesh: Bookinfo | null = null;
beforeAll(async () => {
  if (!CHROMIUM) return;
  mesh = await startBookinfo({ edgePort: 0, traffic: 20, reportIntervalS: 0.5 });
}, 60_000);
afterAll(() => { mesh?.stop(); });

async function getJson(url: string): Promise<any> {
  const r = await fetch(url);
  return r.json();
}

describe.skipIf(!CHROMIUM)('mesh page in Chromium', () => {
  it('shows the Bookinfo nodes, edges, the reviews split and the proxies', async () => {
    const api = `http://127.0.0.1:${mesh!.control.ports.api}`;
    // Wait for reports covering the whole call graph (bounded).
    const deadline = Date.now() + 20_000;
    let topo: any = { edges: [] };
    while (Date.now() < deadline) {
      topo = await getJson(`${api}/api/v1/topology`);
      const ids = new Set(topo.edges.map((e: any) => e.destination));
      if (['productpage:v1', 'details:v1', 'ratings:v1'].every((x) => ids.has(x)) && [...ids].some((x) => String(x).startsWith('reviews:'))) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(topo.edges.some((e: any) => e.source === 'productpage:v1' && e.destination === 'details:v1')).toBe(true);

    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
      await page.goto(`${api}/`);
      await page.waitForSelector('g.node[data-id="productpage:v1"]', { timeout: 15_000 });
      for (const id of ['productpage:v1', 'details:v1', 'ratings:v1']) expect(await page.locator(`g.node[data-id="${id}"]`).count()).toBe(1);
      expect(await page.locator('g.node[data-id^="reviews:"]').count()).toBeGreaterThanOrEqual(2);
      expect(await page.locator('g.edge-group[data-source="productpage:v1"][data-destination="details:v1"]').count()).toBe(1);
      await page.waitForSelector('table.split[data-service="reviews"] tr[data-version="v1"]', { timeout: 10_000 });
      const split = await page.locator('table.split[data-service="reviews"]').last().innerText();
      expect(split).toContain('50%');
      expect(await page.locator('tr.proxy').count()).toBe(7); // 6 app sidecars + the edge
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: `${ARTIFACTS}mesh-page.png`, fullPage: true });
    } finally {
      await browser.close();
    }
  });
});

if (!CHROMIUM) {
  describe('mesh page in Chromium', () => {
    it.skip('skipped: Chromium is not installed (apt-get install chromium; .ci/run installs it)', () => {});
  });
}
