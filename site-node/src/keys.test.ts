import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SECURE_AGGREGATION, StudyManifestSchema, WireError, manifestHash, type StudyManifest } from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import { fromB64, generateIdentity, initSodium, openSealed, toB64, type Identity } from '@twinfed/shared/crypto/index';
import { DEFAULT_HE_PARAMS } from '@twinfed/shared/he/index';
import { openSiteDb, type SiteDb } from './db/index.js';
import { dealStudyKey, studyKey } from './keys.js';

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
      title: 'keys test', task: 'segmentation',
      model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 3 },
      training: { epochsPerRound: 1, batchSize: 8, learningRate: 0.01, clipBound: 1, seed: 5 },
      data: { modality: 'PET', labels: ['background', 'tumour'], minTrainSlices: 1 },
      rounds: 1, minSites: 3, roundDeadlineS: 30,
      studyId: 'study-keys', encryption: DEFAULT_HE_PARAMS, coordinatorId: 'coordinator-0123456789abcdef', createdAt: '2026-11-28T00:00:00.000Z',
      updateLength: 1650, secureAggregation: SECURE_AGGREGATION, manifestVersion: v,
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
    assert.deepEqual(dealt.recipients.map((r) => r.siteId), [name(0), name(1), name(2)]);
    // The roster change adds site 3 and every officer approves version 2; the coordinator asks for epoch 1 again.
    const v2 = manifest(2, 4);
    await assert.rejects(dealStudyKey(db, audit, ids[0], name(0), v2.m, v2.hash, request(1, v2.hash, 4)), (e: unknown) => e instanceof WireError && e.code === 'TWF_E_KEY_HANDOUT' && /dealt under manifest/.test(e.detail));
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
