import type {
  accumulators,
  aggregateRefusals,
  enrolmentTokens,
  keyEpochs,
  maskReveals,
  maskSetups,
  maskSignatures,
  roundDeclines,
  rounds,
  sealedKeys,
  siteMetrics,
  sites,
  studies,
  studySites,
  updateChunks,
  updates,
} from '../db/schema.js';
import type { StudyState, UpdateState } from '../states.js';

export type SiteRow = typeof sites.$inferSelect;
export type TokenRow = typeof enrolmentTokens.$inferSelect;
export type StudyRow = typeof studies.$inferSelect;
export type StudySiteRow = typeof studySites.$inferSelect;
export type KeyEpochRow = typeof keyEpochs.$inferSelect;
export type SealedKeyRow = typeof sealedKeys.$inferSelect;
export type RoundRow = typeof rounds.$inferSelect;
export type UpdateRow = typeof updates.$inferSelect;
export type ChunkRow = typeof updateChunks.$inferSelect;
export type AccumulatorRow = typeof accumulators.$inferSelect;
export type MaskSetupRow = typeof maskSetups.$inferSelect;
export type MaskSignatureRow = typeof maskSignatures.$inferSelect;
export type MaskRevealRow = typeof maskReveals.$inferSelect;
export type RefusalRow = typeof aggregateRefusals.$inferSelect;
export type DeclineRow = typeof roundDeclines.$inferSelect;
export type SiteMetricRow = typeof siteMetrics.$inferSelect;
export type MetricValue = { name: string; value: number | null };

/** Per-round tables keyed by (study, round, site). */
export type RoundSiteTable = 'maskSetups' | 'maskSignatures' | 'maskReveals';

/**
 * Every query of the coordinator, behind one interface: SQLite implements it (sqlite.ts); a
 * PostgreSQL backend implements the same methods. `transaction(fn)` runs fn against a store bound
 * to one transaction; fn must be synchronous and re-read whatever it decides on (no
 * check-await-write: there is no await inside a transaction, and a state checked before it is
 * checked again inside it). Rows are plain objects; times are milliseconds since the epoch.
 */
export interface CoordinatorStore {
  transaction<T>(fn: (tx: CoordinatorStore) => T): T;

  // meta
  /** Next value of the coordinator's outgoing envelope sequence counter (persistent, starts at 1). */
  nextSeq(): number;

  // enrolment and sites
  insertToken(row: { tokenHash: string; siteName: string; expiresAtMs: number }): void;
  token(tokenHash: string): TokenRow | undefined;
  useToken(tokenHash: string, siteId: string, atMs: number): void;
  insertSite(row: { siteId: string; siteName: string; ed25519PublicKey: string; x25519PublicKey: string; enrolledAtMs: number }): void;
  site(siteId: string): SiteRow | undefined;
  /** Every enrolled site, oldest enrolment first. */
  sites(): SiteRow[];
  /** Records the site's last accepted sequence number (never lowers it). */
  setSiteSeq(siteId: string, lastSeq: number, seenAtMs: number): void;
  revokeSite(siteId: string, atMs: number): void;

  // studies
  insertStudy(row: { studyId: string; manifestJson: string; manifestHash: string; state: StudyState; createdAtMs: number }): void;
  study(studyId: string): StudyRow | undefined;
  /** Every study, oldest first; or those in `state`. */
  studies(state?: StudyState): StudyRow[];
  updateStudy(studyId: string, set: Partial<Omit<StudyRow, 'studyId'>>): void;
  /** Deletes a study that is still a draft (no roster, rounds or approvals refer to it); false when there is no such draft. */
  deleteDraft(studyId: string): boolean;

  // roster sites of a study
  /** Adds a roster row (not joined) unless it exists. */
  addStudySite(studyId: string, siteId: string): void;
  studySite(studyId: string, siteId: string): StudySiteRow | undefined;
  /** Roster rows of a study, by site id. */
  studySites(studyId: string): StudySiteRow[];
  /** Roster rows of one site across studies. */
  studiesOfSite(siteId: string): StudySiteRow[];
  updateStudySite(studyId: string, siteId: string, set: Partial<Omit<StudySiteRow, 'studyId' | 'siteId'>>): void;

  // key epochs
  latestEpoch(studyId: string): KeyEpochRow | undefined;
  epoch(studyId: string, epoch: number): KeyEpochRow | undefined;
  insertEpoch(row: { studyId: string; epoch: number; manifestHash: string; dealer: string; recipientsJson: string; requestedAtMs: number }): void;
  updateEpoch(studyId: string, epoch: number, set: Partial<Omit<KeyEpochRow, 'studyId' | 'epoch'>>): void;
  insertSealedKey(row: { studyId: string; epoch: number; siteId: string; sealedKey: string; deliveredAtMs: number | null }): void;
  /** Sealed keys of an epoch: all, one site's, or those not delivered yet. */
  sealedKeys(studyId: string, epoch: number, filter: { siteId: string } | 'undelivered' | 'all'): SealedKeyRow[];
  markDelivered(studyId: string, epoch: number, siteId: string, atMs: number): void;
  /** Sites the key of an epoch was delivered to (read on every step of a study: ids only, not the sealed keys). */
  deliveredKeySites(studyId: string, epoch: number): string[];
  sealedKeysOfSite(studyId: string, siteId: string): SealedKeyRow[];

  // rounds
  round(studyId: string, round: number): RoundRow | undefined;
  /** Rounds of a study in order; or those in `state`. */
  rounds(studyId: string, state?: RoundRow['state']): RoundRow[];
  insertRound(row: typeof rounds.$inferInsert): void;
  updateRound(studyId: string, round: number, set: Partial<Omit<RoundRow, 'studyId' | 'round'>>): void;

  // secure-aggregation messages of a round
  roundSiteRow<T extends RoundSiteTable>(table: T, studyId: string, round: number, siteId: string): RoundSiteRowOf<T> | undefined;
  roundSiteRows<T extends RoundSiteTable>(table: T, studyId: string, round: number): RoundSiteRowOf<T>[];
  /** Site ids of a round's rows in `table`, by site id (none of their contents read). */
  roundSiteIds(table: RoundSiteTable, studyId: string, round: number): string[];
  insertRoundSiteRow<T extends RoundSiteTable>(table: T, row: RoundSiteRowOf<T>): void;
  /** Forgets a site's mask set-up (it declined the round before the key set was fixed). */
  deleteMaskSetup(studyId: string, round: number, siteId: string): void;

  // declines
  insertDecline(row: DeclineRow): void;
  declines(studyId: string, round: number): DeclineRow[];

  // updates, chunks, running sums
  update(studyId: string, round: number, siteId: string): UpdateRow | undefined;
  updates(studyId: string, round: number, state: UpdateState): UpdateRow[];
  /** Sites whose update of the round is in `state`, by site id. */
  updateSites(studyId: string, round: number, state: UpdateState): string[];
  insertUpdate(row: { studyId: string; round: number; siteId: string; state: UpdateState; count: number; nSamples: number; length: number; startedAtMs: number }): void;
  setUpdate(studyId: string, round: number, siteId: string, set: Partial<Omit<UpdateRow, 'studyId' | 'round' | 'siteId'>>): void;
  hasChunk(studyId: string, round: number, siteId: string, index: number): boolean;
  insertChunk(row: Omit<ChunkRow, 'logFile' | 'logOffset' | 'logLength'> & Partial<Pick<ChunkRow, 'logFile' | 'logOffset' | 'logLength'>>): void;
  chunks(studyId: string, round: number, siteId: string): ChunkRow[];
  /** Indexes of the chunks stored for a site's update, ascending (no ciphertext bytes read). */
  chunkIndexes(studyId: string, round: number, siteId: string): number[];
  chunk(studyId: string, round: number, siteId: string, index: number): ChunkRow | undefined;
  /** Sites with chunk rows stored for the round, by site id. */
  chunkSites(studyId: string, round: number): string[];
  /** Rounds with chunk rows stored. */
  chunkRounds(): { studyId: string; round: number }[];
  deleteChunks(studyId: string, round: number): void;
  deleteChunksOf(studyId: string, round: number, siteId: string): void;
  accumulator(studyId: string, round: number, index: number): AccumulatorRow | undefined;
  accumulators(studyId: string, round: number): AccumulatorRow[];
  accumulatorCount(studyId: string, round: number): number;
  /** Index and byte size of each of a round's sums, by index (the bytes are not read). */
  accumulatorSizes(studyId: string, round: number): { index: number; bytes: number }[];
  putAccumulator(row: AccumulatorRow): void;
  deleteAccumulator(studyId: string, round: number, index: number): void;
  deleteAccumulators(studyId: string, round: number): void;
  /**
   * Hands pages freed by deleted rows (pruned aggregates) back to the file system where the
   * backend can (SQLite: PRAGMA incremental_vacuum, a no-op on a file without auto_vacuum, whose
   * free pages are reused by later rows instead). Outside any transaction.
   */
  reclaimSpace(): void;

  // refusals and metrics
  insertRefusal(row: RefusalRow): void;
  refusals(studyId: string, round: number): RefusalRow[];
  putMetrics(row: SiteMetricRow, values: MetricValue[]): void;
  metrics(studyId: string, round: number): (SiteMetricRow & { metrics: MetricValue[] })[];
}

export type RoundSiteRowOf<T extends RoundSiteTable> = T extends 'maskSetups' ? MaskSetupRow : T extends 'maskSignatures' ? MaskSignatureRow : MaskRevealRow;
