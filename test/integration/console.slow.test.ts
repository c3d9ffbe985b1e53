/**
 * The web console in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * signing in with the token, submitting a tiny train job from the form and watching it complete
 * on its page (the loss curve drawn, the grids over training loaded), cancelling a running job
 * from its page, an error of the API shown beside the field it names, and markup in a log line
 * and in an error staying text. With DDPM_CONSOLE_SCREENSHOTS=<dir> it also saves the list, a job
 * mid-training and the form at 1280 and 390 px wide.
 *
 * Skipped, saying so, where Chromium is absent (`apt-get install chromium`; `.ci/run` installs it).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { type Browser, type Page, chromium } from 'playwright-core';

import { type Stack, startStack, tinyTrain } from './service-support';

// Functions below run in the page (page.evaluate), where the DOM is; this file is type-checked
// without the DOM's types.
declare const document: { querySelector(selector: string): { complete: boolean; naturalWidth: number } | null };
declare const window: { __injected?: number };

jest.setTimeout(300_000);

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const present = spawnSync(CHROMIUM, ['--version']).status === 0;
if (!present)
  console.warn(`SKIPPED: the console's browser tests: no Chromium at ${CHROMIUM} (apt-get install chromium)`);
const describeInBrowser = present ? describe : describe.skip;

const TOKEN = 'console-browser-token-0123456789abcdef';
const SHOTS = process.env['DDPM_CONSOLE_SCREENSHOTS'];

describeInBrowser('the web console in Chromium', () => {
  let stack: Stack;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    stack = await startStack({ workers: 1, env: { DDPM_API_TOKEN: TOKEN } });
    await stack.app.listen({ port: 0, host: '127.0.0.1' });
    const address = stack.app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  /** A page signed in with the token (what the login form does; tested on its own below). */
  async function signedIn(width = 1280): Promise<Page> {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    await page.goto(`${base}/ui/`);
    await page.fill('input[name=token]', TOKEN);
    await page.click('form.login button[type=submit]');
    await page.waitForSelector('h1:text("Jobs")');
    return page;
  }

  async function submitByApi(body: Record<string, unknown>): Promise<string> {
    const r = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: body,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(r.statusCode).toBe(202);
    return r.json().id as string;
  }

  it('asks for the token once, then shows the jobs; the token never appears in a URL', async () => {
    const page = await browser.newPage();
    const urls: string[] = [];
    page.on('request', (r) => urls.push(r.url()));
    await page.goto(`${base}/ui/`);
    await page.waitForSelector('form.login');
    await page.fill('input[name=token]', TOKEN);
    await page.click('form.login button[type=submit]');
    await page.waitForSelector('h1:text("Jobs")');
    await page.waitForSelector('table.jobs, p:text("No jobs")');
    expect(urls.some((u) => u.includes(TOKEN))).toBe(false);
    await page.close();
  });

  it('submits a tiny train job from the form and shows it complete: the loss curve drawn, the grids loaded', async () => {
    const page = await signedIn();
    await page.goto(`${base}/ui/submit`);
    await page.waitForSelector('form.submit');
    const fill = async (name: string, value: string): Promise<void> => {
      const input = page.locator(`[data-field=${name}] input, [data-field=${name}] select`).first();
      if ((await input.evaluate((e) => e.tagName)) === 'SELECT') await input.selectOption(value);
      else await input.fill(value);
    };
    await fill('dataset', 'procedural:shapes?size=16&channels=1');
    await fill('preset', 'nano8');
    await fill('steps', '6');
    await fill('batchSize', '2');
    await fill('checkpointEvery', '2');
    await fill('sampleCount', '4');
    await fill('sampleSteps', '3');
    await fill('sampleEvery', '2');
    await page.click('form.submit button[type=submit]');
    await page.waitForURL(/\/ui\/jobs\/train-/);
    await page.waitForSelector('[data-state=completed]', { timeout: 180_000 });
    // The loss curve: uPlot's canvas with the run's 6 points.
    await page.waitForSelector('.chart[data-points="6"] canvas', { timeout: 20_000 });
    // The grids: loaded with the token (a data: URL), the last one shown, a slider over them all.
    const width = await page.waitForFunction(() => {
      const img = document.querySelector('img.grid');
      return img && img.complete && img.naturalWidth > 0 ? img.naturalWidth : undefined;
    });
    expect(await width.jsonValue()).toBeGreaterThan(0);
    expect(await page.locator('.grids input[type=range]').getAttribute('max')).toBe('2');
    await page.close();
  });

  it('cancels a running job from its page', async () => {
    const id = await submitByApi(tinyTrain({ steps: 5000, checkpointEvery: 50 }));
    const page = await signedIn();
    await page.goto(`${base}/ui/jobs/${id}`);
    await page.waitForSelector('[data-state=active]', { timeout: 60_000 });
    await page.click('button.danger:text("Cancel")');
    await page.waitForSelector('[data-state=cancelled]', { timeout: 120_000 });
    await page.close();
  });

  it('shows the API’s refusal beside the field it names', async () => {
    const page = await signedIn();
    await page.goto(`${base}/ui/submit`);
    await page.waitForSelector('form.submit');
    await page.locator('[data-field=dataset] input').fill('procedural:shapes?size=16&channels=1');
    await page.locator('[data-field=preset] select').selectOption('nano8');
    await page.locator('[data-field=steps] input').fill('4');
    await page.locator('[data-field=sampleEvery] input').fill('5');
    await page.click('form.submit button[type=submit]');
    const error = page.locator('[data-field=sampleEvery] .field-error');
    await error.waitFor();
    expect(await error.textContent()).toMatch(/sampleEvery 5 draws the grid during training, and sampleCount is 0/);
    expect(page.url()).toMatch(/\/ui\/submit/);
    await page.close();
  });

  it('keeps markup in a log line and in an error as text: no script runs', async () => {
    const id = await submitByApi(tinyTrain({ steps: 1 }));
    await stack.waitFinished(id);
    const payload = '<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2">';
    await (await stack.queues.train.getJob(id))!.log(payload);
    const page = await signedIn();
    await page.goto(`${base}/ui/jobs/${id}`);
    await page.waitForSelector(`pre.log:has-text("window.__injected = 1")`);
    expect(await page.evaluate(() => window.__injected)).toBeUndefined();
    expect(await page.locator('pre.log img').count()).toBe(0);
    // An error whose message echoes the request: shown as text too.
    await page.goto(`${base}/ui/submit`);
    await page.waitForSelector('form.submit');
    await page.locator('[data-field=dataset] input').fill(`procedural:${payload}`);
    await page.locator('[data-field=preset] select').selectOption('nano8');
    await page.click('form.submit button[type=submit]');
    await page.waitForSelector('.field-error, p.error');
    expect(await page.evaluate(() => window.__injected)).toBeUndefined();
    expect(await page.locator('.field-error img, p.error img').count()).toBe(0);
    await page.close();
  });

  (SHOTS ? it : it.skip)('saves screenshots of the list, a job mid-training and the form', async () => {
    const id = await submitByApi(
      tinyTrain({ steps: 400, checkpointEvery: 20, sampleCount: 16, sampleSteps: 10, sampleEvery: 40 }),
    );
    for (const width of [1280, 390]) {
      const page = await signedIn(width);
      await page.waitForSelector('table.jobs');
      await page.screenshot({ path: path.join(SHOTS!, `console-jobs-${width}.png`), fullPage: true });
      await page.goto(`${base}/ui/jobs/${id}`);
      await page.waitForSelector('img.grid', { timeout: 120_000 });
      await page.waitForSelector('.chart canvas');
      await page.screenshot({ path: path.join(SHOTS!, `console-job-${width}.png`), fullPage: true });
      await page.goto(`${base}/ui/submit`);
      await page.waitForSelector('form.submit');
      await page.screenshot({ path: path.join(SHOTS!, `console-submit-${width}.png`), fullPage: true });
      await page.close();
    }
  });
});
