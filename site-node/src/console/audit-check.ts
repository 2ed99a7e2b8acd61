import { join } from 'node:path';
import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, readAuditLog, readSiteStatements, receiptFields, verifyAuditChain, type AuditEntry, type ChainVerdict } from '@twinfed/shared/audit/index';
import { fromB64, loadIdentity, verifyStatement } from '@twinfed/shared/crypto/index';
import { SITE_FILES, type SiteConfig } from '../config.js';
import type { SiteDb } from '../db/index.js';

/**
 * What the site can check on its own, without the coordinator's database: its audit chain under
 * its own key (identity.json, not the key the database records about itself), and each signed
 * receipt and checkpoint the coordinator gave it under the coordinator key pinned at enrolment —
 * and that every receipt acknowledges a message this site's log records sending, with the same
 * type and digest. The cross-check of both logs (dropped tails, rewrites at the coordinator) needs
 * the coordinator's database: `twinfed audit compare --site-db ... --coordinator-db ...`.
 */
export interface SiteAuditCheck {
  chain: ChainVerdict;
  entries: number;
  receiptsChecked: number;
  badReceipts: { seq: number; reason: string }[];
  checkpointsChecked: number;
  badCheckpoints: { entryId: number; reason: string }[];
  /** Entry id of the coordinator's newest valid checkpoint the site holds. */
  newestCheckpoint: number | null;
  /** Messages this site sent, not logged unacknowledged, without a receipt: refused by the coordinator (a refusal carries none), or sent before receipts existed. */
  sentWithoutReceipt: number;
  /** Messages the site logged msg.unacked (lost or not acknowledged in time). */
  unacked: number;
  ok: boolean;
}

function signedBy(kind: string, fields: Parameters<typeof verifyStatement>[1], signature: string, key: Uint8Array): boolean {
  try {
    return verifyStatement(kind, fields, signature, key);
  } catch {
    return false;
  }
}

export function checkSiteAudit(db: SiteDb, config: SiteConfig, dataDir: string, entries?: AuditEntry[]): SiteAuditCheck {
  const log = entries ?? readAuditLog(db).entries;
  const own = loadIdentity(join(dataDir, SITE_FILES.identity)).ed25519PublicKey;
  const chain = verifyAuditChain(log, own);
  const coordinatorKey = fromB64(config.coordinatorPublicKey);
  const st = readSiteStatements(db, config.siteId);
  const sent = new Map<number, AuditEntry>();
  const unacked = new Set<number>();
  for (const e of log) {
    if (e.action === 'msg.sent' && e.seq !== null && !sent.has(e.seq)) sent.set(e.seq, e);
    else if (e.action === 'msg.unacked' && e.seq !== null) unacked.add(e.seq);
  }
  const badReceipts: SiteAuditCheck['badReceipts'] = [];
  const receiptSeqs = new Set<number>();
  for (const r of st.receipts ?? []) {
    receiptSeqs.add(r.seq);
    const s = sent.get(r.seq);
    const reason = !signedBy(RECEIPT_KIND, receiptFields(r), r.signature, coordinatorKey)
      ? 'signature does not verify under the pinned coordinator key'
      : r.coordinatorId !== config.coordinatorId
        ? `issued by ${r.coordinatorId}, not ${config.coordinatorId}`
        : !s || s.msgType !== r.msgType || s.digest !== r.digest
          ? "this site's log has no msg.sent of this seq, type and digest"
          : null;
    if (reason) badReceipts.push({ seq: r.seq, reason });
  }
  const badCheckpoints: SiteAuditCheck['badCheckpoints'] = [];
  let newestCheckpoint: number | null = null;
  for (const c of st.checkpoints ?? []) {
    const reason = !signedBy(CHECKPOINT_KIND, checkpointFields(c), c.signature, coordinatorKey)
      ? 'signature does not verify under the pinned coordinator key'
      : c.coordinatorId !== config.coordinatorId
        ? `issued by ${c.coordinatorId}, not ${config.coordinatorId}`
        : null;
    if (reason) badCheckpoints.push({ entryId: c.entryId, reason });
    else newestCheckpoint = Math.max(newestCheckpoint ?? 0, c.entryId);
  }
  let sentWithoutReceipt = 0;
  for (const seq of sent.keys()) if (!receiptSeqs.has(seq) && !unacked.has(seq)) sentWithoutReceipt++;
  return {
    chain,
    entries: log.length,
    receiptsChecked: st.receipts?.length ?? 0,
    badReceipts,
    checkpointsChecked: st.checkpoints?.length ?? 0,
    badCheckpoints,
    newestCheckpoint,
    sentWithoutReceipt,
    unacked: unacked.size,
    ok: chain.ok && badReceipts.length === 0 && badCheckpoints.length === 0,
  };
}
