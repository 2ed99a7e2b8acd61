import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEY_HANDOUT_KIND, SECURE_AGGREGATION, StudyManifestSchema, WireError, keyHandoutFields, manifestHash, type StudyManifest } from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import { fromB64, generateIdentity, initSodium, openSealed, sealTo, signStatement, toB64, type Identity } from '@twinfed/shared/crypto/index';
import { DEFAULT_HE_PARAMS, createHeContext, generateSecretKey } from '@twinfed/shared/he/index';
import { openSiteDb, type SiteDb } from './db/index.js';
import { acceptStudyKey, dealStudyKey, studyKey, studyKeyCommitment } from './keys.js';

const code = async (fn: () => unknown) => {
  try {
    await fn();
  } catch (e) {
    return (e as WireError).code;
  }
  return 'no error';
};

/** Key dealing and checking at the site, on real SQLite files with real libsodium and SEAL keys. */
describe('study keys at the site', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-keys-'));
  const ids: Identity[] = [];
  const sites = ['site-a', 'site-b', 'site-c'];
  let m: StudyManifest;
  let hash: string;
  const dbs: { db: SiteDb; audit: AuditLog }[] = [];

  before(async () => {
    await initSodium();
    for (const s of sites) {
      const id = generateIdentity();
      ids.push(id);
      const db = openSiteDb(join(dir, `${s}.db`));
      dbs.push({ db, audit: new AuditLog(db, s, id.ed25519SecretKey, id.ed25519PublicKey) });
    }
    m = StudyManifestSchema.parse({
      title: 't',
      task: 'segmentation',
      model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 1 },
      training: { epochsPerRound: 1, batchSize: 4, learningRate: 0.01, clipBound: 1, seed: 1 },
      data: { modality: 'PET', labels: ['bg', 'tumour'] },
      rounds: 1,
      minSites: 3,
      roundDeadlineS: 60,
      encryption: DEFAULT_HE_PARAMS,
      studyId: 'study-k',
      coordinatorId: 'coordinator-x',
      createdAt: '2026-11-27T00:00:00.000Z',
      updateLength: 1650,
      secureAggregation: 'double-mask-v1',
      manifestVersion: 1,
      keyDealers: ['site-a', 'site-b'],
      participants: sites.map((s, i) => ({ siteId: s, siteName: s, ed25519PublicKey: toB64(ids[i].ed25519PublicKey), x25519PublicKey: toB64(ids[i].x25519PublicKey) })),
    });
    hash = manifestHash(m);
  });
  after(() => {
    for (const d of dbs) d.db.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const request = (recipients: string[], epoch = 1) => ({ epoch, manifestHash: hash, encryption: m.encryption, recipients });
  const deliverFor = (sealed: Awaited<ReturnType<typeof dealStudyKey>>, to: string) => ({
    epoch: sealed.epoch,
    manifestHash: sealed.manifestHash,
    dealerSiteId: 'site-a',
    heParamsDigest: sealed.heParamsDigest,
    keyCommitment: sealed.keyCommitment,
    recipients: sealed.recipients.map((r) => r.siteId),
    signature: sealed.signature,
    sealedKey: sealed.recipients.find((r) => r.siteId === to)!.sealedKey,
  });

  it('a dealer seals only to roster sites: a request naming an outsider is refused and audited', async () => {
    assert.equal(await code(() => dealStudyKey(dbs[0].db, dbs[0].audit, ids[0], 'site-a', m, hash, request([...sites, 'site-lead']))), 'TWF_E_KEY_HANDOUT');
    assert.ok(dbs[0].audit.entries().some((e) => e.action === 'keys.refused' && /site-lead/.test(e.detail ?? '')));
    assert.equal(studyKey(dbs[0].db, 'study-k', 1), undefined, 'no key was even created');
    assert.equal(await code(() => dealStudyKey(dbs[2].db, dbs[2].audit, ids[2], 'site-c', m, hash, request(sites))), 'TWF_E_KEY_HANDOUT', 'site-c is not a dealer of this manifest');
    assert.equal(await code(() => dealStudyKey(dbs[0].db, dbs[0].audit, ids[0], 'site-a', m, hash, { ...request(sites), manifestHash: 'f'.repeat(64) })), 'TWF_E_MANIFEST_MISMATCH');
  });

  it("an honest handout is accepted by each recipient and holds the dealer's key", async () => {
    const sealed = await dealStudyKey(dbs[0].db, dbs[0].audit, ids[0], 'site-a', m, hash, request(sites));
    for (const i of [1, 2]) assert.equal(acceptStudyKey(dbs[i].db, dbs[i].audit, ids[i], sites[i], m, hash, deliverFor(sealed, sites[i])), 'stored');
    const keys = dbs.map((d) => Buffer.from(studyKey(d.db, 'study-k', 1)!.secretKey).toString('hex'));
    assert.equal(new Set(keys).size, 1);
    assert.equal(acceptStudyKey(dbs[1].db, dbs[1].audit, ids[1], 'site-b', m, hash, deliverFor(sealed, 'site-b')), 'known', 'a re-delivery is harmless');
  });

  it('a key planted by the coordinator is refused: swapped sealed box, forged signature, non-dealer, outsider recipient', async () => {
    const ctx = await createHeContext(DEFAULT_HE_PARAMS);
    const sealed = await dealStudyKey(dbs[0].db, dbs[0].audit, ids[0], 'site-a', m, hash, request(sites, 2));
    const honest = deliverFor(sealed, 'site-b');
    const planted = generateSecretKey(ctx);
    const coordinator = generateIdentity();
    const b = dbs[1];
    // (a) the dealer's signature and commitment kept, the box replaced by one the coordinator made
    assert.equal(await code(() => acceptStudyKey(b.db, b.audit, ids[1], 'site-b', m, hash, { ...honest, sealedKey: toB64(sealTo(ids[1].x25519PublicKey, planted)) })), 'TWF_E_KEY_HANDOUT');
    // (b) a whole handout made and signed by the coordinator, naming a real dealer
    const commitment = studyKeyCommitment('study-k', 2, hash, planted);
    const forged = signStatement(
      KEY_HANDOUT_KIND,
      keyHandoutFields({ studyId: 'study-k', manifestHash: hash, epoch: 2, dealerSiteId: 'site-a', recipients: sites, keyCommitment: commitment }),
      coordinator.ed25519SecretKey,
    );
    assert.equal(
      await code(() =>
        acceptStudyKey(b.db, b.audit, ids[1], 'site-b', m, hash, { ...honest, keyCommitment: commitment, signature: forged, sealedKey: toB64(sealTo(ids[1].x25519PublicKey, planted)) }),
      ),
      'TWF_E_KEY_HANDOUT',
    );
    // (c) signed by a roster site that is not a dealer
    const byC = signStatement(
      KEY_HANDOUT_KIND,
      keyHandoutFields({ studyId: 'study-k', manifestHash: hash, epoch: 2, dealerSiteId: 'site-c', recipients: sites, keyCommitment: commitment }),
      ids[2].ed25519SecretKey,
    );
    assert.equal(await code(() => acceptStudyKey(b.db, b.audit, ids[1], 'site-b', m, hash, { ...honest, dealerSiteId: 'site-c', keyCommitment: commitment, signature: byC })), 'TWF_E_KEY_HANDOUT');
    // (d) a handout listing an outsider among its recipients
    assert.equal(await code(() => acceptStudyKey(b.db, b.audit, ids[1], 'site-b', m, hash, { ...honest, recipients: [...sites, 'site-lead'] })), 'TWF_E_KEY_HANDOUT');
    assert.equal(studyKey(b.db, 'study-k', 2), undefined, 'nothing stored for epoch 2');
    assert.equal(acceptStudyKey(b.db, b.audit, ids[1], 'site-b', m, hash, honest), 'stored', 'the honest handout still goes through');
    assert.ok(b.audit.entries().filter((e) => e.action === 'keys.refused').length >= 4);
  });
});

/**
 * The dealer's side of a key handout, on a real site database with real SEAL keys: what a
 * coordinator can and cannot get a dealer to seal.
 */
describe('key dealer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-keys-'));
  let db: SiteDb;
  let audit: AuditLog;
  const ids: Identity[] = [];
  const name = (k: number) => `site-${k}`;

  /** A manifest of version `v` whose roster is sites 0..n-1, site 0 dealing. */
  const manifest = (v: number, n: number): { m: StudyManifest; hash: string } => {
    const m = StudyManifestSchema.parse({
      title: 'keys test',
      task: 'segmentation',
      model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 3 },
      training: { epochsPerRound: 1, batchSize: 8, learningRate: 0.01, clipBound: 1, seed: 5 },
      data: { modality: 'PET', labels: ['background', 'tumour'], minTrainSlices: 1 },
      rounds: 1,
      minSites: 3,
      roundDeadlineS: 30,
      studyId: 'study-keys',
      encryption: DEFAULT_HE_PARAMS,
      coordinatorId: 'coordinator-0123456789abcdef',
      createdAt: '2026-11-28T00:00:00.000Z',
      updateLength: 1650,
      secureAggregation: SECURE_AGGREGATION,
      manifestVersion: v,
      participants: ids.slice(0, n).map((id, k) => ({ siteId: name(k), siteName: `Hospital ${k}`, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) })),
      keyDealers: [name(0)],
    });
    return { m, hash: manifestHash(m) };
  };
  const request = (epoch: number, hash: string, n: number) => ({ epoch, manifestHash: hash, encryption: DEFAULT_HE_PARAMS, recipients: ids.slice(0, n).map((_, k) => name(k)) });

  before(async () => {
    await initSodium();
    for (let k = 0; k < 4; k++) ids.push(generateIdentity());
    db = openSiteDb(join(dir, 'site.db'));
    audit = new AuditLog(db, name(0), ids[0].ed25519SecretKey, ids[0].ed25519PublicKey);
  });
  after(() => {
    db.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never re-seals a key dealt under an earlier manifest version to a site a roster change added', async () => {
    const v1 = manifest(1, 3);
    const dealt = await dealStudyKey(db, audit, ids[0], name(0), v1.m, v1.hash, request(1, v1.hash, 3));
    assert.deepEqual(
      dealt.recipients.map((r) => r.siteId),
      [name(0), name(1), name(2)],
    );
    // The roster change adds site 3 and every officer approves version 2; the coordinator asks for epoch 1 again.
    const v2 = manifest(2, 4);
    await assert.rejects(
      dealStudyKey(db, audit, ids[0], name(0), v2.m, v2.hash, request(1, v2.hash, 4)),
      (e: unknown) => e instanceof WireError && e.code === 'TWF_E_KEY_HANDOUT' && /dealt under manifest/.test(e.detail),
    );
    assert.match(audit.entries().at(-1)!.detail!, /^TWF_E_KEY_HANDOUT: epoch 1 was dealt under manifest/);
    // Version 2 gets a new epoch with a new key, which site 3 can open.
    const next = await dealStudyKey(db, audit, ids[0], name(0), v2.m, v2.hash, request(2, v2.hash, 4));
    const opened = openSealed(fromB64(next.recipients.find((r) => r.siteId === name(3))!.sealedKey), ids[3]);
    assert.ok(Buffer.from(opened).equals(studyKey(db, 'study-keys', 2)!.secretKey));
    assert.ok(!Buffer.from(opened).equals(studyKey(db, 'study-keys', 1)!.secretKey));
    // Under its own manifest, epoch 1 is still re-sealed (a dealer that reconnects answers the same request again).
    const again = await dealStudyKey(db, audit, ids[0], name(0), v1.m, v1.hash, request(1, v1.hash, 3));
    assert.equal(again.keyCommitment, dealt.keyCommitment);
  });
});
