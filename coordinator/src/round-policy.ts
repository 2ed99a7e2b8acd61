/**
 * The life cycle of one round, as a pure function of what the coordinator has received so far.
 *
 * A round runs the secure-aggregation protocol of Bonawitz et al. ("Practical Secure
 * Aggregation for Privacy-Preserving Machine Learning", CCS 2017, fig. 4) inside the HE
 * plaintexts, with our set names:
 *
 *   setup        P  = participants (round.start). Each trains, then sends mask.setup: signed mask
 *                     keys and share boxes for the others. Ends with U2 (keySet) = those in time.
 *   upload       U2 get each other's keys (mask.peers), mask and encrypt their update, upload it.
 *                     Ends with U3 (survivors) = complete uploads; partial ones are subtracted.
 *   consistency  U3 sign (U2, U3) (mask.survivors → mask.consistency). Ends with U4 (revealers).
 *   unmask       U4 get the signatures (mask.reveal), check >= t of them, reveal shares: of the
 *                     self-mask seed of every survivor, of sSk of every site in U2 \ U3. Ends
 *                     with the aggregate published.
 *
 * Each phase ends early when everyone expected has answered; otherwise at its deadline if enough
 * have (the quorum for contributors, the threshold t for revealers), or, still short, it fails
 * the round after a grace period. The caller reads a snapshot and applies the decision inside
 * one SQLite transaction, so nothing can change between the check and the write.
 */

import type { RoundPhase, StudyState } from './states.js';

export type { RoundPhase } from './states.js';

export interface RoundSnapshot {
  phase: RoundPhase;
  /** P, in round order, without the sites that declined the round. */
  participants: readonly string[];
  /** Sites that declined the round (round.decline); in the upload phase they are expected to upload nothing. */
  declined?: readonly string[];
  /** Sites that sent their mask set-up (setup phase). */
  setups: readonly string[];
  /** U2 once fixed. */
  keySet: readonly string[] | null;
  /** Sites of U2 whose upload is complete. */
  complete: readonly string[];
  /** U3 once fixed. */
  survivors: readonly string[] | null;
  /** Survivors that sent their consistency signature. */
  signed: readonly string[];
  /** U4 once fixed. */
  revealers: readonly string[] | null;
  /** Revealers that sent their shares. */
  revealed: readonly string[];
  /** Setup deadline (ms since epoch). */
  deadlineAtMs: number;
  /** Deadline of the current later phase. */
  phaseDeadlineAtMs: number | null;
  /** Fewest contributors (max(3, minSites)). */
  quorum: number;
  /** Secure-aggregation threshold t of this round. */
  threshold: number;
  /** How long past a deadline a phase short of its minimum waits before the round fails. */
  graceMs: number;
}

export type RoundDecision =
  | { kind: 'wait'; untilMs: number | null }
  | { kind: 'fix-key-set'; keySet: string[] }
  | { kind: 'fix-survivors'; survivors: string[] }
  | { kind: 'fix-revealers'; revealers: string[] }
  | { kind: 'close' }
  | { kind: 'fail'; reason: string };

/** Members of `all` (in its order) that are in `subset`. */
function inOrder(all: readonly string[], subset: readonly string[]): string[] {
  const s = new Set(subset);
  return all.filter((x) => s.has(x));
}

export function decideRound(s: RoundSnapshot, nowMs: number): RoundDecision {
  const contributorsNeeded = Math.max(s.quorum, s.threshold);
  /** Everyone answered → advance; past the deadline with enough → advance; past deadline+grace → fail. */
  const gate = (expected: readonly string[], got: readonly string[], needed: number, deadline: number, what: string, advance: (set: string[]) => RoundDecision): RoundDecision => {
    const have = inOrder(expected, got);
    if (have.length === expected.length && have.length >= needed) return advance(have);
    if (nowMs >= deadline && have.length >= needed) return advance(have);
    if (expected.length < needed) return { kind: 'fail', reason: `${what}: only ${expected.length} sites could answer, ${needed} needed` };
    if (nowMs >= deadline + s.graceMs)
      return { kind: 'fail', reason: `${what}: ${have.length} of ${expected.length} answered by the deadline (+${Math.round(s.graceMs / 1000)} s grace), ${needed} needed` };
    return { kind: 'wait', untilMs: nowMs >= deadline ? deadline + s.graceMs : deadline };
  };
  switch (s.phase) {
    case 'setup':
      return gate(s.participants, s.setups, contributorsNeeded, s.deadlineAtMs, 'mask keys', (keySet) => ({ kind: 'fix-key-set', keySet }));
    case 'upload':
      return gate(
        (s.keySet ?? []).filter((x) => !(s.declined ?? []).includes(x)),
        s.complete,
        contributorsNeeded,
        s.phaseDeadlineAtMs ?? s.deadlineAtMs,
        'encrypted updates',
        (survivors) => ({ kind: 'fix-survivors', survivors }),
      );
    case 'consistency':
      return gate(s.survivors ?? [], s.signed, s.threshold, s.phaseDeadlineAtMs ?? s.deadlineAtMs, 'survivor-set signatures', (revealers) => ({ kind: 'fix-revealers', revealers }));
    case 'unmask':
      return gate(s.revealers ?? [], s.revealed, s.threshold, s.phaseDeadlineAtMs ?? s.deadlineAtMs, 'unmasking shares', () => ({ kind: 'close' }));
  }
}

/** What a running study needs, read in one transaction (all times ms since the epoch). */
export interface StudySnapshot {
  state: StudyState;
  /** Rounds the manifest asks for, and rounds closed so far. */
  roundsPlanned: number;
  closedRounds: number;
  /** The open round, or null. */
  openRound: RoundSnapshot | null;
  /** Fewest contributors of a round (quorumOf(manifest)). */
  quorum: number;
  /** Roster sites, not excluded, whose privacy budget is not spent (connected or not). */
  budgetLeft: readonly string[];
  /** Roster sites that declined with TWF_E_DP_BUDGET. */
  exhausted: readonly string[];
  /** Study-key epoch: 'new' = none fits the study (manifest or active roster changed); 'pending' = requested, not dealt; 'current' = dealt and fits. */
  key: { state: 'new' } | { state: 'pending'; dealerOnline: boolean; requestedAtMs: number } | { state: 'current'; delivered: readonly string[] };
  /** First joined, connected site in the dealer order (after the pending dealer when one is pending); null if none. */
  nextDealer: string | null;
  dealerTimeoutMs: number;
  /** Joined, active, connected sites with budget left, in manifest order: who a new round would ask. */
  candidates: readonly string[];
  /** Latest join time of an active site (0: none). */
  lastJoinAtMs: number;
  lastFailedAtMs: number | null;
  /** A round opens only when no site joined (and no round failed) within this many ms. */
  joinSettleMs: number;
}

export type NextAction =
  | { kind: 'wait'; untilMs: number | null }
  | { kind: 'request-keys'; dealer: string }
  | { kind: 'replace-dealer'; dealer: string }
  | { kind: 'round'; decision: Exclude<RoundDecision, { kind: 'wait' }> }
  | { kind: 'complete' }
  | { kind: 'stop'; reason: string }
  | { kind: 'open'; participants: string[] };

const earliest = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));

/**
 * The next step of a study, as a pure function of a snapshot: the caller applies it (one
 * transaction that re-reads the snapshot), then asks again until the answer is `wait`.
 *
 *  1. not running                                → wait
 *  2. key epoch missing/stale and a dealer online → request-keys; pending and its dealer gone or
 *     slower than dealerTimeoutMs, another online → replace-dealer
 *  3. a round is open                            → its decideRound() step, or wait for it
 *  4. every planned round closed                 → complete
 *  5. fewer sites with budget left than quorum   → stop (naming the exhausted sites)
 *  6. a round failed < joinSettleMs ago          → wait
 *  7. no current key, or its key has not reached every candidate, or candidates < quorum → wait
 *  8. a site joined < joinSettleMs ago           → wait
 *  9. otherwise                                  → open with the candidates
 */
export function nextAction(s: StudySnapshot, nowMs: number): NextAction {
  if (s.state !== 'running') return { kind: 'wait', untilMs: null };
  let wake: number | null = null;
  if (s.key.state === 'new' && s.nextDealer !== null) return { kind: 'request-keys', dealer: s.nextDealer };
  if (s.key.state === 'pending') {
    const stale = !s.key.dealerOnline || nowMs - s.key.requestedAtMs > s.dealerTimeoutMs;
    if (stale && s.nextDealer !== null) return { kind: 'replace-dealer', dealer: s.nextDealer };
    if (!stale) wake = s.key.requestedAtMs + s.dealerTimeoutMs + 1;
  }
  if (s.openRound) {
    const d = decideRound(s.openRound, nowMs);
    return d.kind === 'wait' ? { kind: 'wait', untilMs: earliest(wake, d.untilMs) } : { kind: 'round', decision: d };
  }
  if (s.closedRounds >= s.roundsPlanned) return { kind: 'complete' };
  if (s.budgetLeft.length < s.quorum) {
    return { kind: 'stop', reason: `only ${s.budgetLeft.length} roster sites have privacy budget left, ${s.quorum} needed; exhausted (TWF_E_DP_BUDGET): ${s.exhausted.join(',') || 'none'}` };
  }
  if (s.lastFailedAtMs !== null && nowMs - s.lastFailedAtMs < s.joinSettleMs) return { kind: 'wait', untilMs: earliest(wake, s.lastFailedAtMs + s.joinSettleMs) };
  if (s.key.state !== 'current') return { kind: 'wait', untilMs: wake };
  const delivered = new Set(s.key.delivered);
  const keyed = s.candidates.filter((id) => delivered.has(id));
  if (keyed.length < s.quorum || keyed.length !== s.candidates.length) return { kind: 'wait', untilMs: null };
  if (nowMs - s.lastJoinAtMs < s.joinSettleMs) return { kind: 'wait', untilMs: s.lastJoinAtMs + s.joinSettleMs };
  return { kind: 'open', participants: keyed };
}
