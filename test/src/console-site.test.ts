import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode, createResponseTrainer, createTaskTrainer, createUNetTrainer, openSiteDb, startSiteConsole, SITE_FILES, type SiteConsole } from '@twinfed/site-node';
import { chromiumPath, launchBrowser, NO_CHROMIUM, screenshotDir, signIn } from './browser.js';
import { createAndStart, enrolNewSite, startCoordinator, tempDir, tinySpec, waitFor } from './harness.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');
const TOKEN = 'console-site-test-token-0123456789';
const HOSTILE_TITLE = 'Sarcoma <script>window.__xss = 1</script>';
const HOSTILE_SITE = 'Evil <img src=x onerror="window.__xss=2">';

/**
 * The site console in a real browser on a real site: enrolled with a coordinator, the study
 * announced over the real protocol and pending at the site; the officer signs in, reads the
 * manifest in plain words (hostile title and site name shown as text), approves it with their
 * name (the approval lands in site.db and the signed audit log), checks the audit log's
 * verification and the IT page; /metrics answers with the fixed names.
 */
describe('site console (browser)', { skip: chromiumPath() ? false : NO_CHROMIUM }, () => {
  const tmp = tempDir('console-site');
  let c: Coordinator;
  let node: SiteNode;
  let sc: SiteConsole;
  let browser: Browser;
  let page: Page;
  let studyId: string;
  let hash: string;
  const awaiting: string[] = [];
  const shots = screenshotDir();
  const dirA = join(tmp.dir, 'a');

  before(async () => {
    const s = await startCoordinator(join(tmp.dir, 'c'));
    c = s.c;
    await enrolNewSite(s.url, dirA, 'Hospital A');
    await enrolNewSite(s.url, join(tmp.dir, 'b'), HOSTILE_SITE);
    await enrolNewSite(s.url, join(tmp.dir, 'c-site'), 'Hospital C');
    ({ studyId, manifestHash: hash } = await createAndStart(s.url, tinySpec({ title: HOSTILE_TITLE })));
    const db = openSiteDb(join(dirA, SITE_FILES.db));
    const trainer = createTaskTrainer({ segmentation: await createUNetTrainer(db, { backend: 'wasm', workers: 0 }), response: createResponseTrainer(db) });
    node = await SiteNode.open({ dataDir: dirA, trainer, approvalPollMs: 100, events: { onAwaitingApproval: (e) => awaiting.push(e.studyId) } });
    node.connect();
    await waitFor(() => SiteNode.listStudies(node.db).find((x) => x.studyId === studyId && x.status === 'pending'), 'the study pending at site A', 20_000);
    sc = await startSiteConsole({ dataDir: dirA, node, port: 0, token: TOKEN });
    browser = await launchBrowser();
    page = await browser.newPage();
    page.on('dialog', (d) => void d.accept()); // data-confirm on the approve form
  });
  after(async () => {
    await browser?.close();
    await sc?.close();
    await node?.close();
    await c?.close();
    tmp.cleanup();
  });

  it('tells the officer a study awaits approval (event, badge) and shows its manifest in plain words', async () => {
    assert.deepEqual(awaiting, [studyId]);
    await signIn(page, sc.url.replace(/\/$/, ''), TOKEN);
    await page.getByRole('link', { name: /Approvals \(1 waiting\)/ }).click();
    await page.getByRole('link', { name: studyId }).first().click();
    await page.waitForSelector('#manifest-hash');
    await page.screenshot({ path: join(shots, 'console-site-manifest.png'), fullPage: true });
    const text = await page.locator('main').innerText();
    assert.ok(text.includes(HOSTILE_TITLE), 'the hostile title shown as text');
    assert.ok(text.includes(HOSTILE_SITE), 'the hostile site name shown as text');
    assert.equal(await page.evaluate('window.__xss'), undefined, 'no script ran');
    for (const s of ['Who takes part', 'What leaves the hospital', 'update.chunk', 'metrics.report', 'meanDice', 'this site', 'Never leaves', 'Privacy budget', hash]) assert.ok(text.includes(s), s);
    assert.equal(await page.locator('#participants tbody tr').count(), 3);
  });

  it('approves the manifest hash shown, under the officer name, in site.db and the audit log', async () => {
    await page.getByLabel('Your name (privacy officer)').first().fill('Dr Alice Officer');
    await page.getByRole('button', { name: 'Approve this manifest' }).click();
    await page.waitForURL(/done=approved/);
    await page.screenshot({ path: join(shots, 'console-site-approved.png'), fullPage: true });
    assert.match(await page.locator('main').innerText(), /Approved/);
    const ap = node.db.$client.prepare('select officer, manifest_hash h, withdrawn_at_ms w from approvals where study_id = ?').get(studyId) as { officer: string; h: string; w: number | null };
    assert.deepEqual(ap, { officer: 'Dr Alice Officer', h: hash, w: null });
    const audited = node.audit.entries().filter((e) => e.action === 'study.approved' && e.studyId === studyId);
    assert.equal(audited.length, 1);
    assert.equal(audited[0].actor, 'Dr Alice Officer');
    assert.equal(audited[0].digest, hash);
    assert.equal(await page.getByRole('link', { name: /waiting/ }).count(), 0, 'the badge is gone');
  });

  it('shows the audit log with its verification and the receipts check, searchable', async () => {
    await page.getByRole('link', { name: 'Audit' }).click();
    const status = await page.locator('#verify-status').innerText();
    assert.match(status, /Verified: \d+ entries, chain intact/);
    assert.match(status, /signed receipts .* verify under the pinned coordinator key/);
    await page.getByLabel(/Search/).fill('study.approved');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/q=study\.approved/);
    const rows = await page.locator('#audit tbody tr').allInnerTexts();
    assert.equal(rows.length, 1, rows.join('\n'));
    assert.match(rows[0], /Dr Alice Officer/);
    await page.screenshot({ path: join(shots, 'console-site-audit.png'), fullPage: true });
  });

  it('shows hospital IT the connection, disk use, imports and the doctor', async () => {
    await page.getByRole('link', { name: 'IT', exact: true }).click();
    const text = await page.locator('main').innerText();
    for (const s of ['Connected', 'yes', 'Last contact', node.config.coordinatorId, 'Database (site.db with its log)', 'Imports']) assert.ok(text.includes(s), s);
    await page.screenshot({ path: join(shots, 'console-site-it.png'), fullPage: true });
    await page.getByRole('link', { name: 'Run the doctor' }).click();
    await page.waitForSelector('#doctor');
    const doctor = await page.locator('#doctor').innerText();
    assert.match(doctor, /compute backend/);
    assert.match(doctor, /pending approvals\s+none/);
    await page.screenshot({ path: join(shots, 'console-site-doctor.png'), fullPage: true });
  });

  it('serves /metrics without a session, with the fixed metric names', async () => {
    const r = await fetch(new URL('/metrics', sc.url));
    assert.equal(r.status, 200);
    const body = await r.text();
    for (const n of [
      'twinfed_site_rounds_total',
      'twinfed_site_training_seconds',
      'twinfed_site_epsilon_spent',
      'twinfed_site_epsilon_budget',
      'twinfed_site_imported_files',
      'twinfed_site_patients',
      'twinfed_site_last_contact_timestamp_seconds',
      'twinfed_site_connected 1',
      'twinfed_site_pending_approvals 0',
    ])
      assert.ok(body.includes(n), n);
    const last = Number(/twinfed_site_last_contact_timestamp_seconds ([\d.e+]+)/.exec(body)![1]);
    assert.ok(Math.abs(last - Date.now() / 1000) < 120, `last contact ${last}`);
  });

  it('site run prints the console line with the real port, logs the waiting study, and serves /metrics while connected', async () => {
    const dirB = join(tmp.dir, 'b');
    const p = spawn(process.execPath, [BIN, 'site', 'run', '--data-dir', dirB, '--console-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += String(d)));
    p.stderr.on('data', (d) => (err += String(d)));
    try {
      const line = await waitFor(() => /^console: (http:\/\/127\.0\.0\.1:(\d+)\/) \(token: (.+)\)$/m.exec(out), `the console line (stdout: ${out} stderr: ${err})`, 60_000);
      assert.notEqual(line[2], '0');
      assert.equal(line[3], join(dirB, 'console.token'));
      await waitFor(() => err.includes(`study ${studyId} "${HOSTILE_TITLE}" awaits the privacy officer's approval`), `the awaiting-approval log line (stderr: ${err})`, 30_000);
      const metrics = await waitFor(
        async () => {
          const body = await (await fetch(new URL('/metrics', line[1]))).text();
          return body.includes('twinfed_site_connected 1') && body.includes('twinfed_site_pending_approvals 1') ? body : null;
        },
        'metrics of the running site',
        30_000,
      );
      assert.match(metrics, /twinfed_site_rounds_total/);
    } finally {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
  });
});
