// Drives the api's web page in headless Chromium (Debian /usr/bin/chromium) with
// playwright-core: signs in with a tenant key, waits for the dashboard, saves screenshots
// and prints what the page shows as JSON on stdout for e2e/api_test.go to compare.
//
//   node page.mjs URL KEY FROM TO OUTDIR
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, key, from, to, outdir] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'fleetmeter-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  timeout: 120000, // a loaded 2-core CI box starts Chromium slowly
  viewport: { width: 1400, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = browser.pages()[0] || await browser.newPage();
  page.setDefaultTimeout(90000);
  const offsite = [];
  page.on('request', (r) => { if (!r.url().startsWith(url)) offsite.push(r.url()); });
  await page.goto(`${url}/#from=${from}&to=${to}`);
  await page.screenshot({ path: join(outdir, 'signin.png') });
  await page.fill('#key', 'wrong-key');
  await page.click('#signin button');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent !== '');
  const rejected = await page.textContent('#signin-error');
  await page.fill('#key', key);
  await page.click('#signin button');
  await page.waitForSelector('#status[data-state=ready], #status[data-state=error]', { timeout: 60000 });
  const status = await page.textContent('#status');
  await page.screenshot({ path: join(outdir, 'dashboard.png'), fullPage: true });
  const texts = (sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));
  const out = {
    rejected, status,
    state: await page.getAttribute('#status', 'data-state'),
    who: await page.textContent('#who'),
    total_records: await page.textContent('[data-testid=total-records]'),
    total_amount: await page.textContent('[data-testid=total-amount]'),
    total_devices: await page.textContent('[data-testid=total-devices]'),
    zones: await texts('[data-testid=zone-name]'),
    zone_records: await texts('[data-testid=zone-records]'),
    zone_amounts: await texts('[data-testid=zone-amount]'),
    top_devices: await texts('[data-testid=top-device]'),
    top_amounts: await texts('[data-testid=top-amount]'),
    active_periods: await texts('[data-testid=active-period]'),
    active_devices: await texts('[data-testid=active-devices]'),
    active_tiers: await texts('[data-testid=active-tier]'),
    periods: await texts('[data-testid=period-name]'),
    period_status: await texts('[data-testid=period-status]'),
    period_totals: await texts('[data-testid=period-total]'),
    chart_bars: await page.$$eval('.chart svg rect', (els) => els.length),
    chart_series: await page.$$eval('.chart svg', (els) => els.map((e) => e.getAttribute('data-series'))),
    offsite,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
} finally {
  await browser.close();
}
