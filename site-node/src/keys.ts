import { and, eq } from 'drizzle-orm';
import { createHash } from 'node:crypto';
import { KEY_HANDOUT_KIND, WireError, canonicalJson, keyHandoutFields, type BodyOf, type StudyManifest } from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { fromB64, openSealed, sealTo, signStatement, toB64, verifyStatement, type Identity } from '@twinfed/shared/crypto/index';
import { createHeContext, generateSecretKey, heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import type { SiteDb } from './db/index.js';
import { studyKeys } from './db/schema.js';

/**
 * SHA-256 commitment to a study key: domain string, study, epoch, manifest hash, then the key
 * bytes. The dealer signs it in the handout; a recipient checks the key it opened against it, so a
 * coordinator that swaps the sealed box for one of its own is caught. The key has ~4096 ternary
 * coefficients of entropy: the commitment reveals nothing usable about it.
 */
export function studyKeyCommitment(studyId: string, epoch: number, manifestHash: string, secretKey: Uint8Array): string {
  return createHash('sha256').update('twinfed.study-key.v1\n').update(canonicalJson({ studyId, epoch, manifestHash })).update('\n').update(secretKey).digest('hex');
}

export type StudyKeyRow = typeof studyKeys.$inferSelect;

export function studyKey(db: SiteDb, studyId: string, epoch: number): StudyKeyRow | undefined {
  return db
    .select()
    .from(studyKeys)
    .where(and(eq(studyKeys.studyId, studyId), eq(studyKeys.epoch, epoch)))
    .get();
}

/**
 * The dealer's side of keys.request: the site deals only for the manifest its officer approved,
 * only if that manifest names it a dealer, and seals only to roster sites — with the keys written
 * in the manifest, never keys the coordinator sends — and re-seals a key only under the manifest
 * it was dealt for. Returns the keys.sealed body.
 */
export async function dealStudyKey(
  db: SiteDb,
  audit: AuditLog,
  identity: Identity,
  siteId: string,
  m: StudyManifest,
  approvedHash: string,
  req: BodyOf['keys.request'],
): Promise<BodyOf['keys.sealed']> {
  if (req.manifestHash !== approvedHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', `key request for manifest ${req.manifestHash.slice(0, 12)}, the officer approved ${approvedHash.slice(0, 12)}`);
  if (!m.keyDealers.includes(siteId)) throw new WireError('TWF_E_KEY_HANDOUT', `${siteId} is not a key dealer of this manifest`);
  const params = m.encryption as HeParams;
  if (heParamsDigest(req.encryption as HeParams) !== heParamsDigest(params)) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'key request for other encryption parameters');
  const roster = new Map(m.participants.map((p) => [p.siteId, p]));
  const outsiders = req.recipients.filter((r) => !roster.has(r));
  if (outsiders.length) {
    audit.append({ actor: siteId, action: 'keys.refused', studyId: m.studyId, detail: `TWF_E_KEY_HANDOUT: asked to seal the study key to ${outsiders.join(',')}, not in the approved roster` });
    throw new WireError('TWF_E_KEY_HANDOUT', `recipients ${outsiders.join(',')} are not in the approved roster`);
  }
  let key = studyKey(db, m.studyId, req.epoch);
  if (key && key.dealerSiteId !== siteId) throw new WireError('TWF_E_KEY_HANDOUT', `epoch ${req.epoch} was already dealt by ${key.dealerSiteId}`);
  if (key && key.manifestHash !== approvedHash) {
    // A key is re-sealed only under the manifest it was dealt for: a site added by a later roster
    // change gets that change's new epoch, never a key that opens the rounds before its approval.
    const why = `epoch ${req.epoch} was dealt under manifest ${key.manifestHash.slice(0, 12)}; asked to re-seal it under ${approvedHash.slice(0, 12)} (a new manifest gets a new epoch)`;
    audit.append({ actor: siteId, action: 'keys.refused', studyId: m.studyId, detail: `TWF_E_KEY_HANDOUT: ${why}` });
    throw new WireError('TWF_E_KEY_HANDOUT', why);
  }
  if (!key) {
    const ctx = await createHeContext(params);
    const sk = generateSecretKey(ctx);
    const commitment = studyKeyCommitment(m.studyId, req.epoch, approvedHash, sk);
    db.insert(studyKeys)
      .values({
        studyId: m.studyId,
        epoch: req.epoch,
        secretKey: Buffer.from(sk),
        dealerSiteId: siteId,
        heParamsDigest: heParamsDigest(params),
        keyCommitment: commitment,
        manifestHash: approvedHash,
        receivedAtMs: Date.now(),
      })
      .run();
    audit.append({ actor: siteId, action: 'keys.generated', studyId: m.studyId, digest: commitment, detail: `epoch ${req.epoch}: SEAL secret key created at this site (key dealer)` });
    key = studyKey(db, m.studyId, req.epoch)!;
  }
  const recipients = [...new Set(req.recipients)].sort();
  const signature = signStatement(
    KEY_HANDOUT_KIND,
    keyHandoutFields({ studyId: m.studyId, manifestHash: approvedHash, epoch: req.epoch, dealerSiteId: siteId, recipients, keyCommitment: key.keyCommitment }),
    identity.ed25519SecretKey,
  );
  const sealed = recipients.map((r) => ({ siteId: r, sealedKey: toB64(sealTo(fromB64(roster.get(r)!.x25519PublicKey), new Uint8Array(key!.secretKey))) }));
  audit.append({ actor: siteId, action: 'keys.sealed', studyId: m.studyId, digest: key.keyCommitment, detail: `epoch ${req.epoch} for ${recipients.join(',')} (roster keys)` });
  return { epoch: req.epoch, manifestHash: approvedHash, heParamsDigest: key.heParamsDigest, keyCommitment: key.keyCommitment, signature, recipients: sealed };
}

/**
 * A recipient's side of keys.deliver: accepted only when a dealer of the approved roster signed
 * the handout (study, manifest, epoch, recipients, commitment), every recipient is in the roster,
 * this site is one of them, and the opened key matches the commitment.
 */
export function acceptStudyKey(db: SiteDb, audit: AuditLog, identity: Identity, siteId: string, m: StudyManifest, approvedHash: string, b: BodyOf['keys.deliver']): 'stored' | 'known' {
  const refuse = (why: string): never => {
    audit.append({ actor: b.dealerSiteId, action: 'keys.refused', studyId: m.studyId, detail: `TWF_E_KEY_HANDOUT: ${why}` });
    throw new WireError('TWF_E_KEY_HANDOUT', why);
  };
  if (b.manifestHash !== approvedHash) refuse(`handout for manifest ${b.manifestHash.slice(0, 12)}, the officer approved ${approvedHash.slice(0, 12)}`);
  if (!m.keyDealers.includes(b.dealerSiteId)) refuse(`${b.dealerSiteId} is not a key dealer of the approved manifest`);
  const roster = new Map(m.participants.map((p) => [p.siteId, p]));
  const outsiders = b.recipients.filter((r) => !roster.has(r));
  if (outsiders.length) refuse(`handout names recipients outside the roster: ${outsiders.join(',')}`);
  if (!b.recipients.includes(siteId)) refuse("this site is not among the handout's recipients");
  const fields = keyHandoutFields({ studyId: m.studyId, manifestHash: b.manifestHash, epoch: b.epoch, dealerSiteId: b.dealerSiteId, recipients: b.recipients, keyCommitment: b.keyCommitment });
  if (!verifyStatement(KEY_HANDOUT_KIND, fields, b.signature, fromB64(roster.get(b.dealerSiteId)!.ed25519PublicKey))) refuse(`handout signature does not verify under ${b.dealerSiteId}'s roster key`);
  if (b.heParamsDigest !== heParamsDigest(m.encryption as HeParams)) refuse('handout for other encryption parameters');
  const have = studyKey(db, m.studyId, b.epoch);
  if (have) {
    if (have.keyCommitment !== b.keyCommitment) refuse(`epoch ${b.epoch} already holds a key with another commitment`);
    return 'known';
  }
  let sk: Uint8Array;
  try {
    sk = openSealed(fromB64(b.sealedKey), identity);
  } catch {
    return refuse("the sealed key does not open with this site's X25519 key");
  }
  if (studyKeyCommitment(m.studyId, b.epoch, approvedHash, sk) !== b.keyCommitment) refuse("the opened key does not match the dealer's signed commitment (a substituted key)");
  db.insert(studyKeys)
    .values({
      studyId: m.studyId,
      epoch: b.epoch,
      secretKey: Buffer.from(sk),
      dealerSiteId: b.dealerSiteId,
      heParamsDigest: b.heParamsDigest,
      keyCommitment: b.keyCommitment,
      manifestHash: approvedHash,
      receivedAtMs: Date.now(),
    })
    .run();
  audit.append({
    actor: b.dealerSiteId,
    action: 'keys.received',
    studyId: m.studyId,
    digest: b.keyCommitment,
    detail: `epoch ${b.epoch}: study key opened and checked against the dealer's signed commitment`,
  });
  return 'stored';
}
