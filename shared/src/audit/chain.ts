import { canonicalJson, sha256Hex, utf8 } from '@twinfed/protocols';
import { fromB64, toB64 } from '../crypto/sodium.js';
import { sign, verify } from '../crypto/identity.js';

/** Hash of the genesis link. */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditFields {
  id: number;
  tsMs: number;
  actor: string;
  action: string;
  peer: string | null;
  msgType: string | null;
  seq: number | null;
  studyId: string | null;
  round: number | null;
  digest: string | null;
  sizeBytes: number | null;
  detail: string | null;
}
export interface AuditEntry extends AuditFields {
  sig: string;
  prevHash: string;
  hash: string;
}

/** hash_i = SHA-256(canonicalJson(fields_i + prevHash)): a hash chain (Haber & Stornetta 1991). */
export function entryHash(f: AuditFields, prevHash: string): string {
  const { id, tsMs, actor, action, peer, msgType, seq, studyId, round, digest, sizeBytes, detail } = f;
  return sha256Hex(canonicalJson({ id, tsMs, actor, action, peer, msgType, seq, studyId, round, digest, sizeBytes, detail, prevHash }));
}

/** Links one entry to the previous hash and signs the link with the log owner's key. */
export function signEntry(fields: AuditFields, prevHash: string, ed25519SecretKey: Uint8Array): AuditEntry {
  const hash = entryHash(fields, prevHash);
  return { ...fields, prevHash, hash, sig: toB64(sign(utf8(hash), ed25519SecretKey)) };
}

export interface ChainVerdict {
  ok: boolean;
  checked: number;
  /** First broken link: the entry id and what is wrong with it. */
  firstBroken: { id: number; reason: string } | null;
  lastHash: string;
}

/**
 * Walks the chain from genesis: ids consecutive from 1, each prevHash equal to
 * the previous hash, each hash recomputed from the fields, each signature valid
 * under the owner's key. Any edit, deletion, insertion or reordering breaks it.
 */
export function verifyAuditChain(entries: readonly AuditEntry[], ownerPublicKey: Uint8Array): ChainVerdict {
  let prev = GENESIS_HASH;
  let expectedId = 1;
  for (const e of entries) {
    const broken = (reason: string): ChainVerdict => ({ ok: false, checked: expectedId - 1, firstBroken: { id: e.id, reason }, lastHash: prev });
    if (e.id !== expectedId) return broken(`expected entry ${expectedId}, found ${e.id}: entries deleted or inserted`);
    if (e.prevHash !== prev) return broken('previous-hash link does not match the preceding entry');
    if (entryHash(e, e.prevHash) !== e.hash) return broken('entry content does not match its hash: the entry was edited');
    let sigOk = false;
    try {
      sigOk = verify(fromB64(e.sig), utf8(e.hash), ownerPublicKey);
    } catch {
      sigOk = false;
    }
    if (!sigOk) return broken("signature does not verify under the log owner's key");
    prev = e.hash;
    expectedId++;
  }
  return { ok: true, checked: entries.length, firstBroken: null, lastHash: prev };
}
