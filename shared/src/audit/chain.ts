import { canonicalJson, sha256Hex, utf8 } from '@twinfed/protocols';
import { fromB64 } from '../crypto/sodium.js';
import { verify } from '../crypto/identity.js';

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
    if (!sigOk) return broken('signature does not verify under the log owner\'s key');
    prev = e.hash;
    expectedId++;
  }
  return { ok: true, checked: entries.length, firstBroken: null, lastHash: prev };
}

export interface CompareReport {
  siteId: string;
  /** Site -> coordinator messages found in both logs with the same digest. */
  matched: number;
  /** Sent by the site, never logged by the coordinator (lost in transit, or the coordinator hides them). */
  sentNotReceived: { seq: number; msgType: string | null; digest: string | null }[];
  /** Logged by the coordinator as from the site, absent from the site's log (forged or injected). */
  receivedNotSent: { seq: number; msgType: string | null; digest: string | null }[];
  /** Same sequence number, different payload digest (altered). */
  digestMismatch: { seq: number; siteDigest: string | null; coordinatorDigest: string | null }[];
  /** Coordinator -> site messages in both logs. */
  matchedDownstream: number;
  downstreamMismatch: { seq: number; reason: string }[];
  ok: boolean;
}

/**
 * Cross-checks what a site says it sent against what the coordinator says it
 * received from that site (and the other way round), keyed by (sender, seq).
 */
export function compareAuditLogs(siteId: string, site: readonly AuditEntry[], coordinator: readonly AuditEntry[], coordinatorId: string): CompareReport {
  const sent = new Map<number, AuditEntry>();
  for (const e of site) if (e.action === 'msg.sent' && e.seq !== null) sent.set(e.seq, e);
  const received = new Map<number, AuditEntry>();
  for (const e of coordinator) {
    if ((e.action === 'msg.received' || e.action === 'msg.rejected') && e.actor === siteId && e.seq !== null && !received.has(e.seq)) received.set(e.seq, e);
  }
  const r: CompareReport = { siteId, matched: 0, sentNotReceived: [], receivedNotSent: [], digestMismatch: [], matchedDownstream: 0, downstreamMismatch: [], ok: true };
  for (const [seq, s] of sent) {
    const c = received.get(seq);
    if (!c) r.sentNotReceived.push({ seq, msgType: s.msgType, digest: s.digest });
    else if (c.digest !== s.digest) r.digestMismatch.push({ seq, siteDigest: s.digest, coordinatorDigest: c.digest });
    else r.matched++;
  }
  for (const [seq, c] of received) if (!sent.has(seq)) r.receivedNotSent.push({ seq, msgType: c.msgType, digest: c.digest });

  const down = new Map<number, AuditEntry>();
  for (const e of coordinator) if (e.action === 'msg.sent' && e.peer === siteId && e.seq !== null) down.set(e.seq, e);
  for (const e of site) {
    if (e.action !== 'msg.received' || e.actor !== coordinatorId || e.seq === null) continue;
    const c = down.get(e.seq);
    if (!c) r.downstreamMismatch.push({ seq: e.seq, reason: 'site logged a coordinator message the coordinator did not log as sent' });
    else if (c.digest !== e.digest) r.downstreamMismatch.push({ seq: e.seq, reason: 'digest differs' });
    else r.matchedDownstream++;
  }
  r.ok = r.receivedNotSent.length === 0 && r.digestMismatch.length === 0 && r.downstreamMismatch.length === 0;
  return r;
}
