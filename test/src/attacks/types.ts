/**
 * The red-team suite's vocabulary. An attack sets up what it needs (its own coordinator, sites,
 * files, in its own temporary folder), plays the attack against the real parts, and reports what
 * it observed. `refused`: the attack was stopped (with the code that stopped it); `contained`:
 * the attack cannot be stopped by the protocol but its effect stays within a documented bound
 * (e.g. a rogue site moving the average within [-B, B]); `FAILED`: the attack worked.
 */
export type AttackOutcomeKind = 'refused' | 'contained' | 'FAILED';

export interface AttackOutcome {
  /** What happened, in words a privacy officer can read (one line). */
  observed: string;
  /** The catalogue code that stopped it, when one did. */
  code: string | null;
  outcome: AttackOutcomeKind;
}

export interface AttackContext {
  /** A fresh folder for this attack (removed afterwards). */
  dir: string;
  /** Progress for long attacks (printed to stderr, not part of the table). */
  log(msg: string): void;
}

export interface Attack {
  /** Short, unique, kebab-case. */
  name: string;
  /** The finding of the 2026-11-27 security review it reproduces (1..15), or null for one we added. */
  finding: number | null;
  /** What must happen, in words. */
  expected: string;
  run(ctx: AttackContext): Promise<AttackOutcome>;
}

export const refused = (observed: string, code: string | null): AttackOutcome => ({ observed, code, outcome: 'refused' });
export const contained = (observed: string, code: string | null = null): AttackOutcome => ({ observed, code, outcome: 'contained' });
export const failed = (observed: string): AttackOutcome => ({ observed, code: null, outcome: 'FAILED' });
