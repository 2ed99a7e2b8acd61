/**
 * The fields of statements one party signs and another checks after a relay (signing and
 * checking: shared/src/crypto/statement.ts). Builders live here, next to the messages that
 * carry the signatures, so both ends sign and verify exactly the same fields.
 */

/** A dealer's study-key handout (KEY_HANDOUT_KIND): recipients sorted, so the order they travel in does not matter. */
export function keyHandoutFields(h: { studyId: string; manifestHash: string; epoch: number; dealerSiteId: string; recipients: readonly string[]; keyCommitment: string }) {
  return { studyId: h.studyId, manifestHash: h.manifestHash, epoch: h.epoch, dealerSiteId: h.dealerSiteId, recipients: [...h.recipients].sort(), keyCommitment: h.keyCommitment };
}

/** A site's connection handshake (HANDSHAKE_KIND). */
export function handshakeFields(h: { coordinatorId: string; siteId: string; nonce: string }) {
  return { coordinatorId: h.coordinatorId, siteId: h.siteId, nonce: h.nonce };
}

/** The round a secure-aggregation statement belongs to. */
export interface MaskRoundRef {
  studyId: string;
  manifestHash: string;
  round: number;
}

/** A site's per-round mask keys (MASK_KEYS_KIND): its X25519 mask key and the commitment to its self-mask seed. */
export function maskKeysFields(r: MaskRoundRef, siteId: string, sPk: string, bCommit: string) {
  return { studyId: r.studyId, manifestHash: r.manifestHash, round: r.round, siteId, sPk, bCommit };
}

/** The key set U2 and survivors U3 a site agrees to (MASK_SURVIVORS_KIND), both sorted. */
export function maskSurvivorsFields(r: MaskRoundRef, keySet: readonly string[], survivors: readonly string[]) {
  return { studyId: r.studyId, manifestHash: r.manifestHash, round: r.round, keySet: [...keySet].sort(), survivors: [...survivors].sort() };
}

/** Statement kind of the coordinator's receipt of an accepted site message. */
export const RECEIPT_KIND = 'twinfed.receipt.v1';

/** Statement kind of an audit checkpoint (the coordinator's chain head, signed). */
export const CHECKPOINT_KIND = 'twinfed.checkpoint.v1';

/**
 * A receipt's signed fields: which message (site, seq, type, study, round, payload digest) and the
 * audit entry that logged it — listed one by one, so an extra property never slips into a signature.
 */
export function receiptFields(r: {
  coordinatorId: string;
  siteId: string;
  seq: number;
  msgType: string;
  studyId: string | null;
  round: number | null;
  digest: string;
  entryId: number;
  entryHash: string;
}) {
  return { coordinatorId: r.coordinatorId, siteId: r.siteId, seq: r.seq, msgType: r.msgType, studyId: r.studyId, round: r.round, digest: r.digest, entryId: r.entryId, entryHash: r.entryHash };
}

/** A checkpoint's signed fields: the coordinator's audit chain head at a moment (CHECKPOINT_KIND). */
export function checkpointFields(c: { coordinatorId: string; entryId: number; entryHash: string; tsMs: number }) {
  return { coordinatorId: c.coordinatorId, entryId: c.entryId, entryHash: c.entryHash, tsMs: c.tsMs };
}

/** Statement kind of the coordinator's announcement of its next TLS key (certificate renewal). */
export const TLS_ROLLOVER_KIND = 'twinfed.tls.rollover.v1';

/** A TLS rollover's signed fields: the coordinator, the pin it serves now, the pin it will serve next, when it said so. */
export function tlsRolloverFields(r: { coordinatorId: string; currentPin: string; nextPin: string; issuedAtMs: number }) {
  return { coordinatorId: r.coordinatorId, currentPin: r.currentPin, nextPin: r.nextPin, issuedAtMs: r.issuedAtMs };
}
