import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import type { Coordinator } from '@twinfed/coordinator';
import { BUILTIN_MAPPINGS, SiteNode, createResponseTrainer, importPath, openSiteStore, startSiteConsole, type SiteConsole } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { NO_CHROMIUM, chromiumPath, launchBrowser, screenshotDir, signIn } from './browser.js';
import { ADMIN_TOKEN, startCoordinator, tempDir, enrolNewSite, waitFor } from './harness.js';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const FIX = join(ROOT, 'fixtures/growth-laleh2022');
const LONGITUDINAL = join(ROOT, 'examples/twin-longitudinal');
const AUDITOR_TOKEN = 'test-auditor-token-0123456789';
const SITE_TOKEN = 'test-site-console-token-0123456789';

/**
 * The whole loop the issue asks for, in a real browser (Debian chromium) against a real coordinator
 * and three real site nodes on loopback, each site with its own console: the lead pastes a spec and
 * starts the study in the coordinator console; the privacy officer of Hospital 1 approves it in the
 * site console (the other two approve as the CLI does); the lead watches the round complete in the
 * live view, pushed over SSE; a clinician at Hospital 1 opens a patient twin and sees the growth
 * plot drawn. Assertions are on content; screenshots go to out/browser/.
 */
describe('lead, officer and clinician in a browser, one real federated round', { skip: chromiumPath() ? false : NO_CHROMIUM }, () => {
  const tmp = tempDir('console-e2e');
  let c: Coordinator;
  let url: string;
  let browser: Browser;
  const nodes: SiteNode[] = [];
  const consoles: SiteConsole[] = [];
  const stores: { close(): void }[] = [];
  const shots = screenshotDir();
  let lead: Page;
  let studyId = '';

  const newPage = async (): Promise<Page> => {
    const p = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    p.on('dialog', (d) => void d.accept()); // data-confirm forms ask before submitting
    return p;
  };

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { auditorToken: AUDITOR_TOKEN, joinSettleMs: 200 }));
    for (const s of [1, 2, 3]) {
      const dir = join(tmp.dir, `site-${s}`);
      await enrolNewSite(url, dir, `Hospital ${s}`);
      const store = await openSiteStore(dir);
      stores.push(store);
      await importPath(store.db, store.audit, join(FIX, `Study${s}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      // Hospital 1 also holds the longitudinal example, with its twins calibrated, for the clinician.
      if (s === 1) await importPath(store.db, store.audit, LONGITUDINAL, { mapping: BUILTIN_MAPPINGS.laleh });
      const node = await SiteNode.open({ dataDir: dir, trainer: createResponseTrainer(store.db), approvalPollMs: 100 });
      nodes.push(node);
      consoles.push(await startSiteConsole({ dataDir: dir, node, port: 0, token: SITE_TOKEN }));
      node.connect();
    }
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    for (const k of consoles) await k.close().catch(() => undefined);
    for (const n of nodes) await n.close().catch(() => undefined);
    for (const s of stores) s.close();
    await c?.close();
    tmp.cleanup();
  });

  it('the lead pastes a spec, creates the study and starts it with the three sites', async () => {
    lead = await newPage();
    await signIn(lead, url, ADMIN_TOKEN);
    await lead.getByLabel(/Study spec \(JSON/).fill(JSON.stringify({ ...responseStudySpec(1), title: 'Response, three hospitals' }, null, 2));
    await lead.getByRole('button', { name: 'Create from JSON' }).click();
    await lead.waitForURL(/\/studies\/(study-[\w-]+)\?done=created/);
    studyId = /\/studies\/(study-[\w-]+)/.exec(lead.url())![1];
    await waitFor(() => nodes.every((n) => n.connected) || null, 'three sites connected', 20_000);
    await lead.reload();
    for (const s of [1, 2, 3]) assert.ok(await lead.getByLabel(new RegExp(`Hospital ${s}`)).isChecked(), `Hospital ${s} is on the roster`);
    await lead.getByRole('button', { name: 'Start study' }).click();
    await lead.waitForLoadState('domcontentloaded');
    await lead.waitForSelector('[data-live][data-connected="true"]', { timeout: 15_000 });
    assert.equal(c.engine.studyStatus(studyId).state, 'running');
  });

  it("Hospital 1's privacy officer reads the manifest in plain words and approves it in the site console", async () => {
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).some((s) => s.studyId === studyId)) || null, 'the manifest at every site', 20_000);
    const officer = await newPage();
    const site1 = consoles[0].url.replace(/\/$/, '');
    await signIn(officer, site1, SITE_TOKEN);
    await officer.getByRole('link', { name: /Approvals \(1 waiting\)/ }).click();
    await officer.getByRole('link', { name: studyId }).first().click();
    const text = await officer.locator('main').innerText();
    assert.match(text, /Response, three hospitals/);
    for (const s of [1, 2, 3]) assert.match(text, new RegExp(`Hospital ${s}`));
    const { manifestHash } = c.engine.manifestOf(studyId) as { manifestHash: string };
    assert.ok(text.includes(manifestHash), 'the hash the approval binds to is shown');
    await officer.getByLabel('Your name (privacy officer)').first().fill('Dr Officer One');
    await officer.getByRole('button', { name: 'Approve this manifest' }).click();
    await officer.waitForURL(/done=approved/);
    await officer.screenshot({ path: join(shots, 'console-e2e-officer-approved.png'), fullPage: true });
    const approval = nodes[0].audit.entries().find((e) => e.action === 'study.approved' && e.studyId === studyId);
    assert.ok(approval, 'the approval is in the site audit log');
    assert.equal(approval.actor, 'Dr Officer One');
    // The other two officers approve as the CLI does (site approve --hash).
    for (const [i, n] of nodes.slice(1).entries()) SiteNode.approve(n.db, n.audit, studyId, `officer ${i + 2}`, manifestHash);
    await officer.context().close();
  });

  it('the lead watches the round complete in the live view, pushed without a reload', async () => {
    const navigations: string[] = [];
    lead.on('framenavigated', (f) => navigations.push(f.url()));
    await waitFor(() => (c.engine.studyStatus(studyId).state === 'completed' ? true : null), 'study completion', 120_000, 200);
    await waitFor(async () => /completed/.test(await lead.locator('[data-live] dl.facts').innerText()) || null, 'the live region showing completion', 20_000);
    const rounds = await lead.locator('#rounds tbody tr').allInnerTexts();
    assert.equal(rounds.length, 1);
    assert.match(rounds[0], /closed/);
    const sites = await lead.locator('#study-sites tbody tr').allInnerTexts();
    assert.equal(sites.length, 3);
    for (const s of sites) assert.match(s, /done|uploaded/);
    assert.deepEqual(navigations, [], 'no reload');
    await lead.waitForSelector('[data-chart][data-drawn]', { timeout: 10_000 }).catch(() => undefined);
    await lead.screenshot({ path: join(shots, 'console-e2e-lead-live.png'), fullPage: true });
  });

  it("a clinician at Hospital 1 opens a patient's twin and sees the growth plot drawn", async () => {
    const clinician = await newPage();
    const site1 = consoles[0].url.replace(/\/$/, '');
    await signIn(clinician, site1, SITE_TOKEN);
    await clinician.getByRole('navigation', { name: 'Console sections' }).getByRole('link', { name: 'Twins' }).click();
    // A patient of the longitudinal example (nine scans); the Study1 patients were imported without refits.
    await clinician.getByLabel('Patient id contains').fill('1.427681197108524E+18');
    await clinician.getByRole('button', { name: 'Search' }).click();
    await clinician.waitForLoadState('domcontentloaded');
    const first = clinician.locator('main table tbody tr a').first();
    const patient = await first.innerText();
    await first.click();
    await clinician.waitForSelector('[data-chart][data-drawn]', { timeout: 20_000 });
    const drawn = Number(await clinician.locator('[data-chart][data-drawn]').first().getAttribute('data-drawn'));
    assert.ok(drawn >= 3, `the plot has ${drawn} days on its x axis`);
    assert.ok((await clinician.locator('main').innerText()).includes(patient));
    assert.equal((await clinician.locator('.uplot').count()) >= 1, true, 'uPlot drew a chart');
    await clinician.screenshot({ path: join(shots, 'console-e2e-twin.png'), fullPage: true });
    await clinician.context().close();
  });
});
