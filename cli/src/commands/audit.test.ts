import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuditExchange, dropTail } from '@twinfed/shared/audit/testing';
import { generateIdentity, initSodium, toB64 } from '@twinfed/shared/crypto/index';

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));
const twinfed = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** A short study between one site and the coordinator, on real files; the coordinator signs receipts and checkpoints. */
async function exchange(dir: string, opts: { statementTables?: boolean } = {}) {
  const x = await AuditExchange.create(dir, opts);
  x.siteSends('hello');
  x.coordinatorSends('welcome');
  x.siteSends('study.join', { studyId: 's1' });
  x.siteSends('update.chunk', { studyId: 's1', round: 1 });
  x.coordinatorLogs('round.closed', 's1 round 1');
  x.checkpoint(1);
  return x;
}

describe('twinfed audit compare', () => {
  const root = mkdtempSync(join(tmpdir(), 'twf-audit-cli-'));
  let n = 0;
  const dir = () => join(root, String(++n));
  before(() => initSodium());
  after(() => rmSync(root, { recursive: true, force: true }));

  it('passes an honest pair with the keys the site pinned beside site.db, and prints each check', async () => {
    const x = await exchange(dir());
    x.close();
    const r = twinfed('audit', 'compare', '--site-db', x.site.path, '--coordinator-db', x.coordinator.path);
    assert.equal(r.code, 0, r.err + r.out);
    const lines = r.out.split('\n');
    assert.equal(lines[0], 'OK  site site-a against coordinator coordinator-1 (coordinator key from site.json, site key from identity.json)');
    assert.match(r.out, /site log +\d+ entries: chain intact, signatures valid/);
    assert.match(r.out, /site -> coordinator +3 matched, 0 sent but not logged/);
    assert.match(r.out, /receipts +3 checked, 0 bad/);
    assert.match(r.out, /checkpoints +1 checked, 0 bad; the newest valid one names entry 5 of 6/);
    assert.match(r.out, /explained, not failures:\n +0 unacknowledged/);
    assert.doesNotMatch(r.out, /problems/);
  });

  it('exits 2 on a coordinator log whose tail was dropped, and says why', async () => {
    const x = await exchange(dir());
    dropTail(x.coordinator.sqlite, 3);
    x.close();
    const r = twinfed('audit', 'compare', '--site-db', x.site.path, '--coordinator-db', x.coordinator.path);
    assert.equal(r.code, 2, r.err);
    assert.match(r.out, /^MISMATCH /);
    assert.match(r.out, /coordinator log +3 entries: chain intact/, 'the shortened log verifies on its own');
    assert.match(r.out, /checkpoint: checkpoint of coordinator entry 5 .*no entry 5 \(it has 3\): its tail was dropped/);
    assert.match(r.out, /receipt: receipt for site seq 3 .*tail was dropped/);
    const j = JSON.parse(twinfed('audit', 'compare', '--site-db', x.site.path, '--coordinator-db', x.coordinator.path, '--json').out) as { ok: boolean; badCheckpoints: unknown[] };
    assert.equal(j.ok, false);
    assert.equal(j.badCheckpoints.length, 1);
  });

  it('shows at most 10 problems of a kind', async () => {
    const x = await exchange(dir());
    for (let i = 0; i < 13; i++) x.siteSends('metrics.report', { outcome: 'lost-silently' });
    x.close();
    const r = twinfed('audit', 'compare', '--site-db', x.site.path, '--coordinator-db', x.coordinator.path);
    assert.equal(r.code, 2);
    assert.equal(r.out.split('\n').filter((l) => l.startsWith('  sent-not-received: site seq')).length, 10);
    assert.match(r.out, /sent-not-received: \.\.\. and 3 more/);
  });

  it('says so when site.db predates receipts and checkpoints', async () => {
    const x = await exchange(dir(), { statementTables: false });
    x.close();
    const r = twinfed('audit', 'compare', '--site-db', x.site.path, '--coordinator-db', x.coordinator.path);
    assert.equal(r.code, 0, r.err + r.out);
    assert.match(r.out, /receipts +none: site.db has no receipts table/);
    assert.match(r.out, /checkpoints +none: site.db has no audit_checkpoints table/);
  });

  it('refuses without pinned keys, naming the flag; takes them from the command line', async () => {
    const x = await exchange(dir());
    x.close();
    const bare = join(root, `bare-${n}`);
    mkdirSync(bare);
    copyFileSync(x.site.path, join(bare, 'site.db'));
    const args = ['audit', 'compare', '--site-db', join(bare, 'site.db'), '--coordinator-db', x.coordinator.path];
    const noCoordinator = twinfed(...args);
    assert.equal(noCoordinator.code, 1);
    assert.match(noCoordinator.err, /TWF_E_AUDIT: no pinned coordinator key \(.*site.json is absent\); pass --coordinator-key/);
    const coordinatorKey = toB64(x.coordinator.identity.ed25519PublicKey);
    const noSite = twinfed(...args, '--coordinator-key', coordinatorKey);
    assert.equal(noSite.code, 1);
    assert.match(noSite.err, /no pinned site key \(.*identity.json is absent\); pass --site-key/);
    const both = twinfed(...args, '--coordinator-key', coordinatorKey, '--site-key', toB64(x.site.identity.ed25519PublicKey));
    assert.equal(both.code, 0, both.err + both.out);
    assert.match(both.out, /^OK .*coordinator key from --coordinator-key, site key from --site-key/);
    // A coordinator key other than the one the coordinator signed with: its chain, receipts and checkpoints fail.
    const wrong = twinfed('audit', 'compare', '--site-db', x.site.path, '--coordinator-db', x.coordinator.path, '--coordinator-key', toB64(generateIdentity().ed25519PublicKey));
    assert.equal(wrong.code, 2);
    assert.match(wrong.out, /coordinator log +BROKEN at entry 1: signature/);
    assert.match(twinfed(...args, '--coordinator-key', 'not-a-key').err, /--coordinator-key is not a base64 Ed25519 public key/);
  });
});
