import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { AuditLog } from '@twinfed/shared/audit/index';
import { generateIdentity } from '@twinfed/shared/crypto/identity';
import { initSodium } from '@twinfed/shared/crypto/sodium';
import { createUNet, disposeUNet, getFlatWeights } from '@twinfed/shared/model/index';
import { selectBackend } from '@twinfed/shared/train/index';
import { CONSOLE_SECURITY_HEADERS, consoleAsset, page } from '@twinfed/shared/web/index';
import { openSiteDb, type SiteDb } from '../db/index.js';
import { importPath } from '../import/index.js';
import { writeModelDir } from '../model-files.js';
import { parseWhatIf, registerTwinPages } from './twin-pages.js';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const EXAMPLE_CSV = join(ROOT, 'examples/twin-longitudinal/laleh-study2-excerpt.csv');
const STS_010 = join(ROOT, 'examples/sts-pet/STS_010');
const PID = '1.427681197108524E+18';
const CSRF = 'test-csrf-token';

/**
 * The clinician's twin pages on a real site database (the longitudinal example and one real PET
 * patient imported), served by fastify on loopback and fetched as a browser would.
 */
describe('site console: patient twin pages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-twin-pages-'));
  let db: SiteDb;
  let audit: AuditLog;
  let app: FastifyInstance;
  let base = '';
  const get = (path: string) => fetch(base + path);
  const post = (path: string, fields: Record<string, string>) =>
    fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: CSRF, ...fields }).toString() });

  before(async () => {
    await initSodium();
    const id = generateIdentity();
    db = openSiteDb(join(dir, 'site.db'));
    audit = new AuditLog(db, 'site-test', id.ed25519SecretKey, id.ed25519PublicKey);
    // The cohort is the file's stem: a hostile file name must render as text.
    const hostile = join(dir, '<img src=x onerror=alert(1)>.csv');
    copyFileSync(EXAMPLE_CSV, hostile);
    const csv = await importPath(db, audit, hostile);
    assert.equal(csv.refits.filter((r) => r.selected).length, 3, JSON.stringify(csv.rows));
    const pet = await importPath(db, audit, STS_010, { patient: 'STS_010', day: 0, size: 16, refit: false });
    assert.equal(pet.rows.filter((r) => r.status === 'imported').length, 1, JSON.stringify(pet.rows));
    // A patient id that could only come from a hand-edited database: listed escaped, never routable.
    db.$client.prepare('insert into twin_patients (patient_id, created_at_ms) values (?, 0)').run('<script>alert(1)</script>');
    // The site's segmentation model, as a completed study leaves it (tiny, untrained: Grad-CAM works on any weights).
    const cfg = { arch: 'unet2d' as const, inChannels: 1, nClasses: 2, base: 4, depth: 2, size: 16, initSeed: 3 };
    await selectBackend();
    const unet = createUNet(cfg, cfg.initSeed);
    const weights = getFlatWeights(unet);
    disposeUNet(unet);
    writeModelDir(
      join(dir, 'models', 'study-seg'),
      {
        studyId: 'study-seg',
        title: 'PET tumour segmentation',
        manifestHash: 'x'.repeat(64),
        model: cfg,
        version: 3,
        meanDiceAtSite: null,
        decryptedAt: new Date().toISOString(),
        createdAt: new Date().toISOString(),
      },
      weights,
    );

    app = Fastify();
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))));
    app.addHook('onSend', (_req, reply, payload, done) => {
      reply.headers(CONSOLE_SECURITY_HEADERS);
      done(null, payload);
    });
    app.get('/assets/:name', (req, reply) => {
      const a = consoleAsset((req.params as { name: string }).name);
      return a ? reply.type(a.contentType).send(a.body) : reply.code(404).send('not found');
    });
    registerTwinPages(app, {
      db,
      audit,
      dataDir: dir,
      page: (req, o) => page({ app: 'site', instance: 'Test site', nav: [{ href: '/twins', label: 'Twins' }], path: req.url.split('?')[0], csrf: CSRF, ...o }),
      form: (req) => {
        const body = (req.body ?? {}) as Record<string, string>;
        if (body.csrf !== CSRF) throw new Error('The form has no valid CSRF token.');
        return body;
      },
      csrf: () => CSRF,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app?.close();
    db?.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('/twins lists the patients with their measurements and model, escapes what the database holds, and searches', async () => {
    const r = await get('/twins');
    assert.equal(r.status, 200);
    const t = await r.text();
    for (const id of [PID, '8.9373642224038861E+18', '4.5293451295293148E+18', 'STS_010']) assert.ok(t.includes(`href="/twins/${encodeURIComponent(id)}"`), id);
    assert.match(t, /gompertz|exponential|logistic|bertalanffy/i);
    assert.ok(!t.includes('<script>alert(1)'), 'hostile id escaped');
    assert.ok(t.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(!t.includes('<img src=x'), 'hostile cohort escaped');
    assert.ok(t.includes('&lt;img src=x onerror=alert(1)&gt;'));
    const q = await (await get('/twins?q=8.937')).text();
    assert.ok(q.includes('8.9373642224038861E+18') && !q.includes(PID));
    const none = await (await get(`/twins?q=${encodeURIComponent('%_')}`)).text();
    assert.ok(none.includes('No patient id contains'), 'LIKE wildcards are searched literally');
  });

  it('/twins/ID shows the record with the growth chart, forecasts and the what-if form', async () => {
    const r = await get(`/twins/${encodeURIComponent(PID)}`);
    assert.equal(r.status, 200);
    const t = await r.text();
    assert.ok(t.includes(`Patient ${PID}`));
    assert.ok(t.includes(`data-chart="/twins/${encodeURIComponent(PID)}/plot.json"`));
    assert.ok(t.includes('Scored forecasts') || t.includes('No forecast scored yet'));
    assert.ok(t.includes('Pending forecasts'));
    // The band's calibration is shown: this small site has fewer than 10 completed follow-ups.
    assert.match(t, /id="band-calibration">90% band: model band, not calibrated: this site has \d+ completed follow-ups?, calibration needs at least 10\./);
    assert.ok(t.includes('90% band of the model, not calibrated'));
    assert.ok(t.includes(`action="/twins/${encodeURIComponent(PID)}/whatif"`) && t.includes(`name="csrf" value="${CSRF}"`));
    assert.ok(t.includes('No Grad-CAM overlay') && t.includes('no imported image'), 'no image: said plainly');
    assert.ok(t.includes('/assets/uplot.js'), 'charts load uPlot');
  });

  it('plot.json: observed points, the fitted curve and its 90% band', async () => {
    const r = await get(`/twins/${encodeURIComponent(PID)}/plot.json`);
    assert.equal(r.status, 200);
    const d = (await r.json()) as { x: number[]; series: { label: string; values: (number | null)[]; points?: boolean; bandWith?: number }[] };
    const observed = d.series.find((s) => s.points)!;
    assert.equal(observed.values.filter((v) => v !== null).length, 9);
    const fitted = d.series.find((s) => s.label === 'twin forecast')!;
    assert.ok(fitted.values.filter((v) => v !== null).length > 20);
    const upperIdx = d.series.findIndex((s) => s.bandWith !== undefined);
    assert.ok(upperIdx > 0);
    const upper = d.series[upperIdx];
    const lower = d.series[upper.bandWith!];
    assert.ok(lower, 'the band names its lower series');
    d.x.forEach((_, i) => {
      if (upper.values[i] !== null && fitted.values[i] !== null) assert.ok(lower.values[i]! <= upper.values[i]!);
    });
    assert.deepEqual(
      d.x,
      [...d.x].sort((a, b) => a - b),
      'x ascending',
    );
  });

  it('posting the what-if form shows the current plan and the alternative side by side, and audits it', async () => {
    const r = await post(`/twins/${encodeURIComponent(PID)}/whatif`, { rtFractions: '10', rtDoseGy: '3', rtStartDay: '400', horizonDays: '120' });
    const t = await r.text();
    assert.equal(r.status, 200, t.slice(0, 400));
    const table = t.slice(t.indexOf('id="whatif-table"'));
    assert.ok(table.includes('current plan') && table.includes('what-if: RT 10 x 3 Gy from day 400'));
    const chart = /data-chart="([^"]*whatif\.json[^"]*)"/.exec(t);
    assert.ok(chart, 'what-if chart');
    const d = (await (await get(chart[1].replace(/&amp;/g, '&'))).json()) as { series: { label: string; points?: boolean }[] };
    assert.deepEqual(
      d.series.filter((s) => !s.points).map((s) => s.label),
      ['current plan', 'what-if: RT 10 x 3 Gy from day 400'],
    );
    assert.ok(audit.entries().some((e) => e.action === 'twin.simulated' && e.detail!.includes(PID)));
  });

  it('refuses bad and oversized what-if input with a page that says what to change', async () => {
    const r = await post(`/twins/${encodeURIComponent(PID)}/whatif`, { rtFractions: '1000', rtDoseGy: 'abc', rtStartDay: '1' });
    assert.equal(r.status, 400);
    const t = await r.text();
    assert.ok(t.includes('Radiotherapy fractions: 1000 is outside 1 to 60'));
    assert.ok(t.includes('Dose per fraction (Gy): &quot;abc&quot; is not a number'));
    const empty = await post(`/twins/${encodeURIComponent(PID)}/whatif`, {});
    assert.equal(empty.status, 400);
    const big = await post(`/twins/${encodeURIComponent(PID)}/whatif`, { sysAgent: 'x'.repeat(10_000) });
    assert.equal(big.status, 413, 'body over 4 KiB refused before parsing');
    const noCsrf = await fetch(`${base}/twins/${encodeURIComponent(PID)}/whatif`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'rtFractions=5' });
    assert.equal(noCsrf.status, 400);
    assert.equal(parseWhatIf({ sysAgent: 'immuno', sysStartDay: '10', sysStopDay: '5' }).ok, false);
    const ok = parseWhatIf({ sysAgent: 'immunotherapy', sysStartDay: '0', sysStopDay: '' });
    assert.ok(ok.ok && ok.input.systemic?.stopDay === Infinity);
  });

  it('unknown patient: 404 page; malformed or traversing id: 400; never a 500', async () => {
    const unknown = await get('/twins/NOPE_123');
    assert.equal(unknown.status, 404);
    assert.ok((await unknown.text()).includes('No patient NOPE_123 at this site'));
    for (const bad of ['..%2F..%2Fsite.db', '%3Cscript%3E', 'a'.repeat(200), '.hidden']) {
      const r = await get(`/twins/${bad}`);
      // fastify answers 414 for a parameter over its maxParamLength (100) before the route runs.
      assert.ok(r.status === 400 || (r.status === 414 && bad.length > 100), `${bad}: ${r.status}`);
      assert.ok(!(await r.text()).includes('<script>'));
    }
    assert.equal((await get('/twins/NOPE_123/plot.json')).status, 404);
    assert.equal((await get('/twins/..%2Fx/gradcam.png')).status, 400);
    assert.equal((await get(`/twins/${encodeURIComponent('<script>alert(1)</script>')}`)).status, 400);
  });

  it('Grad-CAM: an overlay PNG for a patient with an image when the site has a segmentation model', async () => {
    const t = await (await get('/twins/STS_010')).text();
    assert.ok(t.includes('src="/twins/STS_010/gradcam.png"'));
    assert.ok(t.includes('morph_volume') && /<td>1\d{5}<\/td>/.test(t), 'radiomics headline with the tumour volume');
    assert.ok(t.includes('Imaging series') && t.includes('PET'));
    const r = await get('/twins/STS_010/gradcam.png');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/png');
    const png = Buffer.from(await r.arrayBuffer());
    assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    assert.equal((await get(`/twins/${encodeURIComponent(PID)}/gradcam.png`)).status, 404, 'no image: no overlay');
  });
});
