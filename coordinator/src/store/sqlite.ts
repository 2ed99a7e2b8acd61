import { and, asc, count, desc, eq, isNull, sql } from 'drizzle-orm';
import type { CoordinatorDb } from '../db/index.js';
import {
  accumulators,
  aggregateRefusals,
  enrolmentTokens,
  keyEpochs,
  maskReveals,
  maskSetups,
  maskSignatures,
  meta,
  roundDeclines,
  rounds,
  sealedKeys,
  siteMetricValues,
  siteMetrics,
  sites,
  studies,
  studySites,
  updateChunks,
  updates,
} from '../db/schema.js';
import type { StudyState, UpdateState } from '../states.js';
import type {
  AccumulatorRow,
  ChunkRow,
  CoordinatorStore,
  DeclineRow,
  KeyEpochRow,
  MetricValue,
  RefusalRow,
  RoundRow,
  RoundSiteRowOf,
  RoundSiteTable,
  SiteMetricRow,
  StudyRow,
  StudySiteRow,
  UpdateRow,
} from './index.js';

type Tx = Parameters<Parameters<CoordinatorDb['transaction']>[0]>[0];
type Q = CoordinatorDb | Tx;

const ROUND_SITE_TABLES = { maskSetups, maskSignatures, maskReveals } as const;

/** CoordinatorStore on SQLite (better-sqlite3 through drizzle). Transactions are SQLite's (nested ones are savepoints). */
export class SqliteStore implements CoordinatorStore {
  constructor(private readonly q: Q) {}

  transaction<T>(fn: (tx: CoordinatorStore) => T): T {
    return this.q.transaction((tx) => fn(new SqliteStore(tx)));
  }

  nextSeq(): number {
    return this.transaction(() => {
      const row = this.q.select().from(meta).where(eq(meta.key, 'seq')).get();
      const next = (row ? Number(row.value) : 0) + 1;
      this.q
        .insert(meta)
        .values({ key: 'seq', value: String(next) })
        .onConflictDoUpdate({ target: meta.key, set: { value: String(next) } })
        .run();
      return next;
    });
  }

  insertToken(row: { tokenHash: string; siteName: string; expiresAtMs: number }): void {
    this.q.insert(enrolmentTokens).values(row).run();
  }
  token(tokenHash: string) {
    return this.q.select().from(enrolmentTokens).where(eq(enrolmentTokens.tokenHash, tokenHash)).get();
  }
  useToken(tokenHash: string, siteId: string, atMs: number): void {
    this.q.update(enrolmentTokens).set({ usedAtMs: atMs, siteId }).where(eq(enrolmentTokens.tokenHash, tokenHash)).run();
  }
  insertSite(row: { siteId: string; siteName: string; ed25519PublicKey: string; x25519PublicKey: string; enrolledAtMs: number }): void {
    this.q.insert(sites).values(row).run();
  }
  site(siteId: string) {
    return this.q.select().from(sites).where(eq(sites.siteId, siteId)).get();
  }
  sites() {
    return this.q.select().from(sites).orderBy(asc(sites.enrolledAtMs)).all();
  }
  setSiteSeq(siteId: string, lastSeq: number, seenAtMs: number): void {
    this.q
      .update(sites)
      .set({ lastSeq: sql`max(${sites.lastSeq}, ${lastSeq})`, lastSeenAtMs: seenAtMs })
      .where(eq(sites.siteId, siteId))
      .run();
  }
  revokeSite(siteId: string, atMs: number): void {
    this.q.update(sites).set({ revokedAtMs: atMs }).where(eq(sites.siteId, siteId)).run();
  }

  insertStudy(row: { studyId: string; manifestJson: string; manifestHash: string; state: StudyState; createdAtMs: number }): void {
    this.q.insert(studies).values(row).run();
  }
  study(studyId: string) {
    return this.q.select().from(studies).where(eq(studies.studyId, studyId)).get();
  }
  studies(state?: StudyState) {
    return this.q
      .select()
      .from(studies)
      .where(state ? eq(studies.state, state) : undefined)
      .orderBy(asc(studies.createdAtMs))
      .all();
  }
  updateStudy(studyId: string, set: Partial<Omit<StudyRow, 'studyId'>>): void {
    this.q.update(studies).set(set).where(eq(studies.studyId, studyId)).run();
  }

  deleteDraft(studyId: string): boolean {
    return (
      this.q
        .delete(studies)
        .where(and(eq(studies.studyId, studyId), eq(studies.state, 'draft')))
        .run().changes === 1
    );
  }

  addStudySite(studyId: string, siteId: string): void {
    this.q.insert(studySites).values({ studyId, siteId, manifestHash: '' }).onConflictDoNothing().run();
  }
  studySite(studyId: string, siteId: string) {
    return this.q
      .select()
      .from(studySites)
      .where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId)))
      .get();
  }
  studySites(studyId: string) {
    return this.q.select().from(studySites).where(eq(studySites.studyId, studyId)).orderBy(asc(studySites.siteId)).all();
  }
  studiesOfSite(siteId: string) {
    return this.q.select().from(studySites).where(eq(studySites.siteId, siteId)).all();
  }
  updateStudySite(studyId: string, siteId: string, set: Partial<Omit<StudySiteRow, 'studyId' | 'siteId'>>): void {
    this.q
      .update(studySites)
      .set(set)
      .where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId)))
      .run();
  }

  latestEpoch(studyId: string) {
    return this.q.select().from(keyEpochs).where(eq(keyEpochs.studyId, studyId)).orderBy(desc(keyEpochs.epoch)).limit(1).get();
  }
  epoch(studyId: string, epoch: number) {
    return this.q
      .select()
      .from(keyEpochs)
      .where(and(eq(keyEpochs.studyId, studyId), eq(keyEpochs.epoch, epoch)))
      .get();
  }
  insertEpoch(row: { studyId: string; epoch: number; manifestHash: string; dealer: string; recipientsJson: string; requestedAtMs: number }): void {
    this.q.insert(keyEpochs).values(row).run();
  }
  updateEpoch(studyId: string, epoch: number, set: Partial<Omit<KeyEpochRow, 'studyId' | 'epoch'>>): void {
    this.q
      .update(keyEpochs)
      .set(set)
      .where(and(eq(keyEpochs.studyId, studyId), eq(keyEpochs.epoch, epoch)))
      .run();
  }
  insertSealedKey(row: { studyId: string; epoch: number; siteId: string; sealedKey: string; deliveredAtMs: number | null }): void {
    this.q.insert(sealedKeys).values(row).onConflictDoNothing().run();
  }
  sealedKeys(studyId: string, epoch: number, filter: { siteId: string } | 'undelivered' | 'all') {
    const extra = filter === 'all' ? [] : filter === 'undelivered' ? [isNull(sealedKeys.deliveredAtMs)] : [eq(sealedKeys.siteId, filter.siteId)];
    return this.q
      .select()
      .from(sealedKeys)
      .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.epoch, epoch), ...extra))
      .all();
  }
  markDelivered(studyId: string, epoch: number, siteId: string, atMs: number): void {
    this.q
      .update(sealedKeys)
      .set({ deliveredAtMs: atMs })
      .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.epoch, epoch), eq(sealedKeys.siteId, siteId)))
      .run();
  }
  sealedKeysOfSite(studyId: string, siteId: string) {
    return this.q
      .select()
      .from(sealedKeys)
      .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.siteId, siteId)))
      .all();
  }

  round(studyId: string, round: number) {
    return this.q
      .select()
      .from(rounds)
      .where(and(eq(rounds.studyId, studyId), eq(rounds.round, round)))
      .get();
  }
  rounds(studyId: string, state?: RoundRow['state']) {
    return this.q
      .select()
      .from(rounds)
      .where(and(eq(rounds.studyId, studyId), ...(state ? [eq(rounds.state, state)] : [])))
      .orderBy(asc(rounds.round))
      .all();
  }
  insertRound(row: typeof rounds.$inferInsert): void {
    this.q.insert(rounds).values(row).run();
  }
  updateRound(studyId: string, round: number, set: Partial<Omit<RoundRow, 'studyId' | 'round'>>): void {
    this.q
      .update(rounds)
      .set(set)
      .where(and(eq(rounds.studyId, studyId), eq(rounds.round, round)))
      .run();
  }

  roundSiteRow<T extends RoundSiteTable>(table: T, studyId: string, round: number, siteId: string): RoundSiteRowOf<T> | undefined {
    const t = ROUND_SITE_TABLES[table];
    return this.q
      .select()
      .from(t)
      .where(and(eq(t.studyId, studyId), eq(t.round, round), eq(t.siteId, siteId)))
      .get() as RoundSiteRowOf<T> | undefined;
  }
  roundSiteRows<T extends RoundSiteTable>(table: T, studyId: string, round: number): RoundSiteRowOf<T>[] {
    const t = ROUND_SITE_TABLES[table];
    return this.q
      .select()
      .from(t)
      .where(and(eq(t.studyId, studyId), eq(t.round, round)))
      .orderBy(asc(t.siteId))
      .all() as RoundSiteRowOf<T>[];
  }
  insertRoundSiteRow<T extends RoundSiteTable>(table: T, row: RoundSiteRowOf<T>): void {
    this.q
      .insert(ROUND_SITE_TABLES[table])
      .values(row as never)
      .run();
  }
  deleteMaskSetup(studyId: string, round: number, siteId: string): void {
    this.q
      .delete(maskSetups)
      .where(and(eq(maskSetups.studyId, studyId), eq(maskSetups.round, round), eq(maskSetups.siteId, siteId)))
      .run();
  }

  insertDecline(row: DeclineRow): void {
    this.q.insert(roundDeclines).values(row).onConflictDoNothing().run();
  }
  declines(studyId: string, round: number) {
    return this.q
      .select()
      .from(roundDeclines)
      .where(and(eq(roundDeclines.studyId, studyId), eq(roundDeclines.round, round)))
      .orderBy(asc(roundDeclines.siteId))
      .all();
  }

  update(studyId: string, round: number, siteId: string) {
    return this.q
      .select()
      .from(updates)
      .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.siteId, siteId)))
      .get();
  }
  updates(studyId: string, round: number, state: UpdateState) {
    return this.q
      .select()
      .from(updates)
      .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.state, state)))
      .orderBy(asc(updates.siteId))
      .all();
  }
  insertUpdate(row: { studyId: string; round: number; siteId: string; state: UpdateState; count: number; nSamples: number; length: number; startedAtMs: number }): void {
    this.q.insert(updates).values(row).run();
  }
  setUpdate(studyId: string, round: number, siteId: string, set: Partial<Omit<UpdateRow, 'studyId' | 'round' | 'siteId'>>): void {
    this.q
      .update(updates)
      .set(set)
      .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.siteId, siteId)))
      .run();
  }
  hasChunk(studyId: string, round: number, siteId: string, index: number): boolean {
    return !!this.q
      .select({ i: updateChunks.index })
      .from(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId), eq(updateChunks.index, index)))
      .get();
  }
  insertChunk(row: ChunkRow): void {
    this.q.insert(updateChunks).values(row).run();
  }
  chunks(studyId: string, round: number, siteId: string) {
    return this.q
      .select()
      .from(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId)))
      .orderBy(asc(updateChunks.index))
      .all();
  }
  chunkIndexes(studyId: string, round: number, siteId: string): number[] {
    return this.q
      .select({ i: updateChunks.index })
      .from(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId)))
      .orderBy(asc(updateChunks.index))
      .all()
      .map((r) => r.i);
  }
  chunk(studyId: string, round: number, siteId: string, index: number) {
    return this.q
      .select()
      .from(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId), eq(updateChunks.index, index)))
      .get();
  }
  chunkSites(studyId: string, round: number): string[] {
    return this.q
      .selectDistinct({ s: updateChunks.siteId })
      .from(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round)))
      .orderBy(asc(updateChunks.siteId))
      .all()
      .map((r) => r.s);
  }
  deleteChunksOf(studyId: string, round: number, siteId: string): void {
    this.q
      .delete(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId)))
      .run();
  }
  deleteChunks(studyId: string, round: number): void {
    this.q
      .delete(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round)))
      .run();
  }
  accumulator(studyId: string, round: number, index: number) {
    return this.q
      .select()
      .from(accumulators)
      .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round), eq(accumulators.index, index)))
      .get();
  }
  accumulators(studyId: string, round: number) {
    return this.q
      .select()
      .from(accumulators)
      .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round)))
      .orderBy(asc(accumulators.index))
      .all();
  }
  accumulatorCount(studyId: string, round: number): number {
    return (
      this.q
        .select({ n: count() })
        .from(accumulators)
        .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round)))
        .get()?.n ?? 0
    );
  }
  putAccumulator(row: AccumulatorRow): void {
    this.q
      .insert(accumulators)
      .values(row)
      .onConflictDoUpdate({ target: [accumulators.studyId, accumulators.round, accumulators.index], set: { ct: row.ct, contributions: row.contributions } })
      .run();
  }
  deleteAccumulator(studyId: string, round: number, index: number): void {
    this.q
      .delete(accumulators)
      .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round), eq(accumulators.index, index)))
      .run();
  }
  deleteAccumulators(studyId: string, round: number): void {
    this.q
      .delete(accumulators)
      .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round)))
      .run();
  }

  reclaimSpace(): void {
    // One page per step, so the statement must be stepped to its end: better-sqlite3's pragma()
    // does that (drizzle's run() would free a single page, its all() refuses a pragma without
    // rows). Inside a transaction there is no client to ask; the pages wait for the next call.
    if ('$client' in this.q) this.q.$client.pragma('incremental_vacuum');
  }

  insertRefusal(row: RefusalRow): void {
    this.q.insert(aggregateRefusals).values(row).onConflictDoNothing().run();
  }
  refusals(studyId: string, round: number) {
    return this.q
      .select()
      .from(aggregateRefusals)
      .where(and(eq(aggregateRefusals.studyId, studyId), eq(aggregateRefusals.round, round)))
      .all();
  }
  putMetrics(row: SiteMetricRow, values: MetricValue[]): void {
    this.transaction(() => {
      const { studyId, round, siteId, ...rest } = row;
      this.q
        .insert(siteMetrics)
        .values(row)
        .onConflictDoUpdate({ target: [siteMetrics.studyId, siteMetrics.round, siteMetrics.siteId], set: rest })
        .run();
      this.q
        .delete(siteMetricValues)
        .where(and(eq(siteMetricValues.studyId, studyId), eq(siteMetricValues.round, round), eq(siteMetricValues.siteId, siteId)))
        .run();
      for (const v of values)
        this.q
          .insert(siteMetricValues)
          .values({ studyId, round, siteId, name: v.name, value: v.value })
          .onConflictDoUpdate({ target: [siteMetricValues.studyId, siteMetricValues.round, siteMetricValues.siteId, siteMetricValues.name], set: { value: v.value } })
          .run();
    });
  }
  metrics(studyId: string, round: number) {
    const values = this.q
      .select()
      .from(siteMetricValues)
      .where(and(eq(siteMetricValues.studyId, studyId), eq(siteMetricValues.round, round)))
      .orderBy(asc(siteMetricValues.name))
      .all();
    return this.q
      .select()
      .from(siteMetrics)
      .where(and(eq(siteMetrics.studyId, studyId), eq(siteMetrics.round, round)))
      .orderBy(asc(siteMetrics.siteId))
      .all()
      .map((m) => ({ ...m, metrics: values.filter((v) => v.siteId === m.siteId).map((v) => ({ name: v.name, value: v.value })) }));
  }
}
