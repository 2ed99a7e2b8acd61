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

export type RoundPhase = 'setup' | 'upload' | 'consistency' | 'unmask';

export interface RoundSnapshot {
  phase: RoundPhase;
  /** P, in round order. */
  participants: readonly string[];
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
    if (nowMs >= deadline + s.graceMs) return { kind: 'fail', reason: `${what}: ${have.length} of ${expected.length} answered by the deadline (+${Math.round(s.graceMs / 1000)} s grace), ${needed} needed` };
    return { kind: 'wait', untilMs: nowMs >= deadline ? deadline + s.graceMs : deadline };
  };
  switch (s.phase) {
    case 'setup':
      return gate(s.participants, s.setups, contributorsNeeded, s.deadlineAtMs, 'mask keys', (keySet) => ({ kind: 'fix-key-set', keySet }));
    case 'upload':
      return gate(s.keySet ?? [], s.complete, contributorsNeeded, s.phaseDeadlineAtMs ?? s.deadlineAtMs, 'encrypted updates', (survivors) => ({ kind: 'fix-survivors', survivors }));
    case 'consistency':
      return gate(s.survivors ?? [], s.signed, s.threshold, s.phaseDeadlineAtMs ?? s.deadlineAtMs, 'survivor-set signatures', (revealers) => ({ kind: 'fix-revealers', revealers }));
    case 'unmask':
      return gate(s.revealers ?? [], s.revealed, s.threshold, s.phaseDeadlineAtMs ?? s.deadlineAtMs, 'unmasking shares', () => ({ kind: 'close' }));
  }
}
