import { StudyDraftSchema, StudyManifestSchema, WireError, isWireErrorCode, type CoordinatorMessageType, type Envelope, type StudyDraft, type StudyManifest } from '@twinfed/protocols';
import type { AuditEntry, AuditLog } from '@twinfed/shared/audit/index';
import type { CoordinatorStore, StudyRow, StudySiteRow } from './store/index.js';
import type { CoordinatorMetrics } from './metrics.js';
import type { GroupCommit } from './group-commit.js';
import type { SumPool } from './sums/pool.js';

export interface EngineOptions {
  clockSkewMs: number;
  /** A round opens only when no site joined in the last joinSettleMs (default 2000). */
  joinSettleMs?: number;
  /** Deadline of each secure-aggregation phase after setup (upload, consistency, unmask), ms. */
  phaseTimeoutMs?: number;
  /** How long a phase short of its minimum waits past its deadline before the round fails, ms. */
  quorumGraceMs?: number;
  /** A key dealer that has not answered within this time is replaced by the next in the manifest's order, ms. */
  dealerTimeoutMs?: number;
  /** Aggregates of the last catchUpRounds closed rounds of a study are kept for catch-up; older ones are pruned (default 20, at least 2). */
  catchUpRounds?: number;
  /** Extra upload-phase time per million parameters per site of the key set, ms (rounds.ts uploadAllowanceMs; default 1000). */
  uploadMsPerMParams?: number;
  /** Aggregation worker threads (sums/pool.ts); 0 adds on the main thread. Default: cores - 1, 1..8. */
  aggregationWorkers?: number;
  /** Folder of the chunk logs (<dataDir>/chunks); without one, chunk bytes are kept in their rows (in-memory tests). */
  chunkDir?: string;
  /**
   * BENCH ONLY: chunks are float32 plaintext and are summed as such, to measure what encryption
   * costs (test/src/bench/aggregate-memory.ts --plaintext-compare). Nothing is encrypted: never
   * for real data. buildCoordinator refuses it without TWINFED_BENCH_PLAINTEXT set (config.ts).
   */
  benchPlaintext?: boolean;
  now?: () => number;
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** The TLS pin served now and the next one: each site gets a signed tls.rollover after hello. */
  tlsRollover?: { pin: string; nextPin: string };
  /**
   * Called (synchronously, after the change is committed) when something a console shows of a
   * study changed: a round opened, stepped, closed or failed; a site joined, approved, uploaded,
   * dropped, connected or left. A hint only (the console re-reads the store); must not throw.
   */
  onChange?: (studyId: string) => void;
}

export type { RoundRow, StudyRow, StudySiteRow } from './store/index.js';
export type Meta = Record<string, string | number | boolean>;

/**
 * What the parts of the coordinator (keys, rounds, message handlers) share: the database, the
 * audit log, metrics, the clock, and a way to send a signed envelope to a connected site.
 */
export interface EngineContext {
  readonly store: CoordinatorStore;
  readonly audit: AuditLog;
  readonly metrics: CoordinatorMetrics;
  readonly coordinatorId: string;
  readonly opts: Required<Omit<EngineOptions, 'log' | 'now' | 'tlsRollover' | 'onChange' | 'aggregationWorkers' | 'benchPlaintext' | 'chunkDir'>>;
  /** Running sums of the rounds in their upload phase, on worker threads. */
  readonly sums: SumPool;
  /** Shared commits for the per-message writes of many sites (chunks, sequence numbers). */
  readonly commits: GroupCommit;
  /** Records an envelope's sequence number in `tx` (TWF_E_REPLAY if not above the last); update.chunk calls it where the chunk is stored. */
  advanceSeq(tx: CoordinatorStore, env: Envelope): void;
  now(): number;
  log(level: 'info' | 'warn' | 'error', msg: string): void;
  /**
   * Signs, audits (msg.sent) and sends one envelope; false when the site is not connected.
   * `digest`: sha256Hex of a binary body sent to many sites, computed once by the caller.
   */
  send(siteId: string, type: CoordinatorMessageType, studyId: string | null, round: number | null, body: unknown, meta?: Meta, digest?: string): boolean;
  /**
   * Sends several envelopes with one commit (their sequence numbers and msg.sent entries), then
   * emits them in order; a function body is built in the transaction. Returns which were sent.
   */
  sendMany(list: { siteId: string; type: CoordinatorMessageType; studyId: string | null; round: number | null; body: unknown; meta?: Meta; digest?: string }[]): boolean[];
  /** True while the site has an authenticated connection on which it said hello. */
  online(siteId: string): boolean;
  /** Sends a signed checkpoint of the audit chain head to the study's connected sites. */
  checkpoint(studyId: string): void;
}

/**
 * Errors of the core keep their code on the wire when it is catalogued. Internal errors never
 * leave the process with their message: the peer gets a reference to the log line.
 */
export function toWireError(e: unknown): WireError {
  if (e instanceof WireError) return e;
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof code === 'string' && isWireErrorCode(code) && code !== 'TWF_E_INTERNAL' ? new WireError(code, msg) : new WireError('TWF_E_INTERNAL', '');
}

export function studyRow(store: CoordinatorStore, studyId: string): StudyRow {
  const st = store.study(studyId);
  if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', studyId);
  return st;
}

export function requireStudyId(studyId: string | null): string {
  if (!studyId) throw new WireError('TWF_E_MALFORMED', 'studyId missing');
  return studyId;
}

/**
 * Parsed manifests by manifest hash: every site message reads its study's manifest, and parsing it
 * (JSON and schema, 100 participants) cost a fifth of a millisecond per chunk. A manifest is
 * immutable under its hash; the objects are frozen so no caller can change a shared one.
 */
const manifests = new Map<string, StudyManifest>();
const MANIFEST_CACHE_SIZE = 64;

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** The study's manifest (with roster); throws TWF_E_STUDY_STATE for a draft. Frozen: shared between callers. */
export function manifestOfRow(st: StudyRow): StudyManifest {
  if (st.state === 'draft') throw new WireError('TWF_E_STUDY_STATE', `${st.studyId} is a draft: start it to fix its roster`);
  const key = `${st.studyId}\u0000${st.manifestHash}`;
  const hit = manifests.get(key);
  if (hit) return hit;
  const p = StudyManifestSchema.safeParse(JSON.parse(st.manifestJson));
  if (!p.success) throw new WireError('TWF_E_STUDY_STATE', `${st.studyId} has a manifest of protocol 1.x (no roster); create the study again`);
  if (manifests.size >= MANIFEST_CACHE_SIZE) manifests.delete(manifests.keys().next().value!);
  manifests.set(key, deepFreeze(p.data));
  return p.data;
}

export function draftOfRow(st: StudyRow): StudyDraft {
  return StudyDraftSchema.parse(JSON.parse(st.manifestJson));
}

/** Roster sites joined with the current manifest and not excluded (evicted, withdrawn, revoked, removed). `rows`: the study's roster rows, when already read. */
export function activeJoined(store: CoordinatorStore, st: StudyRow, rows = store.studySites(st.studyId)): StudySiteRow[] {
  return rows.filter((r) => r.manifestHash === st.manifestHash && r.joinedAtMs !== null && r.excluded === null);
}

/** Roster sites not excluded (joined or not). */
export function activeRoster(store: CoordinatorStore, st: StudyRow, m: StudyManifest, rows = store.studySites(st.studyId)): string[] {
  const excluded = new Set(rows.filter((r) => r.excluded !== null).map((r) => r.siteId));
  return m.participants.map((p) => p.siteId).filter((id) => !excluded.has(id));
}

const lists = new Map<string, readonly string[]>();

/**
 * A JSON list of ids (participants, key set, survivors), parsed once per distinct text: a chunk
 * reads the key set and the participants of its round several times, 2 KB each at 100 sites.
 * Returns a fresh array (callers sort them).
 */
export function parseList(json: string | null): string[] {
  if (!json) return [];
  let l = lists.get(json);
  if (!l) {
    if (lists.size >= 256) lists.delete(lists.keys().next().value!);
    lists.set(json, (l = JSON.parse(json) as string[]));
  }
  return l.slice();
}

/** Roster sites not excluded whose privacy budget is not spent (they can still be asked to a round). */
export function budgetLeft(store: CoordinatorStore, st: StudyRow, m: StudyManifest, all = store.studySites(st.studyId)): string[] {
  const rows = new Map(all.map((r) => [r.siteId, r]));
  return activeRoster(store, st, m, all).filter((id) => rows.get(id)?.dpExhaustedAtMs == null);
}

/** The entry `received` returns, for receipts. */
export interface HandlerResult {
  entry: AuditEntry;
  info?: Record<string, unknown>;
}
