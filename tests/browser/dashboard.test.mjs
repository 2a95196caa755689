// The dashboard in a real browser: Debian's chromium driven by playwright-core, against
// `revshare demo --serve` (a year of the demo's business in a fresh store).
//
// Signed in as the licensor, a host and the auditor: every page renders and passes axe-core at
// WCAG 2 A/AA; a host sees nothing of another host (names, amounts); the forms work (a payment
// recorded by the host and confirmed by the licensor, a dispute opened by the host and answered by
// the licensor); posts without the form's token, or from another site, are refused and change
// nothing. With SCREENSHOTS=DIR, each page is saved at 1280×800 and 390×844.
//
// REVSHARE_BIN names the binary (default: the workspace's debug build); CHROMIUM the browser.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const BIN = process.env.REVSHARE_BIN ?? resolve(import.meta.dirname, '../../target/debug/revshare');
const PORT = 18000 + (process.pid % 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const SHOTS = process.env.SCREENSHOTS;
const PAGES = [
  ['overview', '/'],
  ['statements', '/statements'],
  ['statement', '/statements/meridian-northwind/2026-10'],
  ['usage', '/usage?agreement=meridian-northwind&from=2026-09&to=2026-12'],
  ['disputes', '/disputes'],
  ['dispute', '/disputes/1'],
  ['payments', '/payments'],
  ['contributions', '/contributions'],
];

let server;
let browser;
const tokens = {};

/// Starts the served demo and reads each party's token from what it prints.
before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'revshare-browser-'));
  server = spawn(BIN, ['demo', '--serve', '--records', '2000', '--dir', join(dir, 'data'), '--listen', String(PORT)], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let out = '';
  await new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`the demo did not start in time:\n${out}`)), 180_000);
    server.stdout.on('data', (chunk) => {
      out += chunk;
      for (const m of out.matchAll(/^\s+(\S+)\s+(licensor|host|auditor|arbiter)\s+(rs_\S+)$/gm)) tokens[m[1]] = m[3];
      if (out.includes('listening on')) {
        clearTimeout(timer);
        done();
      }
    });
    server.on('exit', (code) => fail(new Error(`the demo exited (${code}):\n${out}`)));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
});

/// A browser context signed in as `party` through the sign-in form.
async function signIn(party, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /\/signin$/, 'without a session, the dashboard asks to sign in');
  await page.getByLabel('Token').fill(tokens[party]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${BASE}/`);
  const cookie = (await context.cookies()).find((c) => c.name === 'rs_session');
  assert.ok(cookie?.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(cookie.sameSite, 'Strict');
  return { context, page };
}

/// Visits a page: 200, no axe violations at WCAG 2 A/AA; its text.
async function visit(page, path) {
  const response = await page.goto(`${BASE}${path}`);
  assert.equal(response.status(), 200, `${path}: ${await page.textContent('main')}`);
  const axe = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  const found = axe.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`);
  assert.deepEqual(found, [], `${path}: accessibility violations`);
  return page.textContent('body');
}

test('the sign-in form refuses a token that is not known, and posts without its token', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${BASE}/signin`);
  await page.getByLabel('Token').fill('rs_' + 'A'.repeat(43));
  await page.getByRole('button', { name: 'Sign in' }).click();
  assert.match(await page.textContent('.problem'), /not known/);
  const forged = await context.request.post(`${BASE}/signin`, { form: { token: tokens.meridian }, maxRedirects: 0 });
  assert.equal(forged.status(), 403, 'a sign-in without the form token is refused');
  await context.close();
});

for (const party of ['meridian', 'northwind', 'ledgerwise']) {
  test(`every page renders for ${party}, accessible, showing only what it may read`, async () => {
    const { context, page } = await signIn(party);
    for (const [name, path] of PAGES) {
      const text = await visit(page, path);
      assert.ok(text.includes(party), `${path} names who is signed in`);
      if (party !== 'meridian') {
        for (const other of ['eastwater', 'westfield', 'Eastwater', 'Westfield']) {
          assert.ok(!text.includes(other), `${party} sees ${other} on ${path}`);
        }
      }
      if (SHOTS) {
        mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: join(SHOTS, `${party}-${name}-1280x800.png`), fullPage: false });
      }
    }
    // Another host's statement is not found, exactly as one that does not exist.
    const other = await page.goto(`${BASE}/statements/meridian-eastwater/2026-10`);
    const none = await page.goto(`${BASE}/statements/meridian-nobody/2026-10`);
    if (party === 'meridian') {
      assert.equal(other.status(), 200);
    } else {
      assert.equal(other.status(), 404);
      assert.equal(none.status(), 404);
    }
    await context.close();
  });
}

test('another host amounts are absent from a host pages', async () => {
  const east = await signIn('eastwater');
  await east.page.goto(`${BASE}/statements`);
  const amounts = await east.page.locator('td.num').allTextContents();
  const distinctive = amounts.filter((a) => /\d,\d{3}\.\d\d USD/.test(a));
  assert.ok(distinctive.length > 0, 'eastwater has amounts of its own');
  await east.context.close();
  const { context, page } = await signIn('northwind');
  for (const [, path] of PAGES) {
    await page.goto(`${BASE}${path}`);
    const text = await page.textContent('body');
    for (const amount of distinctive) assert.ok(!text.includes(amount), `northwind sees eastwater's ${amount} on ${path}`);
  }
  await context.close();
});

test('a payment is recorded by the host and confirmed by the licensor', async () => {
  const host = await signIn('northwind');
  await host.page.goto(`${BASE}/payments`);
  await host.page.locator('select#agreement').selectOption('meridian-northwind');
  await host.page.getByLabel('Amount').fill('1234.56');
  await host.page.getByLabel(/Reference/).fill('wire-browser-1');
  await host.page.getByRole('button', { name: 'Record the payment' }).click();
  await host.page.waitForURL(/done=payment-recorded/);
  assert.match(await host.page.textContent('[role=status]'), /recorded/);
  assert.match(await host.page.locator('tr', { hasText: 'wire-browser-1' }).textContent(), /pending/);
  await host.context.close();

  const licensor = await signIn('meridian');
  await licensor.page.goto(`${BASE}/payments`);
  await licensor.page.getByRole('button', { name: 'Confirm wire-browser-1' }).click();
  await licensor.page.waitForURL(/done=payment-confirmed/);
  assert.match(await licensor.page.locator('tr', { hasText: 'wire-browser-1' }).textContent(), /confirmed/);
  await licensor.context.close();
});

test('a dispute is opened by the host and answered by the licensor', async () => {
  const host = await signIn('northwind');
  await host.page.goto(`${BASE}/statements/meridian-northwind/2026-11`);
  await host.page.getByLabel(/^Line/).fill('1');
  await host.page.getByLabel(/^Amount claimed/).fill('25.00');
  await host.page.getByLabel('Reason').fill('browser test: a line counted twice');
  await host.page.getByRole('button', { name: 'Open the dispute' }).click();
  await host.page.waitForURL(/\/disputes\/\d+\?done=dispute-opened/);
  const url = host.page.url().replace(/\?.*$/, '');
  assert.match(await host.page.textContent('h1'), /open/);
  await host.context.close();

  const licensor = await signIn('meridian');
  await licensor.page.goto(url);
  await licensor.page.getByLabel('reject').check();
  await licensor.page.getByLabel('Reason').fill('browser test: the records are distinct');
  await licensor.page.getByRole('button', { name: 'Send' }).click();
  await licensor.page.waitForURL(/done=dispute-moved/);
  assert.match(await licensor.page.textContent('h1'), /rejected/);
  await licensor.context.close();
});

test('posts without the form token, or from another site, are refused and change nothing', async () => {
  const { context, page } = await signIn('northwind');
  await page.goto(`${BASE}/payments`);
  const before = await page.textContent('main');
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  const form = { agreement: 'meridian-northwind', amount: '1.00', reference: 'wire-forged', from: 'host' };
  const bare = await context.request.post(`${BASE}/payments`, { form, maxRedirects: 0 });
  assert.equal(bare.status(), 403);
  const wrong = await context.request.post(`${BASE}/payments`, { form: { ...form, csrf: 'x' + csrf.slice(1) }, maxRedirects: 0 });
  assert.equal(wrong.status(), 403);
  const elsewhere = await context.request.post(`${BASE}/payments`, {
    form: { ...form, csrf },
    headers: { origin: 'http://evil.example' },
    maxRedirects: 0,
  });
  assert.equal(elsewhere.status(), 403);
  await page.goto(`${BASE}/payments`);
  assert.equal(await page.textContent('main'), before, 'nothing was recorded');
  assert.ok(!before.includes('wire-forged'));
  // Signed out, the session is gone.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/signin$/);
  const gone = await context.request.get(`${BASE}/payments`, { maxRedirects: 0 });
  assert.equal(gone.status(), 303);
  await context.close();
});

test('pages fit a phone (390×844)', async () => {
  const { context, page } = await signIn('meridian', { width: 390, height: 844 });
  for (const [name, path] of PAGES) {
    await visit(page, path);
    if (SHOTS) await page.screenshot({ path: join(SHOTS, `meridian-${name}-390x844.png`), fullPage: false });
  }
  await context.close();
});
