// Drives the console in Debian's Chromium through playwright-core (no bundled browser).
// Run by tests/integration/test_webd_browser.py inside the lab's gw namespace:
//   node console.mjs URL PASSWORD SHOTS_DIR
// Env: KG_KNOCK_CMD (JSON argv that makes the lab client knock; empty: skip the live
// grant part), KG_KNOCK_SOURCE (the client's address). Prints one JSON result line.
import { chromium } from 'playwright-core';

const [url, password, shots] = process.argv.slice(2);
const knockCmd = process.env.KG_KNOCK_CMD ? JSON.parse(process.env.KG_KNOCK_CMD) : null;
const source = process.env.KG_KNOCK_SOURCE || '';
// argv of a connection attempt from the lab client to the exposed port (exit 0: connected).
const probeCmd = process.env.KG_PROBE_CMD ? JSON.parse(process.env.KG_PROBE_CMD) : null;
const result = { steps: [] };
const step = (name, extra = {}) => result.steps.push({ name, ...extra });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const consoleErrors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  // HTTP errors the UI handles (401 before login, 503 without policyd) are logged by the
  // browser as "Failed to load resource"; script errors are what must not happen.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(url);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.screenshot({ path: `${shots}/login.png` });
  await page.fill('#login-password', 'wrong password');
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#login-error').textContent.length > 0);
  step('wrong password refused', { message: await page.textContent('#login-error') });
  await page.fill('#login-password', password);
  await page.press('#login-password', 'Enter');
  await page.waitForSelector('#grants', { state: 'visible' });
  await page.waitForSelector('#link-state.ok', { timeout: 10000 });
  step('logged in, live stream open');
  await page.screenshot({ path: `${shots}/dashboard.png`, fullPage: true });

  const grantsAvailable = await page.evaluate(async () => (await fetch('/api/v1/grants')).ok);
  result.grants_api = grantsAvailable;
  if (grantsAvailable && knockCmd) {
    const { execFileSync } = await import('node:child_process');
    execFileSync(knockCmd[0], knockCmd.slice(1), { stdio: 'ignore', timeout: 10000 });
    const row = `#grants tbody tr[data-source="${source}"]`;
    const t0 = Date.now();
    await page.waitForSelector(row, { timeout: 10000 });
    step('grant appeared without reload', { ms: Date.now() - t0 });
    await page.waitForSelector('#feed li');
    await page.waitForTimeout(1500);  // let the countdown tick visibly
    await page.screenshot({ path: `${shots}/dashboard-grant.png`, fullPage: true });
    const left = await page.textContent(`${row} td.left`);
    step('time left shown', { left });
    const probe = () => {
      try { execFileSync(probeCmd[0], probeCmd.slice(1), { stdio: 'ignore', timeout: 10000 }); return 0; }
      catch (e) { return e.status ?? -1; }
    };
    if (probeCmd) result.probe_granted = probe();
    await page.click(`${row} button.danger`);
    await page.waitForSelector(row, { state: 'detached', timeout: 10000 });
    step('revoked from the UI');
    if (probeCmd) result.probe_revoked = probe();
    await page.goto(`${url}#/audit`);
    await page.fill('#audit-source', source);
    await page.click('form.filters button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#audit tbody tr').length >= 2);
    const kinds = await page.$$eval('#audit tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent));
    step('audit shows entries', { kinds });
    result.audit_kinds = kinds;
    await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });
  }
  await page.goto(`${url}#/config`);
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${shots}/config.png`, fullPage: true });
  await page.goto(`${url}#/grant`);
  await page.waitForSelector('#grant-form');
  await page.screenshot({ path: `${shots}/grant.png`, fullPage: true });
  // Phone-sized viewport: the dashboard must not need horizontal page scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${url}#/dashboard`);
  await page.waitForSelector('#grants');
  result.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await page.screenshot({ path: `${shots}/phone.png`, fullPage: true });
  // Keyboard: Tab from the top reaches the skip link, then the navigation.
  await page.keyboard.press('Tab');
  result.first_focus = await page.evaluate(() => document.activeElement.className || document.activeElement.tagName);
  await page.click('#logout');
  await page.waitForSelector('#login-form', { state: 'visible' });
  step('logged out');
  result.ok = true;
} catch (e) {
  result.ok = false;
  result.error = String(e.stack || e);
} finally {
  result.console_errors = consoleErrors;
  await browser.close();
  console.log(JSON.stringify(result));
}
