import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, receiptFields } from '@twinfed/protocols';

/**
 * What the coordinator signs for a site to keep: a receipt for each accepted
 * site message and, each round, a checkpoint of its audit chain head. Both
 * name an entry of the coordinator's log by id and hash, so the coordinator
 * can no longer drop its log's tail or re-sign a rewritten log (it holds its
 * own key) without contradicting a statement it signed (`compareAuditLogs`).
 * Signed with `signStatement(KIND, xxxFields(s), sk)` (crypto/statement.ts).
 */
// The kinds and the signed field lists are defined once, in protocols (the coordinator signs with them).
export { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, receiptFields };

/** Coordinator's receipt for one accepted site message (kept at the site). Signed fields: all but `signature`. */
export interface Receipt {
  coordinatorId: string;
  siteId: string;
  seq: number;
  msgType: string;
  studyId: string | null;
  round: number | null;
  digest: string;
  /** Id and hash of the coordinator's `msg.received` entry for this message. */
  entryId: number;
  entryHash: string;
  signature: string;
}

/** Signed checkpoint of the coordinator's chain head. Signed fields: coordinatorId, entryId, entryHash, tsMs. */
export interface Checkpoint {
  coordinatorId: string;
  entryId: number;
  entryHash: string;
  tsMs: number;
  signature: string;
}
