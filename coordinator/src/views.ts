/**
 * What the lead reads (REST): sites, studies, manifests, study and round status, metrics,
 * refusals. Read-only functions over the store and the connection table; the engine's methods of
 * the same names delegate here.
 */
import { WireError, type StudyDraft, type StudyManifest } from '@twinfed/protocols';
import { siteFingerprint } from '@twinfed/shared/crypto/index';
import { activeJoined, draftOfRow, manifestOfRow, parseList, studyRow, type EngineContext } from './context.js';
import type { Rounds } from './rounds.js';
import type { RoundRow } from './store/index.js';

/** What a view reads: the store, and whether a site is online (authenticated connection that said hello). */
export type ViewContext = Pick<EngineContext, 'store' | 'online'>;
/** The round queries studyStatus uses. */
export type RoundQueries = Pick<Rounds, 'closedCount' | 'summaries'>;

export function listSites(ctx: ViewContext) {
  return ctx.store.sites().map((s) => ({
    siteId: s.siteId,
    siteName: s.siteName,
    enrolledAt: new Date(s.enrolledAtMs).toISOString(),
    connected: ctx.online(s.siteId),
    lastSeenAt: s.lastSeenAtMs === null ? null : new Date(s.lastSeenAtMs).toISOString(),
    revokedAt: s.revokedAtMs === null ? null : new Date(s.revokedAtMs).toISOString(),
    ed25519PublicKey: s.ed25519PublicKey,
    x25519PublicKey: s.x25519PublicKey,
    fingerprint: siteFingerprint(s.ed25519PublicKey, s.x25519PublicKey),
  }));
}

export function listStudies(ctx: ViewContext) {
  return ctx.store.studies().map((s) => {
    const d = JSON.parse(s.manifestJson) as StudyDraft & { participants?: unknown[] };
    return {
      studyId: s.studyId,
      state: s.state,
      currentRound: s.currentRound,
      manifestHash: s.manifestHash,
      title: d.title,
      /** Rounds the study needs closed, and those closed so far. */
      rounds: d.rounds,
      closedRounds: ctx.store.rounds(s.studyId, 'closed').length,
      /** Roster size (0 for a draft), and the roster sites joined with the current manifest (approved by their officer, not excluded). */
      rosterSites: d.participants?.length ?? 0,
      joinedSites: s.state === 'draft' ? 0 : activeJoined(ctx.store, s).length,
      createdAt: new Date(s.createdAtMs).toISOString(),
    };
  });
}

/** The manifest (with its hash) of a started study, or the draft of one not started yet. */
export function manifestOf(ctx: ViewContext, studyId: string): { manifest: StudyManifest | StudyDraft; manifestHash: string; draft: boolean } {
  const st = studyRow(ctx.store, studyId);
  return st.state === 'draft' ? { manifest: draftOfRow(st), manifestHash: '', draft: true } : { manifest: manifestOfRow(st), manifestHash: st.manifestHash, draft: false };
}

export function studyStatus(ctx: ViewContext, rounds: RoundQueries, studyId: string) {
  const st = studyRow(ctx.store, studyId);
  const draft = st.state === 'draft';
  const m = draft ? null : manifestOfRow(st);
  const d = draft ? draftOfRow(st) : m!;
  const rows = ctx.store.studySites(studyId);
  const joined = draft ? [] : activeJoined(ctx.store, st).map((r) => r.siteId);
  return {
    studyId,
    title: d.title,
    state: st.state,
    stopReason: st.stopReason,
    manifestHash: st.manifestHash,
    manifestVersion: m?.manifestVersion ?? 0,
    currentRound: st.currentRound,
    closedRounds: rounds.closedCount(studyId),
    rounds: d.rounds,
    participants: (m?.participants ?? []).map((p) => {
      const r = rows.find((x) => x.siteId === p.siteId);
      return {
        siteId: p.siteId,
        siteName: p.siteName,
        fingerprint: siteFingerprint(p.ed25519PublicKey, p.x25519PublicKey),
        joined: joined.includes(p.siteId),
        connected: ctx.online(p.siteId),
        excluded: r?.excluded ?? null,
        dpExhausted: r?.dpExhaustedAtMs != null,
        /** When the site last joined (with any manifest version); joined with the current one is `joined`. */
        joinedAt: r?.joinedAtMs == null ? null : new Date(r.joinedAtMs).toISOString(),
      };
    }),
    joined,
    keyEpoch: st.keyEpoch,
    keyDealer: st.keyDealer,
    roundSummaries: rounds.summaries(studyId).map((r) => roundSummary(ctx, r)),
    baselineMetrics: metricsOf(ctx, studyId, 0),
  };
}

export function roundStatus(ctx: ViewContext, studyId: string, round: number) {
  const r = ctx.store.round(studyId, round);
  if (!r) throw new WireError('TWF_E_NOT_FOUND', `study ${studyId} has no round ${round}`);
  return roundSummary(ctx, r);
}

export function roundSummary(ctx: ViewContext, r: RoundRow) {
  const participants = parseList(r.participantsJson);
  const survivors = parseList(r.survivorsJson);
  const completed = r.survivorsJson ? survivors : [];
  return {
    round: r.round,
    state: r.state,
    phase: r.state === 'open' ? r.phase : r.state,
    keyEpoch: r.keyEpoch,
    baseVersion: r.baseVersion,
    threshold: r.threshold,
    declined: ctx.store.declines(r.studyId, r.round).map((x) => ({ siteId: x.siteId, code: x.code, detail: x.detail })),
    keySet: parseList(r.keySetJson),
    survivors,
    failReason: r.failReason,
    openedAt: new Date(r.openedAtMs).toISOString(),
    closedAt: r.closedAtMs === null ? null : new Date(r.closedAtMs).toISOString(),
    deadlineAt: new Date(r.deadlineAtMs).toISOString(),
    participants,
    completed,
    stragglers: participants.filter((p) => !completed.includes(p)),
    /** Progress inside the round, per site: mask keys (secure-aggregation set-up) received, uploads under way and complete. */
    maskKeysFrom: ctx.store.roundSiteRows('maskSetups', r.studyId, r.round).map((x) => x.siteId),
    uploading: ctx.store.updates(r.studyId, r.round, 'receiving').map((x) => x.siteId),
    uploaded: ctx.store.updates(r.studyId, r.round, 'complete').map((x) => x.siteId),
    totalSamples: r.totalSamples,
    bytesIn: r.bytesIn,
    aggregateMs: r.aggregateMs,
    metrics: metricsOf(ctx, r.studyId, r.round),
  };
}

/** Per-site evaluation of the global model after `round` aggregates (0 = initial model). */
export function metricsOf(ctx: ViewContext, studyId: string, round: number) {
  return ctx.store.metrics(studyId, round).map((x) => ({ siteId: x.siteId, metrics: x.metrics, valPatients: x.valPatients, encryptMs: x.encryptMs, uploadBytes: x.uploadBytes }));
}

/** Refusals of a round's aggregate (for the lead). */
export function refusalsOf(ctx: ViewContext, studyId: string, round: number) {
  return ctx.store.refusals(studyId, round);
}
