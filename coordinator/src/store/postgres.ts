/**
 * CoordinatorStore on PostgreSQL: the optional store for a coordinator whose state lives in a
 * database server (backups, replicas, monitoring the operators already run), selected with
 * `storeUrl` (`twinfed coordinator start --store postgres://...`). SQLite stays the default.
 *
 * Queries are built with drizzle's PostgreSQL query builder (pg-schema.ts) and run synchronously
 * through SyncPg (a node-postgres connection in a worker thread, pg-sync.ts), so the store keeps
 * the synchronous interface and transaction semantics of the SQLite one: `transaction(fn)` is
 * BEGIN .. COMMIT on the one connection (nested: savepoints), fn runs to its end with no other
 * transaction in between. The audit log lives in the same database and joins the same
 * transactions (pgAuditBackend).
 */
import { and, asc, desc, eq, getTableColumns, gt, isNotNull, isNull, sql, type SQL } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type { PgTable } from 'drizzle-orm/pg-core';
import { fileURLToPath } from 'node:url';
import type { AuditBackend } from '@twinfed/shared/audit/log';
import type { AuditEntry } from '@twinfed/shared/audit/chain';
import {
  accumulators,
  aggregateRefusals,
  auditLog,
  auditOwner,
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
} from '../db/pg-schema.js';
import type { StudyState, UpdateState } from '../states.js';
import type {
  AccumulatorRow,
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
import { SyncPg, type PgStatement, type SyncPgOptions } from './pg-sync.js';

/** The PostgreSQL migrations (drizzle-kit, dialect postgresql): coordinator/drizzle-pg. */
export const PG_MIGRATIONS = fileURLToPath(new URL('../../drizzle-pg', import.meta.url));

const ROUND_SITE_TABLES = { maskSetups, maskSignatures, maskReveals } as const;
/** One of the three, typed by the key columns they share (drizzle's builder refuses a union of tables). */
const roundSiteTable = (table: RoundSiteTable) => ROUND_SITE_TABLES[table] as unknown as typeof maskSignatures;

/** Builds SQL only (toSQL()); SyncPg runs it. */
const qb = drizzle.mock();

type Built = { toSQL(): { sql: string; params: unknown[] } };

const stmt = (q: Built | string): PgStatement => (typeof q === 'string' ? { sql: q, params: [] } : q.toSQL());

/** Decodes array rows of `select().from(t)` (columns in the table's order) into the table's row objects. */
function decoder<T extends PgTable>(t: T): (row: unknown[]) => T['$inferSelect'] {
  const cols = Object.entries(getTableColumns(t));
  return (row) => {
    const out: Record<string, unknown> = {};
    cols.forEach(([key, col], i) => {
      const v = row[i];
      out[key] = v === null || v === undefined ? null : col.mapFromDriverValue(v);
    });
    return out as T['$inferSelect'];
  };
}

/**
 * One connection's executor, shared by the store, its transaction views and the audit log.
 * Each round trip to the server costs (docs/scaling.md), so inside a transaction statements
 * whose answer nobody waits for travel with the next one that is waited for: BEGIN and SAVEPOINT
 * with the first statement inside, writes (write()) with the next read, or with the COMMIT or
 * RELEASE that ends their (nested) transaction. A deferred write that fails makes that later
 * statement throw, still inside the same transaction, which then rolls back as a whole: the same
 * outcome as failing at once, since no caller catches a single write's error and goes on.
 * Outside a transaction every statement is sent at once.
 */
export class PgConnection {
  private pending: PgStatement[] = [];

  constructor(readonly pg: SyncPg) {}

  private exec(q: Built | string): { rows: unknown[][]; rowCount: number } {
    const statements = [...this.pending, stmt(q)];
    this.pending = [];
    return this.pg.query(statements, statements[0].sql === 'BEGIN');
  }

  /** Sends the statement now; its row count. */
  run(q: Built | string): number {
    return this.exec(q).rowCount;
  }
  /** A write whose row count nobody needs: deferred inside a transaction, sent now outside one. */
  write(q: Built): void {
    if (this.pg.depth > 0) this.pending.push(stmt(q));
    else this.exec(q);
  }
  all<T extends PgTable>(t: T, q: Built): T['$inferSelect'][] {
    return this.exec(q).rows.map(decoder(t));
  }
  get<T extends PgTable>(t: T, q: Built): T['$inferSelect'] | undefined {
    const rows = this.exec(q).rows;
    return rows.length ? decoder(t)(rows[0]) : undefined;
  }
  /** The raw rows of a select of chosen columns (bigint columns arrive as strings: callers convert). */
  rows(q: Built | string): unknown[][] {
    return this.exec(q).rows;
  }
  /** Whether the statement returns at least one row. */
  exists(q: Built): boolean {
    return this.exec(q).rows.length > 0;
  }

  /** BEGIN .. COMMIT, or a savepoint inside an open transaction; ROLLBACK when fn (or COMMIT) throws. */
  transaction<T>(fn: () => T): T {
    const depth = this.pg.depth;
    const sp = `twinfed_sp${depth}`;
    const opener = stmt(depth === 0 ? 'BEGIN' : `SAVEPOINT ${sp}`);
    this.pending.push(opener);
    this.pg.depth = depth + 1;
    try {
      const result = fn();
      if (result instanceof Promise) throw new Error('a store transaction must be synchronous (its callback returned a promise)');
      // A savepoint's deferred writes are sent when it ends, so their errors stay inside it (a
      // caller may catch a nested transaction's failure and go on).
      this.run(depth === 0 ? 'COMMIT' : `RELEASE SAVEPOINT ${sp}`);
      this.pg.depth = depth;
      return result;
    } catch (e) {
      const unsent = this.pending.indexOf(opener);
      if (unsent !== -1) {
        // Nothing of this transaction reached the server: forget it.
        this.pending.splice(unsent);
      } else {
        // What is still pending belongs to this transaction: dropped with it.
        this.pending = [];
        try {
          this.run(depth === 0 ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${sp}`);
        } catch {
          // the original error says more
        }
      }
      this.pg.depth = depth;
      throw e;
    }
  }

  close(): void {
    this.pg.close();
  }
}

/** Connects (blocking), applies the PostgreSQL migrations, and returns the connection. */
export function openPgConnection(url: string, opts: Omit<SyncPgOptions, 'url' | 'migrationsFolder'> = {}): PgConnection {
  return new PgConnection(new SyncPg({ url, migrationsFolder: PG_MIGRATIONS, ...opts }));
}

export class PgStore implements CoordinatorStore {
  constructor(private readonly c: PgConnection) {}

  transaction<T>(fn: (tx: CoordinatorStore) => T): T {
    return this.c.transaction(() => fn(this));
  }

  nextSeq(): number {
    return this.transaction(() => {
      const row = this.c.get(meta, qb.select().from(meta).where(eq(meta.key, 'seq')));
      const next = (row ? Number(row.value) : 0) + 1;
      this.c.write(
        qb
          .insert(meta)
          .values({ key: 'seq', value: String(next) })
          .onConflictDoUpdate({ target: meta.key, set: { value: String(next) } }),
      );
      return next;
    });
  }

  insertToken(row: { tokenHash: string; siteName: string; expiresAtMs: number }): void {
    this.c.write(qb.insert(enrolmentTokens).values(row));
  }
  token(tokenHash: string) {
    return this.c.get(enrolmentTokens, qb.select().from(enrolmentTokens).where(eq(enrolmentTokens.tokenHash, tokenHash)));
  }
  useToken(tokenHash: string, siteId: string, atMs: number): void {
    this.c.write(qb.update(enrolmentTokens).set({ usedAtMs: atMs, siteId }).where(eq(enrolmentTokens.tokenHash, tokenHash)));
  }
  insertSite(row: { siteId: string; siteName: string; ed25519PublicKey: string; x25519PublicKey: string; enrolledAtMs: number }): void {
    this.c.write(qb.insert(sites).values(row));
  }
  site(siteId: string) {
    return this.c.get(sites, qb.select().from(sites).where(eq(sites.siteId, siteId)));
  }
  sites() {
    return this.c.all(sites, qb.select().from(sites).orderBy(asc(sites.enrolledAtMs)));
  }
  setSiteSeq(siteId: string, lastSeq: number, seenAtMs: number): void {
    this.c.write(qb.update(sites).set({ lastSeq, lastSeenAtMs: seenAtMs }).where(eq(sites.siteId, siteId)));
  }
  revokeSite(siteId: string, atMs: number): void {
    this.c.write(qb.update(sites).set({ revokedAtMs: atMs }).where(eq(sites.siteId, siteId)));
  }

  insertStudy(row: { studyId: string; manifestJson: string; manifestHash: string; state: StudyState; createdAtMs: number }): void {
    this.c.write(qb.insert(studies).values(row));
  }
  study(studyId: string) {
    return this.c.get(studies, qb.select().from(studies).where(eq(studies.studyId, studyId)));
  }
  studies(state?: StudyState) {
    return this.c.all(
      studies,
      qb
        .select()
        .from(studies)
        .where(state ? eq(studies.state, state) : undefined)
        .orderBy(asc(studies.createdAtMs)),
    );
  }
  updateStudy(studyId: string, set: Partial<Omit<StudyRow, 'studyId'>>): void {
    this.c.write(qb.update(studies).set(set).where(eq(studies.studyId, studyId)));
  }
  deleteDraft(studyId: string): boolean {
    return this.c.run(qb.delete(studies).where(and(eq(studies.studyId, studyId), eq(studies.state, 'draft')))) === 1;
  }

  addStudySite(studyId: string, siteId: string): void {
    this.c.write(qb.insert(studySites).values({ studyId, siteId, manifestHash: '' }).onConflictDoNothing());
  }
  studySite(studyId: string, siteId: string) {
    return this.c.get(
      studySites,
      qb
        .select()
        .from(studySites)
        .where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))),
    );
  }
  studySites(studyId: string) {
    return this.c.all(studySites, qb.select().from(studySites).where(eq(studySites.studyId, studyId)).orderBy(asc(studySites.siteId)));
  }
  studiesOfSite(siteId: string) {
    // SQLite returns these in rowid order (insertion); here the primary key's order.
    return this.c.all(studySites, qb.select().from(studySites).where(eq(studySites.siteId, siteId)).orderBy(asc(studySites.studyId)));
  }
  updateStudySite(studyId: string, siteId: string, set: Partial<Omit<StudySiteRow, 'studyId' | 'siteId'>>): void {
    this.c.write(
      qb
        .update(studySites)
        .set(set)
        .where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))),
    );
  }

  latestEpoch(studyId: string) {
    return this.c.get(keyEpochs, qb.select().from(keyEpochs).where(eq(keyEpochs.studyId, studyId)).orderBy(desc(keyEpochs.epoch)).limit(1));
  }
  epoch(studyId: string, epoch: number) {
    return this.c.get(
      keyEpochs,
      qb
        .select()
        .from(keyEpochs)
        .where(and(eq(keyEpochs.studyId, studyId), eq(keyEpochs.epoch, epoch))),
    );
  }
  insertEpoch(row: { studyId: string; epoch: number; manifestHash: string; dealer: string; recipientsJson: string; requestedAtMs: number }): void {
    this.c.write(qb.insert(keyEpochs).values(row));
  }
  updateEpoch(studyId: string, epoch: number, set: Partial<Omit<KeyEpochRow, 'studyId' | 'epoch'>>): void {
    this.c.write(
      qb
        .update(keyEpochs)
        .set(set)
        .where(and(eq(keyEpochs.studyId, studyId), eq(keyEpochs.epoch, epoch))),
    );
  }
  insertSealedKey(row: { studyId: string; epoch: number; siteId: string; sealedKey: string; deliveredAtMs: number | null }): void {
    this.c.write(qb.insert(sealedKeys).values(row).onConflictDoNothing());
  }
  sealedKeys(studyId: string, epoch: number, filter: { siteId: string } | 'undelivered' | 'all') {
    const extra: SQL[] = filter === 'all' ? [] : filter === 'undelivered' ? [isNull(sealedKeys.deliveredAtMs)] : [eq(sealedKeys.siteId, filter.siteId)];
    return this.c.all(
      sealedKeys,
      qb
        .select()
        .from(sealedKeys)
        .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.epoch, epoch), ...extra))
        .orderBy(asc(sealedKeys.siteId)),
    );
  }
  deliveredKeySites(studyId: string, epoch: number): string[] {
    return this.c
      .rows(
        qb
          .select({ s: sealedKeys.siteId })
          .from(sealedKeys)
          .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.epoch, epoch), isNotNull(sealedKeys.deliveredAtMs))),
      )
      .map((r) => String(r[0]));
  }
  markDelivered(studyId: string, epoch: number, siteId: string, atMs: number): void {
    this.c.write(
      qb
        .update(sealedKeys)
        .set({ deliveredAtMs: atMs })
        .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.epoch, epoch), eq(sealedKeys.siteId, siteId))),
    );
  }
  sealedKeysOfSite(studyId: string, siteId: string) {
    return this.c.all(
      sealedKeys,
      qb
        .select()
        .from(sealedKeys)
        .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.siteId, siteId)))
        .orderBy(asc(sealedKeys.epoch)),
    );
  }

  round(studyId: string, round: number) {
    return this.c.get(
      rounds,
      qb
        .select()
        .from(rounds)
        .where(and(eq(rounds.studyId, studyId), eq(rounds.round, round))),
    );
  }
  rounds(studyId: string, state?: RoundRow['state']) {
    return this.c.all(
      rounds,
      qb
        .select()
        .from(rounds)
        .where(and(eq(rounds.studyId, studyId), ...(state ? [eq(rounds.state, state)] : [])))
        .orderBy(asc(rounds.round)),
    );
  }
  insertRound(row: typeof rounds.$inferInsert): void {
    this.c.write(qb.insert(rounds).values(row));
  }
  updateRound(studyId: string, round: number, set: Partial<Omit<RoundRow, 'studyId' | 'round'>>): void {
    this.c.write(
      qb
        .update(rounds)
        .set(set)
        .where(and(eq(rounds.studyId, studyId), eq(rounds.round, round))),
    );
  }

  roundSiteRow<T extends RoundSiteTable>(table: T, studyId: string, round: number, siteId: string): RoundSiteRowOf<T> | undefined {
    const t = roundSiteTable(table);
    return this.c.get(
      t,
      qb
        .select()
        .from(t)
        .where(and(eq(t.studyId, studyId), eq(t.round, round), eq(t.siteId, siteId))),
    ) as RoundSiteRowOf<T> | undefined;
  }
  roundSiteIds(table: RoundSiteTable, studyId: string, round: number): string[] {
    const t = roundSiteTable(table);
    return this.c
      .rows(
        qb
          .select({ s: t.siteId })
          .from(t)
          .where(and(eq(t.studyId, studyId), eq(t.round, round)))
          .orderBy(asc(t.siteId)),
      )
      .map((r) => String(r[0]));
  }
  roundSiteRows<T extends RoundSiteTable>(table: T, studyId: string, round: number): RoundSiteRowOf<T>[] {
    const t = roundSiteTable(table);
    return this.c.all(
      t,
      qb
        .select()
        .from(t)
        .where(and(eq(t.studyId, studyId), eq(t.round, round)))
        .orderBy(asc(t.siteId)),
    ) as RoundSiteRowOf<T>[];
  }
  insertRoundSiteRow<T extends RoundSiteTable>(table: T, row: RoundSiteRowOf<T>): void {
    this.c.write(qb.insert(ROUND_SITE_TABLES[table]).values(row as never));
  }
  deleteMaskSetup(studyId: string, round: number, siteId: string): void {
    this.c.write(qb.delete(maskSetups).where(and(eq(maskSetups.studyId, studyId), eq(maskSetups.round, round), eq(maskSetups.siteId, siteId))));
  }

  insertDecline(row: DeclineRow): void {
    this.c.write(qb.insert(roundDeclines).values(row).onConflictDoNothing());
  }
  declines(studyId: string, round: number) {
    return this.c.all(
      roundDeclines,
      qb
        .select()
        .from(roundDeclines)
        .where(and(eq(roundDeclines.studyId, studyId), eq(roundDeclines.round, round)))
        .orderBy(asc(roundDeclines.siteId)),
    );
  }

  update(studyId: string, round: number, siteId: string) {
    return this.c.get(
      updates,
      qb
        .select()
        .from(updates)
        .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.siteId, siteId))),
    );
  }
  updates(studyId: string, round: number, state: UpdateState) {
    return this.c.all(
      updates,
      qb
        .select()
        .from(updates)
        .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.state, state)))
        .orderBy(asc(updates.siteId)),
    );
  }
  insertUpdate(row: { studyId: string; round: number; siteId: string; state: UpdateState; count: number; nSamples: number; length: number; startedAtMs: number }): void {
    this.c.write(qb.insert(updates).values(row));
  }
  setUpdate(studyId: string, round: number, siteId: string, set: Partial<Omit<UpdateRow, 'studyId' | 'round' | 'siteId'>>): void {
    this.c.write(
      qb
        .update(updates)
        .set(set)
        .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.siteId, siteId))),
    );
  }
  hasChunk(studyId: string, round: number, siteId: string, index: number): boolean {
    const q = qb
      .select({ i: updateChunks.index })
      .from(updateChunks)
      .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId), eq(updateChunks.index, index)));
    return this.c.exists(q);
  }
  updateSites(studyId: string, round: number, state: UpdateState): string[] {
    return this.c
      .rows(
        qb
          .select({ s: updates.siteId })
          .from(updates)
          .where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.state, state)))
          .orderBy(asc(updates.siteId)),
      )
      .map((r) => String(r[0]));
  }
  insertChunk(row: Parameters<CoordinatorStore['insertChunk']>[0]): void {
    this.c.write(qb.insert(updateChunks).values({ ...row, logFile: row.logFile ?? null, logOffset: row.logOffset ?? null, logLength: row.logLength ?? null }));
  }
  chunkIndexes(studyId: string, round: number, siteId: string): number[] {
    return this.c
      .rows(
        qb
          .select({ i: updateChunks.index })
          .from(updateChunks)
          .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId)))
          .orderBy(asc(updateChunks.index)),
      )
      .map((r) => Number(r[0]));
  }
  chunk(studyId: string, round: number, siteId: string, index: number) {
    return this.c.get(
      updateChunks,
      qb
        .select()
        .from(updateChunks)
        .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId), eq(updateChunks.index, index))),
    );
  }
  chunkSites(studyId: string, round: number): string[] {
    return this.c
      .rows(
        qb
          .selectDistinct({ s: updateChunks.siteId })
          .from(updateChunks)
          .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round)))
          .orderBy(asc(updateChunks.siteId)),
      )
      .map((r) => String(r[0]));
  }
  chunkRounds(): { studyId: string; round: number }[] {
    return this.c
      .rows(qb.selectDistinct({ s: updateChunks.studyId, r: updateChunks.round }).from(updateChunks).orderBy(asc(updateChunks.studyId), asc(updateChunks.round)))
      .map((r) => ({ studyId: String(r[0]), round: Number(r[1]) }));
  }
  deleteChunksOf(studyId: string, round: number, siteId: string): void {
    this.c.write(qb.delete(updateChunks).where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId))));
  }
  chunks(studyId: string, round: number, siteId: string) {
    return this.c.all(
      updateChunks,
      qb
        .select()
        .from(updateChunks)
        .where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round), eq(updateChunks.siteId, siteId)))
        .orderBy(asc(updateChunks.index)),
    );
  }
  deleteChunks(studyId: string, round: number): void {
    this.c.write(qb.delete(updateChunks).where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round))));
  }
  accumulator(studyId: string, round: number, index: number) {
    return this.c.get(
      accumulators,
      qb
        .select()
        .from(accumulators)
        .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round), eq(accumulators.index, index))),
    );
  }
  accumulators(studyId: string, round: number) {
    return this.c.all(
      accumulators,
      qb
        .select()
        .from(accumulators)
        .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round)))
        .orderBy(asc(accumulators.index)),
    );
  }
  accumulatorCount(studyId: string, round: number): number {
    return Number(
      this.c.rows(
        qb
          .select({ n: sql`count(*)` })
          .from(accumulators)
          .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round))),
      )[0][0],
    );
  }
  accumulatorSizes(studyId: string, round: number): { index: number; bytes: number }[] {
    return this.c
      .rows(
        qb
          .select({ i: accumulators.index, b: sql`octet_length(${accumulators.ct})` })
          .from(accumulators)
          .where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round)))
          .orderBy(asc(accumulators.index)),
      )
      .map((r) => ({ index: Number(r[0]), bytes: Number(r[1]) }));
  }
  putAccumulator(row: AccumulatorRow): void {
    this.c.write(
      qb
        .insert(accumulators)
        .values(row)
        .onConflictDoUpdate({ target: [accumulators.studyId, accumulators.round, accumulators.index], set: { ct: row.ct, contributions: row.contributions } }),
    );
  }
  deleteAccumulator(studyId: string, round: number, index: number): void {
    this.c.write(qb.delete(accumulators).where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round), eq(accumulators.index, index))));
  }
  deleteAccumulators(studyId: string, round: number): void {
    this.c.write(qb.delete(accumulators).where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round))));
  }

  reclaimSpace(): void {
    // PostgreSQL's autovacuum makes the space of deleted rows reusable; handing it back to the
    // file system (VACUUM FULL) locks the tables and is an operator's maintenance step.
  }

  insertRefusal(row: RefusalRow): void {
    this.c.write(qb.insert(aggregateRefusals).values(row).onConflictDoNothing());
  }
  refusals(studyId: string, round: number) {
    return this.c.all(
      aggregateRefusals,
      qb
        .select()
        .from(aggregateRefusals)
        .where(and(eq(aggregateRefusals.studyId, studyId), eq(aggregateRefusals.round, round)))
        .orderBy(asc(aggregateRefusals.siteId)),
    );
  }
  putMetrics(row: SiteMetricRow, values: MetricValue[]): void {
    this.transaction(() => {
      const { studyId, round, siteId, ...rest } = row;
      this.c.write(
        qb
          .insert(siteMetrics)
          .values(row)
          .onConflictDoUpdate({ target: [siteMetrics.studyId, siteMetrics.round, siteMetrics.siteId], set: rest }),
      );
      this.c.write(qb.delete(siteMetricValues).where(and(eq(siteMetricValues.studyId, studyId), eq(siteMetricValues.round, round), eq(siteMetricValues.siteId, siteId))));
      for (const v of values)
        this.c.write(
          qb
            .insert(siteMetricValues)
            .values({ studyId, round, siteId, name: v.name, value: v.value })
            .onConflictDoUpdate({ target: [siteMetricValues.studyId, siteMetricValues.round, siteMetricValues.siteId, siteMetricValues.name], set: { value: v.value } }),
        );
    });
  }
  metrics(studyId: string, round: number) {
    const values = this.c.all(
      siteMetricValues,
      qb
        .select()
        .from(siteMetricValues)
        .where(and(eq(siteMetricValues.studyId, studyId), eq(siteMetricValues.round, round)))
        .orderBy(asc(siteMetricValues.name)),
    );
    return this.c
      .all(
        siteMetrics,
        qb
          .select()
          .from(siteMetrics)
          .where(and(eq(siteMetrics.studyId, studyId), eq(siteMetrics.round, round)))
          .orderBy(asc(siteMetrics.siteId)),
      )
      .map((m) => ({ ...m, metrics: values.filter((v) => v.siteId === m.siteId).map((v) => ({ name: v.name, value: v.value })) }));
  }
}

/** The coordinator's audit log in the same PostgreSQL database, on the same connection (so an append joins the open transaction). */
export function pgAuditBackend(c: PgConnection): AuditBackend {
  return {
    owner: () => c.get(auditOwner, qb.select().from(auditOwner).limit(1)),
    insertOwner: (row) => c.write(qb.insert(auditOwner).values(row)),
    transaction: (fn) => c.transaction(fn),
    last: () => c.get(auditLog, qb.select().from(auditLog).orderBy(desc(auditLog.id)).limit(1)) as AuditEntry | undefined,
    insert: (entry) => c.write(qb.insert(auditLog).values(entry)),
    entries: (afterId, limit) => c.all(auditLog, qb.select().from(auditLog).where(gt(auditLog.id, afterId)).orderBy(asc(auditLog.id)).limit(limit)) as AuditEntry[],
  };
}
