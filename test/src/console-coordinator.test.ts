import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import type { Coordinator } from '@twinfed/coordinator';
import { BUILTIN_MAPPINGS, SiteNode, createResponseTrainer, importPath, openSiteStore } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { NO_CHROMIUM, chromiumPath, launchBrowser, screenshotDir, signIn } from './browser.js';
import { ADMIN_TOKEN, createAndStart, enrolNewSite, startCoordinator, tempDir, waitFor } from './harness.js';

const AUDITOR_TOKEN = 'test-auditor-token-0123456789';
const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../fixtures/growth-laleh2022');

/**
 * The coordinator's console in a real browser (Debian chromium through playwright-core) against a
 * real coordinator on loopback: sign-in, the study form with its field errors, the auditor's
 * read-only view, escaping of hostile names, and the live study view updated over SSE while three
 * real site nodes run a round of the response model.
 */
describe('coordinator console in a browser', { skip: chromiumPath() ? false : NO_CHROMIUM }, () => {
  const tmp = tempDir('ccon');
  let c: Coordinator;
  let url: string;
  let browser: Browser;
  const nodes: SiteNode[] = [];
  const dialogs: string[] = [];

  const newPage = async (): Promise<Page> => {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    p.on('dialog', (d) => {
      // data-confirm forms ask before submitting; any other dialog (an injected alert) is recorded.
      if (d.type() !== 'confirm') dialogs.push(d.message());
      void d.accept();
    });
    return p;
  };

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { auditorToken: AUDITOR_TOKEN, joinSettleMs: 200 }));
    browser = await launchBrowser();
  });
  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await browser?.close();
    await c?.close();
    tmp.cleanup();
  });

  it('answers GET / without a session with a 200 HTML sign-in form', async () => {
    const r = await fetch(url + '/');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/html/);
    const body = await r.text();
    assert.match(body, /<form class="signin" method="post" action="\/console\/sign-in">/);
    assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  });

  it('lets the lead create a study from the form, showing a field error for a bad value first', async () => {
    const page = await newPage();
    await signIn(page, url, ADMIN_TOKEN);
    assert.match(await page.locator('.role').innerText(), /lead/);
    await page.getByLabel('Title').fill('Console <b>study</b>');
    await page.getByLabel('Fewest sites per round (at least 3)').fill('2');
    await page.getByRole('button', { name: 'Create draft study' }).click();
    await page.waitForLoadState('domcontentloaded');
    const err = page.locator('#f-minSites-err');
    assert.match(await err.innerText(), /at least 3/);
    assert.equal(await page.getByLabel('Fewest sites per round (at least 3)').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.getByLabel('Title').inputValue(), 'Console <b>study</b>', 'what was typed is kept');
    await page.screenshot({ path: join(screenshotDir(), 'console-coordinator-field-error.png'), fullPage: true });

    await page.getByLabel('Fewest sites per round (at least 3)').fill('3');
    await page.getByRole('button', { name: 'Create draft study' }).click();
    await page.waitForURL(/\/studies\/study-[\w-]+\?done=created/);
    assert.match(await page.locator('.notice.ok').innerText(), /Study created as a draft/);
    await page.getByRole('link', { name: 'Studies' }).click();
    await page.waitForLoadState('domcontentloaded');
    const row = page.locator('#studies tbody tr', { hasText: 'Console <b>study</b>' });
    assert.equal(await row.count(), 1, 'the title is listed as text');
    await page.screenshot({ path: join(screenshotDir(), 'console-coordinator-studies.png'), fullPage: true });
    await page.context().close();
  });

  it('shows a site name holding <script> as text on the token page and the audit log', async () => {
    const page = await newPage();
    await signIn(page, url, ADMIN_TOKEN);
    await page.getByRole('link', { name: 'Sites' }).click();
    await page.getByLabel('Site name').fill('<script>alert("x")</script>');
    await page.getByRole('button', { name: 'Issue token' }).click();
    await page.waitForLoadState('domcontentloaded');
    assert.match(await page.locator('#enrol-token').innerText(), /^[\w-]{20,}$/);
    assert.match(await page.locator('dl.facts').innerText(), /<script>alert\("x"\)<\/script>/);
    await page.goto(url + '/audit?type=enrolment.token_issued');
    assert.match(await page.locator('#audit').innerText(), /<script>alert\("x"\)<\/script>/);
    assert.deepEqual(dialogs, [], 'no injected script ran');
    await page.context().close();
  });

  it('gives the auditor no action buttons and refuses a POST it makes anyway', async () => {
    const page = await newPage();
    await signIn(page, url, AUDITOR_TOKEN);
    assert.match(await page.locator('.role').innerText(), /auditor/);
    const id = c.engine.listStudies()[0].studyId;
    for (const path of ['/', '/sites', '/audit', `/studies/${id}`]) {
      await page.goto(url + path);
      assert.equal(await page.locator('form[method="post"]:not(.signout)').count(), 0, path);
    }
    // The auditor's own session and CSRF token, with the browser's cookies: still refused.
    const csrf = (await page.locator('meta[name="csrf"]').getAttribute('content'))!;
    const before = c.engine.listStudies().length;
    const r = await page.request.post(url + '/studies/json', { form: { csrf, spec: JSON.stringify(responseStudySpec(1)) }, headers: { origin: url } });
    assert.equal(r.status(), 403);
    assert.match(await r.text(), /read-only/);
    assert.equal(c.engine.listStudies().length, before);
    await page.context().close();
  });

  it('updates the live study view without a reload while three real sites run a round', async () => {
    for (const s of [1, 2, 3]) {
      const dir = join(tmp.dir, `site-${s}`);
      await enrolNewSite(url, dir, `Study${s}`);
      const { db, audit } = await openSiteStore(dir);
      await importPath(db, audit, join(FIX, `Study${s}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      nodes.push(await SiteNode.open({ dataDir: dir, trainer: createResponseTrainer(db), approvalPollMs: 100 }));
    }
    const started = await createAndStart(url, { ...responseStudySpec(1), title: 'Live study' });
    const page = await newPage();
    await signIn(page, url, AUDITOR_TOKEN);
    await page.goto(`${url}/studies/${started.studyId}`);
    const live = page.locator('[data-live]');
    assert.equal(await live.getAttribute('aria-live'), 'polite');
    await page.waitForSelector('[data-live][data-connected="true"]', { timeout: 10_000 });
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));

    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'announcements', 20_000);
    // The sites join as they connect: the live region re-renders on the pushed event.
    // (Polled from here: the page's CSP forbids the string evaluation waitForFunction would use.)
    await waitFor(async () => ((await live.getAttribute('data-updated')) ?? '0') !== '0' || null, 'a pushed update of the live region', 20_000);
    nodes.forEach((n, i) => SiteNode.approve(n.db, n.audit, started.studyId, `officer ${i + 1}`, started.manifestHash));
    await waitFor(() => (c.engine.studyStatus(started.studyId).state === 'completed' ? true : null), 'study completion', 120_000, 200);
    await waitFor(async () => /completed/.test(await page.locator('[data-live] dl.facts').innerText()) || null, 'the live region showing completion', 20_000);
    const rounds = await page.locator('#rounds tbody tr').allInnerTexts();
    assert.equal(rounds.length, 1);
    assert.match(rounds[0], /closed/);
    const sites = await page.locator('#study-sites tbody tr').allInnerTexts();
    assert.equal(sites.length, 3);
    for (const s of sites) assert.match(s, /done|uploaded/);
    assert.deepEqual(navigations, [], 'no reload');
    await page.waitForSelector('[data-chart][data-drawn]', { timeout: 10_000 }).catch(() => undefined);
    await page.screenshot({ path: join(screenshotDir(), 'console-coordinator-live.png'), fullPage: true });
    await page.context().close();
  });
});
