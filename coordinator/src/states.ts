/**
 * The coordinator's state sets, one place: the database columns are typed with them (drizzle
 * `enum`), so no use site casts a string.
 *
 * Study:       draft → running ⇄ stopped; running → completed (→ running again when the
 *              contributors refuse the aggregate that completed it). A study never "fails": a
 *              round fails and the next one opens; when too few sites are left that can take part
 *              (privacy budgets spent) the study stops, with a reason.
 * Round:       open → closed | failed; closed → refused (a majority of contributors refused the aggregate).
 * Phase:       setup → upload → consistency → unmask (while open).
 * Participant: active, or excluded from a study as evicted | withdrawn | revoked | removed.
 * Update:      receiving → complete | abandoned.
 */
export const STUDY_STATES = ['draft', 'running', 'completed', 'stopped'] as const;
export type StudyState = (typeof STUDY_STATES)[number];

export const ROUND_STATES = ['open', 'closed', 'failed', 'refused'] as const;
export type RoundState = (typeof ROUND_STATES)[number];

export const ROUND_PHASES = ['setup', 'upload', 'consistency', 'unmask'] as const;
export type RoundPhase = (typeof ROUND_PHASES)[number];

export const EXCLUSIONS = ['evicted', 'withdrawn', 'revoked', 'removed'] as const;
export type Exclusion = (typeof EXCLUSIONS)[number];

export const UPDATE_STATES = ['receiving', 'complete', 'abandoned'] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];
