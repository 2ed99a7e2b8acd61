import type Database from 'better-sqlite3';
import { WireError } from '@twinfed/protocols';
import { and, asc, eq, getTableColumns, getTableName, type Table } from 'drizzle-orm';
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
  SealedKeyRow,
  SiteMetricRow,
  StudyRow,
  StudySiteRow,
  UpdateRow,
} from './index.js';

const ROUND_SITE_TABLES = { maskSetups, maskSignatures, maskReveals } as const;

/** SQL column names of a table by property name. */
function columnsOf(table: Table): [string, string][] {
  return Object.entries(getTableColumns(table)).map(([prop, c]) => [prop, c.name]);
}
const q = (id: string) => `"${id}"`;
function sqlName(table: Table, prop: string): string {
  const c = getTableColumns(table)[prop];
  if (!c) throw new Error(`${getTableName(table)} has no column ${prop}`);
  return q(c.name);
}
const selects = new Map<string, string>();
/** select every column (as its property name) where the `keys` equal the parameters, in order (text built once). */
function selectSql(table: Table, keys: string[], tail = ''): string {
  const id = `${getTableName(table)}|${keys.join(',')}|${tail}`;
  let text = selects.get(id);
  if (!text) {
    const cols = columnsOf(table)
      .map(([prop, name]) => `${q(name)} as ${q(prop)}`)
      .join(', ');
    text = `select ${cols} from ${q(getTableName(table))} where ${keys.map((k) => `${sqlName(table, k)} = ?`).join(' and ')}${tail}`;
    selects.set(id, text);
  }
  return text;
}

/**
 * CoordinatorStore on SQLite (better-sqlite3 through drizzle). Transactions are SQLite's (nested
 * ones are savepoints). The queries of every chunk (a round of 100 sites x 10M parameters stores
 * 244k) are prepared once per connection and run on the client directly: drizzle builds its SQL
 * anew on each call (~50 us each, a millisecond per chunk in all); the rest go through drizzle.
 */
export class SqliteStore implements CoordinatorStore {
  private readonly q: CoordinatorDb;
  private readonly client: Database.Database;
  private static readonly statements = new WeakMap<Database.Database, Map<string, Database.Statement>>();

  constructor(db: CoordinatorDb) {
    this.q = db;
    this.client = db.$client;
  }

  /** The prepared statement of `text` on this connection (cached). */
  private st(text: string): Database.Statement {
    let m = SqliteStore.statements.get(this.client);
    if (!m) SqliteStore.statements.set(this.client, (m = new Map<string, Database.Statement>()));
    let s = m.get(text);
    if (!s) m.set(text, (s = this.client.prepare(text)));
    return s;
  }

  private getRow<T>(table: Table, keys: string[], values: unknown[]): T | undefined {
    return this.st(selectSql(table, keys)).get(...values) as T | undefined;
  }

  /** update `table` set the defined members of `set` where the `keys` equal `values`. */
  private updateRow(table: Table, set: Record<string, unknown>, keys: string[], values: unknown[]): void {
    const props = Object.keys(set).filter((k) => set[k] !== undefined);
    if (props.length === 0) return;
    this.st(`update ${q(getTableName(table))} set ${props.map((p) => `${sqlName(table, p)} = ?`).join(', ')} where ${keys.map((k) => `${sqlName(table, k)} = ?`).join(' and ')}`).run(
      ...props.map((p) => set[p]),
      ...values,
    );
  }

  private insertRow(table: Table, row: Record<string, unknown>): void {
    const props = Object.keys(row).filter((k) => row[k] !== undefined);
    this.st(`insert into ${q(getTableName(table))} (${props.map((p) => sqlName(table, p)).join(', ')}) values (${props.map(() => '?').join(', ')})`).run(...props.map((p) => row[p]));
  }

  /** One transaction on the connection (a savepoint inside another); the same store reads and writes inside it. */
  transaction<T>(fn: (tx: CoordinatorStore) => T): T {
    return this.client.transaction(() => fn(this))();
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
    return this.getRow<typeof sites.$inferSelect>(sites, ['siteId'], [siteId]);
  }
  sites() {
    return this.q.select().from(sites).orderBy(asc(sites.enrolledAtMs)).all();
  }
  setSiteSeq(siteId: string, lastSeq: number, seenAtMs: number): void {
    this.st('update sites set last_seq = max(last_seq, ?), last_seen_at_ms = ? where site_id = ?').run(lastSeq, seenAtMs, siteId);
  }
  revokeSite(siteId: string, atMs: number): void {
    this.q.update(sites).set({ revokedAtMs: atMs }).where(eq(sites.siteId, siteId)).run();
  }

  insertStudy(row: { studyId: string; manifestJson: string; manifestHash: string; state: StudyState; createdAtMs: number }): void {
    this.q.insert(studies).values(row).run();
  }
  /**
   * The study's row. Its manifest (25 KB of JSON at 100 participants, read twice for every chunk
   * before) is read only when `manifestJson` is used, from the row of the same manifest hash:
   * manifestOfRow() mostly answers from its cache by hash without it.
   */
  study(studyId: string): StudyRow | undefined {
    const row = this.st(
      'select study_id as studyId, manifest_hash as manifestHash, state, stop_reason as stopReason, current_round as currentRound, key_epoch as keyEpoch, key_dealer as keyDealer, created_at_ms as createdAtMs, last_failed_at_ms as lastFailedAtMs from studies where study_id = ?',
    ).get(studyId) as Omit<StudyRow, 'manifestJson'> | undefined;
    if (!row) return undefined;
    let json: string | undefined;
    const read = () => {
      if (json === undefined) {
        json = this.st('select manifest_json from studies where study_id = ? and manifest_hash = ?').pluck().get(studyId, row.manifestHash) as string | undefined;
        if (json === undefined) throw new WireError('TWF_E_STUDY_STATE', `the manifest of ${studyId} changed meanwhile; retry`);
      }
      return json;
    };
    return Object.defineProperty(row, 'manifestJson', { get: read, enumerable: true }) as StudyRow;
  }
  studies(state?: StudyState) {
    if (state) return this.st(selectSql(studies, ['state'], ' order by created_at_ms')).all(state) as StudyRow[];
    return this.q.select().from(studies).orderBy(asc(studies.createdAtMs)).all();
  }
  updateStudy(studyId: string, set: Partial<Omit<StudyRow, 'studyId'>>): void {
    this.updateRow(studies, set, ['studyId'], [studyId]);
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
    return this.getRow<StudySiteRow>(studySites, ['studyId', 'siteId'], [studyId, siteId]);
  }
  studySites(studyId: string) {
    return this.st(selectSql(studySites, ['studyId'], ' order by site_id')).all(studyId) as StudySiteRow[];
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
    return this.st(selectSql(keyEpochs, ['studyId'], ' order by epoch desc limit 1')).get(studyId) as KeyEpochRow | undefined;
  }
  epoch(studyId: string, epoch: number) {
    return this.getRow<KeyEpochRow>(keyEpochs, ['studyId', 'epoch'], [studyId, epoch]);
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
    if (filter === 'all') return this.st(selectSql(sealedKeys, ['studyId', 'epoch'])).all(studyId, epoch) as SealedKeyRow[];
    if (filter === 'undelivered') return this.st(selectSql(sealedKeys, ['studyId', 'epoch'], ' and delivered_at_ms is null')).all(studyId, epoch) as SealedKeyRow[];
    return this.st(selectSql(sealedKeys, ['studyId', 'epoch', 'siteId'])).all(studyId, epoch, filter.siteId) as SealedKeyRow[];
  }
  markDelivered(studyId: string, epoch: number, siteId: string, atMs: number): void {
    this.q
      .update(sealedKeys)
      .set({ deliveredAtMs: atMs })
      .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.epoch, epoch), eq(sealedKeys.siteId, siteId)))
      .run();
  }
  deliveredKeySites(studyId: string, epoch: number): string[] {
    return this.st('select site_id from sealed_keys where study_id = ? and epoch = ? and delivered_at_ms is not null').pluck().all(studyId, epoch) as string[];
  }
  sealedKeysOfSite(studyId: string, siteId: string) {
    return this.q
      .select()
      .from(sealedKeys)
      .where(and(eq(sealedKeys.studyId, studyId), eq(sealedKeys.siteId, siteId)))
      .all();
  }

  round(studyId: string, round: number) {
    return this.getRow<RoundRow>(rounds, ['studyId', 'round'], [studyId, round]);
  }
  rounds(studyId: string, state?: RoundRow['state']) {
    if (state) return this.st(selectSql(rounds, ['studyId', 'state'], ' order by round')).all(studyId, state) as RoundRow[];
    return this.st(selectSql(rounds, ['studyId'], ' order by round')).all(studyId) as RoundRow[];
  }
  insertRound(row: typeof rounds.$inferInsert): void {
    this.q.insert(rounds).values(row).run();
  }
  updateRound(studyId: string, round: number, set: Partial<Omit<RoundRow, 'studyId' | 'round'>>): void {
    this.updateRow(rounds, set, ['studyId', 'round'], [studyId, round]);
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
  roundSiteIds(table: RoundSiteTable, studyId: string, round: number): string[] {
    const t = ROUND_SITE_TABLES[table];
    return (this.st(`select site_id s from ${q(getTableName(t))} where study_id = ? and round = ? order by site_id`).all(studyId, round) as { s: string }[]).map((r) => r.s);
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
    return this.st(selectSql(roundDeclines, ['studyId', 'round'], ' order by site_id')).all(studyId, round) as DeclineRow[];
  }

  update(studyId: string, round: number, siteId: string) {
    return this.getRow<UpdateRow>(updates, ['studyId', 'round', 'siteId'], [studyId, round, siteId]);
  }
  updates(studyId: string, round: number, state: UpdateState) {
    return this.st(selectSql(updates, ['studyId', 'round', 'state'], ' order by site_id')).all(studyId, round, state) as UpdateRow[];
  }
  updateSites(studyId: string, round: number, state: UpdateState): string[] {
    return (this.st('select site_id s from updates where study_id = ? and round = ? and state = ? order by site_id').all(studyId, round, state) as { s: string }[]).map((r) => r.s);
  }
  insertUpdate(row: { studyId: string; round: number; siteId: string; state: UpdateState; count: number; nSamples: number; length: number; startedAtMs: number }): void {
    this.insertRow(updates, row);
  }
  setUpdate(studyId: string, round: number, siteId: string, set: Partial<Omit<UpdateRow, 'studyId' | 'round' | 'siteId'>>): void {
    this.updateRow(updates, set, ['studyId', 'round', 'siteId'], [studyId, round, siteId]);
  }
  hasChunk(studyId: string, round: number, siteId: string, index: number): boolean {
    return !!this.st('select 1 from update_chunks where study_id = ? and round = ? and site_id = ? and idx = ?').get(studyId, round, siteId, index);
  }
  insertChunk(row: Parameters<CoordinatorStore['insertChunk']>[0]): void {
    this.st('insert into update_chunks (study_id, round, site_id, idx, ct, digest, log_file, log_offset, log_length) values (?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      row.studyId,
      row.round,
      row.siteId,
      row.index,
      row.ct,
      row.digest,
      row.logFile ?? null,
      row.logOffset ?? null,
      row.logLength ?? null,
    );
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
    return (this.st('select idx from update_chunks where study_id = ? and round = ? and site_id = ? order by idx').all(studyId, round, siteId) as { idx: number }[]).map((r) => r.idx);
  }
  chunk(studyId: string, round: number, siteId: string, index: number) {
    return this.getRow<ChunkRow>(updateChunks, ['studyId', 'round', 'siteId', 'index'], [studyId, round, siteId, index]);
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
  chunkRounds(): { studyId: string; round: number }[] {
    return this.st('select distinct study_id studyId, round from update_chunks order by study_id, round').all() as { studyId: string; round: number }[];
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
    return (this.st('select count(*) n from accumulators where study_id = ? and round = ?').get(studyId, round) as { n: number }).n;
  }
  accumulatorSizes(studyId: string, round: number): { index: number; bytes: number }[] {
    return this.st('select idx as "index", length(ct) as bytes from accumulators where study_id = ? and round = ? order by idx').all(studyId, round) as { index: number; bytes: number }[];
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
    if (!this.client.inTransaction) this.client.pragma('incremental_vacuum');
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
