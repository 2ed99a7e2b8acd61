import { verifyStatement } from '../crypto/statement.js';
import { verifyAuditChain, type AuditEntry, type ChainVerdict } from './chain.js';
import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, receiptFields, type Checkpoint, type Receipt } from './receipts.js';

/**
 * Everything needed to cross-check one site against the coordinator. The keys
 * are pinned from a trusted source (the site's enrolment record), never the
 * key a database records about itself: each party can re-sign its own log.
 */
export interface CompareInput {
  siteId: string;
  coordinatorId: string;
  site: readonly AuditEntry[];
  coordinator: readonly AuditEntry[];
  siteKey: Uint8Array;
  coordinatorKey: Uint8Array;
  /** The coordinator's signed receipts the site kept, one per accepted site message. */
  receipts: readonly Receipt[];
  /** The coordinator's signed chain-head checkpoints the site kept. */
  checkpoints: readonly Checkpoint[];
}

export interface MessageRef {
  seq: number;
  msgType: string | null;
  digest: string | null;
}

/** Which rule a problem breaks (the report's failure arrays, one name each). */
export type CompareCheck = 'site-chain' | 'coordinator-chain' | 'sent-not-received' | 'received-not-sent' | 'digest-mismatch' | 'downstream' | 'receipt' | 'checkpoint' | 'resync';

export interface CompareProblem {
  check: CompareCheck;
  message: string;
}

export interface CompareReport {
  siteId: string;
  coordinatorId: string;
  /** No problem found. */
  ok: boolean;
  /** Every failure, one readable line each, in the order of the checks. */
  problems: CompareProblem[];
  siteChain: ChainVerdict;
  coordinatorChain: ChainVerdict;

  /** Site -> coordinator messages found in both logs with the same digest. */
  matched: number;
  /** Sent by the site, never logged by the coordinator, and not logged `msg.unacked` by the site. */
  sentNotReceived: MessageRef[];
  /** Logged by the coordinator as from the site, absent from the site's log and from any resync gap. */
  receivedNotSent: MessageRef[];
  /** Same sequence number, different payload digest. */
  digestMismatch: { seq: number; msgType: string | null; siteDigest: string | null; coordinatorDigest: string | null }[];
  /** Coordinator -> site messages in both logs with the same digest. */
  matchedDownstream: number;
  /** Logged as received by the site, but not (or with another digest) as sent by the coordinator. */
  downstreamMismatch: { seq: number; msgType: string | null; reason: string }[];
  receiptsChecked: number;
  badReceipts: { seq: number; entryId: number; reason: string }[];
  checkpointsChecked: number;
  badCheckpoints: { entryId: number; tsMs: number; reason: string }[];
  /** Entry id of the newest valid checkpoint; null when none. */
  newestCheckpoint: number | null;

  // Informational: explained, not failures.
  /** Logged `msg.unacked` by the site and absent at the coordinator: lost in transit. */
  unackedNotReceived: MessageRef[];
  /** Sequence numbers the site skipped after a restore from backup: (from, to]. */
  resyncGaps: { from: number; to: number }[];
  /** Coordinator entries from the site inside a resync gap: their site entries were lost with the restored backup. */
  resyncExplained: MessageRef[];
  /** Coordinator -> site messages the site never logged as received (it was offline). */
  notReceivedBySite: number;
  /** Messages the coordinator accepted (and both logs match) for which the site holds no receipt. */
  withoutReceipt: number;
}

const short = (d: string | null) => (d === null ? 'none' : d.slice(0, 12));
const when = (tsMs: number) => (Math.abs(tsMs) <= 8.64e15 ? new Date(tsMs).toISOString() : `tsMs ${tsMs}`);
const ref = (e: AuditEntry): MessageRef => ({ seq: e.seq!, msgType: e.msgType, digest: e.digest });

function signedBy(kind: string, fields: Parameters<typeof verifyStatement>[1], signature: string, key: Uint8Array): boolean {
  try {
    return verifyStatement(kind, fields, signature, key);
  } catch {
    return false; // a malformed statement (e.g. a non-finite number) is not a valid one
  }
}

/** Parses a `seq.resync` detail, `{"from":A,"to":B}`; null when it is not one. */
function resyncGap(detail: string | null): { from: number; to: number } | null {
  try {
    const g = JSON.parse(detail ?? '') as { from?: unknown; to?: unknown };
    return Number.isSafeInteger(g.from) && Number.isSafeInteger(g.to) ? { from: g.from as number, to: g.to as number } : null;
  } catch {
    return null;
  }
}

/**
 * Cross-checks a site's audit log against the coordinator's, keyed by
 * (sender, seq), and checks the coordinator's signed receipts and
 * checkpoints the site kept against the coordinator's log:
 * - both chains must verify under the pinned keys;
 * - every message the site sent must be in the coordinator's log (unless the
 *   site logged it `msg.unacked`), with the same digest; every message the
 *   coordinator logged from the site must be in the site's log (unless it lies
 *   in a `seq.resync` gap: lost with a restored backup);
 *   every coordinator message the site logged as received must be logged as
 *   sent with the same digest;
 * - every receipt and checkpoint must verify under the pinned coordinator key
 *   and name an entry that is still in the coordinator's log with the same
 *   hash (a receipt: the `msg.received` of that very message). A dropped tail
 *   or a re-signed rewrite of the log contradicts what the coordinator signed.
 */
export function compareAuditLogs(input: CompareInput): CompareReport {
  const { siteId, coordinatorId, site, coordinator } = input;
  const problems: CompareProblem[] = [];
  const problem = (check: CompareCheck, message: string) => problems.push({ check, message });

  const siteChain = verifyAuditChain(site, input.siteKey);
  const coordinatorChain = verifyAuditChain(coordinator, input.coordinatorKey);
  for (const [check, who, v] of [
    ['site-chain', 'site', siteChain],
    ['coordinator-chain', 'coordinator', coordinatorChain],
  ] as const) {
    if (!v.ok) problem(check, `${who} log broken at entry ${v.firstBroken!.id}: ${v.firstBroken!.reason} (${v.checked} entries verified before it)`);
  }

  // What the site's log says: its sends, its unacknowledged sends, its resync gaps, what it received.
  const sent = new Map<number, AuditEntry>();
  const unacked = new Set<number>();
  const resyncGaps: { from: number; to: number }[] = [];
  for (const e of site) {
    if (e.action === 'msg.sent' && e.seq !== null && !sent.has(e.seq)) sent.set(e.seq, e);
    else if (e.action === 'msg.unacked' && e.seq !== null) unacked.add(e.seq);
    else if (e.action === 'seq.resync') {
      const g = resyncGap(e.detail);
      if (g) resyncGaps.push(g);
      else problem('resync', `site entry ${e.id}: seq.resync detail ${JSON.stringify(e.detail)} is not {"from":A,"to":B}`);
    }
  }
  const inGap = (seq: number) => resyncGaps.some((g) => g.from < seq && seq <= g.to);

  // What the coordinator's log says about this site: attributable (signature-verified) messages, and what it sent.
  const received = new Map<number, AuditEntry>();
  const down = new Map<number, AuditEntry>();
  const byId = new Map<number, AuditEntry>();
  for (const e of coordinator) {
    byId.set(e.id, e);
    if ((e.action === 'msg.received' || e.action === 'msg.rejected') && e.actor === siteId && e.seq !== null && !received.has(e.seq)) received.set(e.seq, e);
    else if (e.action === 'msg.sent' && e.peer === siteId && e.seq !== null) down.set(e.seq, e);
  }

  const r: CompareReport = {
    siteId,
    coordinatorId,
    ok: false,
    problems,
    siteChain,
    coordinatorChain,
    matched: 0,
    sentNotReceived: [],
    receivedNotSent: [],
    digestMismatch: [],
    matchedDownstream: 0,
    downstreamMismatch: [],
    receiptsChecked: input.receipts.length,
    badReceipts: [],
    checkpointsChecked: input.checkpoints.length,
    badCheckpoints: [],
    newestCheckpoint: null,
    unackedNotReceived: [],
    resyncGaps,
    resyncExplained: [],
    notReceivedBySite: 0,
    withoutReceipt: 0,
  };

  // Site -> coordinator.
  const receiptSeqs = new Set(input.receipts.map((x) => x.seq));
  for (const [seq, s] of sent) {
    const c = received.get(seq);
    if (!c) {
      if (unacked.has(seq)) r.unackedNotReceived.push(ref(s));
      else r.sentNotReceived.push(ref(s));
    } else if (c.digest !== s.digest) {
      r.digestMismatch.push({ seq, msgType: s.msgType, siteDigest: s.digest, coordinatorDigest: c.digest });
    } else {
      r.matched++;
      if (c.action === 'msg.received' && !receiptSeqs.has(seq)) r.withoutReceipt++;
    }
  }
  for (const [seq, c] of received) {
    if (sent.has(seq)) continue;
    if (inGap(seq)) r.resyncExplained.push(ref(c));
    else r.receivedNotSent.push(ref(c));
  }
  for (const x of r.sentNotReceived)
    problem('sent-not-received', `site seq ${x.seq} (${x.msgType}) was logged as sent, but the coordinator has no record of it and the site did not log it unacknowledged`);
  for (const x of r.receivedNotSent) problem('received-not-sent', `coordinator logged site seq ${x.seq} (${x.msgType}) as received, but the site never logged sending it`);
  for (const x of r.digestMismatch) problem('digest-mismatch', `site seq ${x.seq} (${x.msgType}): payload digest ${short(x.siteDigest)} at the site, ${short(x.coordinatorDigest)} at the coordinator`);

  // Coordinator -> site.
  const siteReceived = new Set<number>();
  for (const e of site) {
    if (e.action !== 'msg.received' || e.actor !== coordinatorId || e.seq === null) continue;
    siteReceived.add(e.seq);
    const c = down.get(e.seq);
    if (!c) r.downstreamMismatch.push({ seq: e.seq, msgType: e.msgType, reason: 'the site logged receiving it, the coordinator did not log sending it' });
    else if (c.digest !== e.digest) r.downstreamMismatch.push({ seq: e.seq, msgType: e.msgType, reason: `payload digest ${short(e.digest)} at the site, ${short(c.digest)} at the coordinator` });
    else r.matchedDownstream++;
  }
  for (const seq of down.keys()) if (!siteReceived.has(seq)) r.notReceivedBySite++;
  for (const x of r.downstreamMismatch) problem('downstream', `coordinator seq ${x.seq} (${x.msgType}): ${x.reason}`);

  // An entry the coordinator signed for must still be there, unchanged.
  const entryProblem = (entryId: number, entryHash: string): string | null => {
    const e = byId.get(entryId);
    if (!e) return `the coordinator log has no entry ${entryId} (it has ${coordinator.length}): its tail was dropped or entries deleted`;
    if (e.hash !== entryHash) return `coordinator entry ${entryId} has another hash than the coordinator signed: its log was rewritten`;
    return null;
  };
  const identityProblem = (s: { coordinatorId: string; siteId?: string }): string | null => {
    if (s.coordinatorId !== coordinatorId) return `issued by ${s.coordinatorId}, not ${coordinatorId}`;
    if (s.siteId !== undefined && s.siteId !== siteId) return `issued to ${s.siteId}, not ${siteId}`;
    return null;
  };

  for (const rc of input.receipts) {
    const e = byId.get(rc.entryId);
    const s = sent.get(rc.seq);
    const reason =
      (signedBy(RECEIPT_KIND, receiptFields(rc), rc.signature, input.coordinatorKey) ? null : 'signature does not verify under the pinned coordinator key (forged or altered)') ??
      identityProblem(rc) ??
      entryProblem(rc.entryId, rc.entryHash) ??
      (e && e.action === 'msg.received' && e.actor === siteId && e.seq === rc.seq && e.msgType === rc.msgType && e.digest === rc.digest && e.studyId === rc.studyId && e.round === rc.round
        ? null
        : `coordinator entry ${rc.entryId} is not the msg.received of this message`) ??
      (s && s.msgType === rc.msgType && s.digest === rc.digest ? null : 'the site log has no msg.sent of this seq, type and digest');
    if (reason) r.badReceipts.push({ seq: rc.seq, entryId: rc.entryId, reason });
  }
  for (const x of r.badReceipts) problem('receipt', `receipt for site seq ${x.seq} (coordinator entry ${x.entryId}): ${x.reason}`);

  for (const cp of input.checkpoints) {
    const reason =
      (signedBy(CHECKPOINT_KIND, checkpointFields(cp), cp.signature, input.coordinatorKey) ? null : 'signature does not verify under the pinned coordinator key (forged or altered)') ??
      identityProblem(cp) ??
      entryProblem(cp.entryId, cp.entryHash);
    if (reason) r.badCheckpoints.push({ entryId: cp.entryId, tsMs: cp.tsMs, reason });
    else r.newestCheckpoint = Math.max(r.newestCheckpoint ?? 0, cp.entryId);
  }
  for (const x of r.badCheckpoints) problem('checkpoint', `checkpoint of coordinator entry ${x.entryId} (${when(x.tsMs)}): ${x.reason}`);

  r.ok = problems.length === 0;
  return r;
}
