import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Coordinator } from '@twinfed/coordinator';
import { StudySpecSchema } from '@twinfed/protocols';
import { fingerprint, fromB64, initSodium } from '@twinfed/shared/crypto/index';
import { ADMIN_TOKEN, createAndStart, enrolNewSite, lead, startCoordinator, tempDir, tinySpec, waitFor } from './harness.js';
import { enrolledSite, type OpenSite } from './attacks/ops-kit.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');
const SPECS = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../examples/specs');

/** Runs the CLI with only the environment given (plus PATH): no TWINFED_* leaks in from the test's shell. */
const twinfed = (args: string[], env: Record<string, string> = {}) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', ...env } }, (e, out, err) =>
      res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }),
    );
  });

/** A loopback port nobody listens on (bound, then released). */
const freePort = () =>
  new Promise<number>((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => res(port));
    });
  });

describe('twinfed lead, spec and audit commands (a real coordinator on loopback)', () => {
  const tmp = tempDir('cli-lead');
  let c: Coordinator;
  let url: string;
  let a: OpenSite;
  const coordDir = join(tmp.dir, 'coordinator');
  const aDir = join(tmp.dir, 'a');
  let env: Record<string, string>;

  before(async () => {
    await initSodium();
    ({ c, url } = await startCoordinator(coordDir));
    env = { TWINFED_COORDINATOR_URL: url, TWINFED_ADMIN_TOKEN: ADMIN_TOKEN };
    a = await enrolledSite(url, aDir, 'Hospital Alpha');
    await enrolNewSite(url, join(tmp.dir, 'b'), 'Hospital Beta');
    await enrolNewSite(url, join(tmp.dir, 'c'), 'Hospital Gamma');
    a.node.connect();
  });
  after(async () => {
    await a?.close();
    await c?.close();
    tmp.cleanup();
  });

  it('every example spec parses with the schema', () => {
    const files = readdirSync(SPECS).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 4, files.join(','));
    for (const f of ['segmentation.json', 'response.json']) assert.ok(files.includes(f), f);
    const specs = files.map((f) => StudySpecSchema.parse(JSON.parse(readFileSync(join(SPECS, f), 'utf8'))));
    assert.ok(
      specs.some((s) => s.dp),
      'one example with differential privacy',
    );
    assert.ok(
      specs.some((s) => s.strategy?.name === 'fedprox'),
      'one example with FedProx',
    );
  });

  it('says which URL it could not reach and what to set, instead of "fetch failed"', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const r = await twinfed(['lead', 'studies'], { TWINFED_COORDINATOR_URL: dead, TWINFED_ADMIN_TOKEN: ADMIN_TOKEN });
    assert.equal(r.code, 1);
    assert.equal(r.err.trim(), `TWF_E_COORDINATOR_UNREACHABLE: cannot reach the coordinator at ${dead} (ECONNREFUSED): is it running? set --coordinator or TWINFED_COORDINATOR_URL`);
    assert.doesNotMatch(r.err, /fetch failed/);
    // The flag wins over the environment.
    const flag = await twinfed(['lead', 'studies', '--coordinator', url, '--json'], { TWINFED_COORDINATOR_URL: dead, TWINFED_ADMIN_TOKEN: ADMIN_TOKEN });
    assert.equal(flag.code, 0, flag.err);
    assert.deepEqual(JSON.parse(flag.out), []);
  });

  it('refuses an unknown key with a suggestion and a JSON error with file:line:column, before anything reaches the coordinator', async () => {
    const spec = JSON.parse(readFileSync(join(SPECS, 'segmentation.json'), 'utf8')) as Record<string, unknown> & { model: Record<string, unknown> };
    const typo: Record<string, unknown> = { ...spec, minSite: spec.minSites, model: { ...spec.model, inChanels: 1 } };
    delete typo.minSites;
    delete (typo.model as Record<string, unknown>).inChannels;
    const typoFile = join(tmp.dir, 'typo.json');
    writeFileSync(typoFile, JSON.stringify(typo, null, 2));
    const check = await twinfed(['spec', 'check', typoFile, '--json']);
    assert.equal(check.code, 2);
    const j = JSON.parse(check.out) as { ok: boolean; issues: { path: string; message: string; suggestion?: string }[] };
    assert.equal(j.ok, false);
    assert.deepEqual(
      j.issues.filter((i) => i.suggestion).map((i) => [i.path, i.suggestion]),
      [
        ['model.inChanels', 'inChannels'],
        ['minSite', 'minSites'],
      ],
    );
    const created = await twinfed(['lead', 'create-study', typoFile], env);
    assert.equal(created.code, 1);
    assert.match(created.err, /TWF_E_SPEC: .*typo\.json is not a valid study spec/);
    assert.match(created.err, /minSite: unknown key "minSite"; did you mean "minSites"\?/);

    const broken = join(tmp.dir, 'broken.json');
    writeFileSync(broken, '{\n  "title": "x",\n  "rounds": 2\n  "minSites": 3\n}\n');
    for (const args of [
      ['spec', 'check', broken],
      ['lead', 'create-study', broken],
    ]) {
      const r = await twinfed(args, env);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.err, /TWF_E_SPEC: .*broken\.json:4:3: JSON syntax error/, args.join(' '));
    }
    assert.equal((await lead<unknown[]>(url, 'GET', '/api/studies')).json.length, 0, 'nothing was created');
    const help = await twinfed(['lead', 'create-study', '--help']);
    assert.match(help.out, /examples\/specs\/segmentation\.json/);
  });

  it('lead studies and lead delete: a draft goes, a started study is refused (audited)', async () => {
    const created = await twinfed(['lead', 'create-study', join(SPECS, 'segmentation.json'), '--json'], env);
    assert.equal(created.code, 0, created.err);
    const { studyId } = JSON.parse(created.out) as { studyId: string };
    const list = await twinfed(['lead', 'studies', '--json'], env);
    const rows = JSON.parse(list.out) as { studyId: string; state: string; rounds: number; closedRounds: number; createdAt: string; title: string }[];
    const row = rows.find((r) => r.studyId === studyId)!;
    assert.equal(row.state, 'draft');
    assert.equal(row.rounds, 5);
    assert.equal(row.closedRounds, 0);
    assert.ok(Date.parse(row.createdAt) > 0);
    const text = await twinfed(['lead', 'studies'], env);
    assert.match(text.out, new RegExp(`${studyId}\\s+draft\\s+0/5`));

    const del = await twinfed(['lead', 'delete', studyId], env);
    assert.equal(del.code, 0, del.err);
    assert.match(del.out, /deleted draft/);
    assert.equal((await lead(url, 'GET', `/api/studies/${studyId}`)).status, 404);
    assert.ok(c.engine.audit.entries().some((e) => e.action === 'study.deleted' && e.studyId === studyId));

    const started = await createAndStart(url, tinySpec({ rounds: 1 }));
    const refused = await twinfed(['lead', 'delete', started.studyId], env);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /TWF_E_STUDY_STATE.*only a draft/);
    await lead(url, 'POST', `/api/studies/${started.studyId}/stop`);
  });

  it('lead status names sites, says who has not approved, and --watch --json ends when the study stops', async () => {
    const { studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 3, title: 'status study' }));
    const r = await twinfed(['lead', 'status', studyId, '--json'], env);
    assert.equal(r.code, 0, r.err);
    const v = JSON.parse(r.out) as { sites: { siteName: string; approved: boolean | null }[]; notApproved: { siteName: string; online: boolean }[]; rounds: number; etaS: number | null };
    assert.deepEqual(v.sites.map((s) => s.siteName).sort(), ['Hospital Alpha', 'Hospital Beta', 'Hospital Gamma']);
    assert.deepEqual(v.notApproved.map((s) => s.siteName).sort(), ['Hospital Alpha', 'Hospital Beta', 'Hospital Gamma']);
    assert.equal(v.notApproved.find((s) => s.siteName === 'Hospital Beta')!.online, false);
    assert.equal(v.etaS, null, 'no closed round yet');
    const text = await twinfed(['lead', 'status', studyId], env);
    assert.match(text.out, /not approved yet: .*Hospital Beta \(offline\)/);
    assert.match(text.out, /ETA: after the first round closes/);

    // The site's officer approves with the hash from `spec hash --manifest` of the manifest the lead downloaded.
    const m = await lead<unknown>(url, 'GET', `/api/studies/${studyId}/manifest`);
    const mFile = join(tmp.dir, 'manifest.json');
    writeFileSync(mFile, JSON.stringify(m.json));
    const h = await twinfed(['spec', 'hash', '--manifest', mFile, '--json']);
    assert.equal(h.code, 0, h.err);
    const hj = JSON.parse(h.out) as { hash: string; statedHashMatches: boolean };
    assert.equal(hj.hash, manifestHash);
    assert.equal(hj.statedHashMatches, true);
    const specHash = await twinfed(['spec', 'hash', join(SPECS, 'segmentation.json'), '--json']);
    assert.notEqual((JSON.parse(specHash.out) as { hash: string }).hash, manifestHash, 'the spec alone is not what is approved');
    await waitFor(() => a.node.db.$client.prepare('select 1 from studies where study_id = ?').get(studyId), 'the study announced to Hospital Alpha', 20_000);
    const approve = await twinfed(['site', 'approve', studyId, '--data-dir', aDir, '--officer', 'Dr P', '--hash', hj.hash]);
    assert.equal(approve.code, 0, approve.err);
    assert.match(approve.out, new RegExp(`manifest hash ${manifestHash}`));

    const stop = await twinfed(['lead', 'stop', studyId], env);
    assert.equal(stop.code, 0, stop.err);
    const watch = await twinfed(['lead', 'status', studyId, '--watch', '--json'], env);
    assert.equal(watch.code, 0, watch.err);
    const lines = watch.out.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0]!) as { state: string }).state, 'stopped');
  });

  it('lead sites and site doctor show one fingerprint format', async () => {
    const sites = JSON.parse((await twinfed(['lead', 'sites', '--json'], env)).out) as { siteName: string; fingerprint: string }[];
    const fp = sites.find((s) => s.siteName === 'Hospital Alpha')!.fingerprint;
    const doctor = JSON.parse((await twinfed(['site', 'doctor', '--data-dir', aDir, '--json'])).out) as { checks: { detail: string }[] };
    assert.ok(
      doctor.checks.some((x) => x.detail.includes(`fingerprint ${fp} `)),
      `${fp} in ${JSON.stringify(doctor.checks.map((x) => x.detail))}`,
    );
  });

  it('audit show filters by type, study, time, text and count', async () => {
    const all = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--json'])).out) as { total: number; entries: { action: string; studyId: string | null; tsMs: number }[] };
    assert.ok(all.total > 5);
    const studies = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--type', 'study', '--json'])).out) as typeof all;
    assert.ok(studies.entries.length > 0 && studies.entries.every((e) => e.action.startsWith('study.')));
    assert.ok(studies.entries.some((e) => e.action === 'study.deleted'));
    const one = studies.entries.find((e) => e.action === 'study.started')!;
    const byStudy = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--study', one.studyId!, '--type', 'study.started,study.stopped', '--json'])).out) as typeof all;
    assert.deepEqual(
      byStudy.entries.map((e) => e.action),
      ['study.started', 'study.stopped'],
    );
    const grep = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--grep', 'hospital beta', '--json'])).out) as typeof all;
    assert.ok(grep.entries.length > 0);
    const last = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--limit', '2', '--json'])).out) as typeof all;
    assert.equal(last.entries.length, 2);
    const future = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--since', '2999-01-01', '--json'])).out) as typeof all;
    assert.equal(future.entries.length, 0);
    const until = JSON.parse((await twinfed(['audit', 'show', '--data-dir', coordDir, '--until', new Date(one.tsMs).toISOString(), '--json'])).out) as typeof all;
    assert.ok(until.entries.length > 0 && until.entries.every((e) => e.tsMs <= one.tsMs));
    const text = await twinfed(['audit', 'show', '--data-dir', aDir, '--type', 'site.enrolled']);
    assert.match(text.out, /site\.enrolled/);
    const bad = await twinfed(['audit', 'show', '--data-dir', coordDir, '--since', 'yesterday']);
    assert.match(bad.err, /TWF_E_BAD_OPTION: --since "yesterday" is not an ISO 8601 time/);
  });

  it('audit verify with another key reports a key mismatch with both fingerprints, not tampering', async () => {
    const own = JSON.parse(readFileSync(join(aDir, 'identity.json'), 'utf8')) as { ed25519PublicKey: string };
    const other = JSON.parse(readFileSync(join(tmp.dir, 'b', 'identity.json'), 'utf8')) as { ed25519PublicKey: string };
    const r = await twinfed(['audit', 'verify', join(aDir, 'site.db'), '--public-key', other.ed25519PublicKey]);
    assert.equal(r.code, 2);
    const [fpA, fpB] = [fingerprint(fromB64(own.ed25519PublicKey)), fingerprint(fromB64(other.ed25519PublicKey))];
    assert.match(r.out, new RegExp(`KEY MISMATCH .*the log is signed by key ${fpA} .*you gave ${fpB}`));
    assert.doesNotMatch(r.out, /BROKEN|does not match its hash/);
    const right = await twinfed(['audit', 'verify', join(aDir, 'site.db'), '--public-key', own.ed25519PublicKey, '--json']);
    assert.equal(right.code, 0, right.out);
    assert.equal((JSON.parse(right.out) as { keyMismatch: unknown }).keyMismatch, null);
  });

  it("audit compare without coordinator.db: the coordinator's log through the API (lead token here), or the site's receipts only", async () => {
    // In this tree GET /api/audit accepts the lead token; an auditor token is the coordinator console's.
    const api = await twinfed(['audit', 'compare', '--site-db', join(aDir, 'site.db'), '--json'], { TWINFED_COORDINATOR_URL: url, TWINFED_AUDITOR_TOKEN: ADMIN_TOKEN });
    assert.equal(api.code, 0, api.out + api.err);
    const j = JSON.parse(api.out) as { ok: boolean; coordinatorSource: string; matched: number; receiptsChecked: number; coordinatorKeyMismatch: unknown };
    assert.equal(j.ok, true);
    assert.equal(j.coordinatorSource, 'api');
    assert.ok(j.matched > 0 && j.receiptsChecked > 0, JSON.stringify(j));
    assert.equal(j.coordinatorKeyMismatch, null);
    const text = await twinfed(['audit', 'compare', '--site-db', join(aDir, 'site.db'), '--coordinator', url, '--auditor-token', ADMIN_TOKEN]);
    assert.match(text.out, new RegExp(`^OK .*coordinator log from the API at ${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    const noToken = await twinfed(['audit', 'compare', '--site-db', join(aDir, 'site.db'), '--coordinator', url]);
    assert.match(noToken.err, /--auditor-token/);

    const receipts = await twinfed(['audit', 'compare', '--site-db', join(aDir, 'site.db'), '--receipts-only', '--json']);
    assert.equal(receipts.code, 0, receipts.out + receipts.err);
    const rj = JSON.parse(receipts.out) as { ok: boolean; receiptsChecked: number; acknowledged: number; sent: number; notChecked: string };
    assert.equal(rj.ok, true);
    assert.ok(rj.receiptsChecked > 0 && rj.acknowledged === rj.receiptsChecked);
    assert.match(rj.notChecked, /coordinator's log/);
  });
});
