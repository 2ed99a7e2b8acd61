import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuditExchange } from '@twinfed/shared/audit/testing';
import { generateIdentity, initSodium, saveIdentity, toB64 } from '@twinfed/shared/crypto/index';

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));
const twinfed = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('twinfed audit report / verify-report', () => {
  const root = mkdtempSync(join(tmpdir(), 'twf-audit-report-'));
  let x: AuditExchange;
  before(async () => {
    await initSodium();
    // Real files: site/site.db + identity.json, coordinator/coordinator.db (+ its identity, saved below). Entries from 2026-01-05 09:00 UTC.
    x = await AuditExchange.create(root);
    x.siteSends('hello');
    x.coordinatorSends('welcome');
    x.siteSends('study.join', { studyId: 's1' });
    x.siteSends('update.chunk', { studyId: 's1', round: 1, outcome: 'rejected' });
    x.close();
    saveIdentity(join(x.coordinator.dir, 'coordinator-identity.json'), x.coordinator.identity);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('writes a signed HTML report of a site folder that verify-report accepts under the pinned key', () => {
    const out = join(root, 'site-report.html');
    const r = twinfed('audit', 'report', '--data-dir', x.site.dir, '--from', '2026-01-05', '--to', '2026-01-05', '--out', out);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /^OK {2}audit report of site site-a .* 2026-01-05 to 2026-01-05 \(UTC\): \d+ entries/);
    const siteKey = toB64(x.site.identity.ed25519PublicKey);
    const v = twinfed('audit', 'verify-report', out, '--public-key', siteKey);
    assert.equal(v.code, 0, v.err + v.out);
    assert.match(v.out, /^OK {2}/);
    // The wrong key: a key mismatch, exit 2.
    const wrong = twinfed('audit', 'verify-report', out, '--public-key', toB64(generateIdentity().ed25519PublicKey));
    assert.equal(wrong.code, 2);
    assert.match(wrong.out, /^KEY MISMATCH/);
    // One edited entry in the embedded data: tampered, exit 2.
    const doc = readFileSync(out, 'utf8');
    const edited = join(root, 'edited.html');
    writeFileSync(edited, doc.replace(/("action":")msg\.sent/, '$1msg.received'));
    const t = twinfed('audit', 'verify-report', edited, '--public-key', siteKey);
    assert.equal(t.code, 2, t.out);
    assert.match(t.out, /^TAMPERED/);
  });

  it('reports a coordinator folder as JSON, an empty range too, and refuses bad dates and folders', () => {
    const j = twinfed('audit', 'report', '--data-dir', x.coordinator.dir, '--from', '2026-01-01', '--to', '2026-01-31', '--json');
    assert.equal(j.code, 0, j.err);
    const signed = JSON.parse(j.out) as { report: { owner: { ownerId: string }; counts: { entries: number; byAction: Record<string, number> } } };
    assert.equal(signed.report.owner.ownerId, 'coordinator-1');
    assert.equal(signed.report.counts.byAction['msg.rejected'], 1);
    const file = join(root, 'coord.json');
    writeFileSync(file, j.out);
    assert.match(twinfed('audit', 'verify-report', file, '--public-key', toB64(x.coordinator.identity.ed25519PublicKey)).out, /^OK/);

    const empty = twinfed('audit', 'report', '--data-dir', x.site.dir, '--from', '2025-01-01', '--to', '2025-01-02', '--json');
    assert.equal((JSON.parse(empty.out) as { report: { counts: { entries: number } } }).report.counts.entries, 0);

    const bad = twinfed('audit', 'report', '--data-dir', x.site.dir, '--from', '2026-02-30', '--to', '2026-03-01');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /TWF_E_BAD_OPTION: --from "2026-02-30"/);
    const reversed = twinfed('audit', 'report', '--data-dir', x.site.dir, '--from', '2026-03-02', '--to', '2026-03-01');
    assert.match(reversed.err, /TWF_E_BAD_OPTION: --from 2026-03-02 is after --to 2026-03-01/);
    const nowhere = twinfed('audit', 'report', '--data-dir', root, '--from', '2026-01-01', '--to', '2026-01-02');
    assert.match(nowhere.err, /holds no site\.db or coordinator\.db/);
  });
});
