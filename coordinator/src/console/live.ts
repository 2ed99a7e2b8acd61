import type { StudyDraft, StudyManifest } from '@twinfed/protocols';
import { dpStepsPerRound, epsilonFor } from '@twinfed/shared/dp/accountant';
import { facts, html, table, type SafeHtml } from '@twinfed/shared/web/index';
import { parseList } from '../context.js';
import type { RoundRow } from '../store/index.js';
import { badge, bytes, duration, iso, type ConsoleDeps } from './common.js';

/**
 * The live part of a study page (/studies/:id/live): re-fetched by console.js on every pushed
 * event. Everything here is read from the coordinator's own store: it never sees a model, a
 * gradient or a patient, only the round bookkeeping, byte counts, times and the metrics each site
 * chose to report.
 */

export type SiteState = 'invited' | 'joined' | 'keyed' | 'training' | 'ready' | 'uploading' | 'uploaded' | 'done' | 'dropped' | 'evicted' | 'withdrawn' | 'revoked' | 'removed' | 'budget spent';

export interface SiteView {
  siteId: string;
  siteName: string;
  fingerprint: string;
  connected: boolean;
  state: SiteState;
  /** Chunks received / expected of the open round's update, with bytes so far. */
  upload: { received: number; count: number; bytes: number } | null;
  /** From the site's latest metrics report. */
  encryptMs: number | null;
  trainMs: number | null;
  uploadBytes: number | null;
  /** Closed rounds whose aggregate included this site's update. */
  roundsAggregated: number;
  /** ε this study has spent on the site's data by the manifest's DP parameters, or null without DP. */
  epsilonSpent: number | null;
}

const closed = (r: RoundRow) => r.state === 'closed' || r.state === 'refused';

/** Per-site state derived from what the store knows: roster row, key delivery, the open round's set-up and update. */
export function siteViews(deps: ConsoleDeps, studyId: string): SiteView[] {
  const { engine, store } = deps;
  const st = store.study(studyId);
  if (!st || st.state === 'draft') return [];
  const status = engine.studyStatus(studyId);
  const m = JSON.parse(st.manifestJson) as StudyManifest;
  const rounds = store.rounds(studyId);
  const open = rounds.find((r) => r.state === 'open' && r.round === st.currentRound) ?? null;
  const last = [...rounds].reverse().find(closed) ?? null;
  const epoch = store.latestEpoch(studyId);
  return status.participants.map((p) => {
    let state: SiteState = p.joined ? 'joined' : 'invited';
    if (p.joined && epoch && store.sealedKeys(studyId, epoch.epoch, { siteId: p.siteId }).some((k) => k.deliveredAtMs !== null)) state = 'keyed';
    let upload: SiteView['upload'] = null;
    if (open && parseList(open.participantsJson).includes(p.siteId)) {
      const declined = store.declines(studyId, open.round).some((d) => d.siteId === p.siteId);
      const setup = store.roundSiteRow('maskSetups', studyId, open.round, p.siteId);
      const u = store.update(studyId, open.round, p.siteId);
      const keySet = parseList(open.keySetJson);
      if (declined || (open.phase !== 'setup' && !keySet.includes(p.siteId))) state = 'dropped';
      else if (u) {
        upload = { received: u.received, count: u.count, bytes: u.bytes };
        state = u.state === 'complete' ? 'uploaded' : u.state === 'abandoned' ? 'dropped' : 'uploading';
      } else if (open.phase === 'setup') state = setup ? 'ready' : 'training';
      else if (open.phase === 'upload') state = 'uploading';
      else state = parseList(open.survivorsJson).includes(p.siteId) ? 'uploaded' : 'dropped';
    } else if (!open && last && parseList(last.survivorsJson).includes(p.siteId) && p.joined) state = 'done';
    if (p.dpExhausted) state = 'budget spent';
    if (p.excluded) state = p.excluded;
    const aggregated = rounds.filter((r) => closed(r) && parseList(r.survivorsJson).includes(p.siteId)).length;
    const lastReport = [...rounds]
      .reverse()
      .map((r) => store.metrics(studyId, r.round).find((x) => x.siteId === p.siteId))
      .find((x) => x !== undefined);
    return {
      siteId: p.siteId,
      siteName: p.siteName,
      fingerprint: p.fingerprint,
      connected: p.connected,
      state,
      upload,
      encryptMs: lastReport?.encryptMs ?? null,
      trainMs: lastReport?.trainMs ?? null,
      uploadBytes: lastReport?.uploadBytes ?? null,
      roundsAggregated: aggregated,
      epsilonSpent: m.dp ? epsilonSpent(m, aggregated) : null,
    };
  });
}

/** ε after `rounds` aggregated rounds, by the same accountant the sites use, with the manifest's σ. */
export function epsilonSpent(m: Pick<StudyManifest, 'dp' | 'training'>, rounds: number): number | null {
  const dp = m.dp;
  if (!dp || dp.noiseMultiplier === undefined) return null;
  if (rounds === 0) return 0;
  const samplingRate = dp.level === 'patient' ? dp.samplingRate : 1;
  const steps = dp.level === 'patient' ? rounds * dpStepsPerRound(m.training.epochsPerRound, samplingRate) : rounds;
  return epsilonFor({ samplingRate, noiseMultiplier: dp.noiseMultiplier, steps, delta: dp.delta }).epsilon;
}

/** Estimated time to completion: mean duration of the closed rounds × rounds still to close, less the open round's elapsed time. */
export function etaMs(rounds: RoundRow[], planned: number, nowMs: number): number | null {
  const done = rounds.filter((r) => closed(r) && r.closedAtMs !== null);
  if (!done.length) return null;
  const mean = done.reduce((a, r) => a + (r.closedAtMs! - r.openedAtMs), 0) / done.length;
  const left = planned - rounds.filter((r) => r.state === 'closed').length;
  if (left <= 0) return 0;
  const open = rounds.find((r) => r.state === 'open');
  return Math.max(0, left * mean - (open ? nowMs - open.openedAtMs : 0));
}

/** The first metric name the sites report (meanDice, macroAucOvr, ...), for the chart and the rounds table. */
function metricName(deps: ConsoleDeps, studyId: string, rounds: RoundRow[]): string | null {
  for (const r of [{ round: 0 }, ...rounds]) {
    const x = deps.store.metrics(studyId, r.round)[0]?.metrics.find((v) => v.value !== null);
    if (x) return x.name;
  }
  return null;
}

/** Mean of the metric over the sites' reports after `round`, weighted by their validation patients. */
function weightedMetric(deps: ConsoleDeps, studyId: string, round: number, name: string): number | null {
  let sum = 0;
  let w = 0;
  for (const x of deps.store.metrics(studyId, round)) {
    const v = x.metrics.find((mv) => mv.name === name)?.value;
    if (v === null || v === undefined) continue;
    const n = Math.max(1, x.valPatients);
    sum += v * n;
    w += n;
  }
  return w ? sum / w : null;
}

/** Chart data for console.js (data-chart): the metric per round, weighted mean and one series per site. */
export function metricChart(deps: ConsoleDeps, studyId: string) {
  const rounds = deps.store.rounds(studyId).filter((r) => r.state === 'closed');
  const name = metricName(deps, studyId, rounds);
  const x = [0, ...rounds.map((r) => r.round)];
  if (!name) return { x: [], xLabel: 'round', yLabel: 'metric', series: [] };
  const sites = [...new Set(x.flatMap((r) => deps.store.metrics(studyId, r).map((m) => m.siteId)))];
  return {
    x,
    xLabel: 'round (0 = initial model)',
    yLabel: `${name} (held-out patients)`,
    series: [
      { label: `${name}, weighted mean`, values: x.map((r) => weightedMetric(deps, studyId, r, name)) },
      ...sites.map((s) => ({
        label: s,
        points: true,
        values: x.map(
          (r) =>
            deps.store
              .metrics(studyId, r)
              .find((m) => m.siteId === s)
              ?.metrics.find((v) => v.name === name)?.value ?? null,
        ),
      })),
    ],
  };
}

export function liveFragment(deps: ConsoleDeps, studyId: string): SafeHtml {
  const now = (deps.now ?? Date.now)();
  const st = deps.engine.studyStatus(studyId);
  const manifest = deps.engine.manifestOf(studyId).manifest as StudyDraft | StudyManifest;
  const rounds = deps.store.rounds(studyId);
  const open = rounds.find((r) => r.state === 'open') ?? null;
  const eta = st.state === 'running' ? etaMs(rounds, st.rounds, now) : null;
  const name = metricName(deps, studyId, rounds);
  const sites = siteViews(deps, studyId);
  const dp = manifest.dp;
  const summary = facts([
    ['State', html`${badge(st.state)}${st.stopReason ? ` — ${st.stopReason}` : ''}`],
    ['Open round', open ? html`${open.round} — ${badge(open.phase)} since ${iso(open.openedAtMs)}, deadline ${iso(open.phaseDeadlineAtMs ?? open.deadlineAtMs)}` : 'none'],
    ['Rounds closed', `${st.closedRounds} of ${st.rounds}`],
    ['Estimated time left', st.state === 'completed' ? 'done' : eta === null ? 'after the first round closes' : `${duration(eta)} (mean of the closed rounds' durations)`],
    ['Key epoch', st.keyEpoch ? `${st.keyEpoch}${st.keyDealer ? `, dealt by ${st.keyDealer}` : ''}` : 'none yet'],
    ['As of', iso(now)],
  ]);
  const siteRows = sites.map((s) => [
    html`${s.siteName}<br /><code>${s.siteId}</code>`,
    html`<code>${s.fingerprint}</code>`,
    s.connected ? badge('connected') : badge('offline'),
    badge(s.state),
    s.upload ? `${s.upload.received}/${s.upload.count} chunks, ${bytes(s.upload.bytes)}` : bytes(s.uploadBytes),
    duration(s.trainMs),
    duration(s.encryptMs),
    String(s.roundsAggregated),
    ...(dp ? [s.epsilonSpent === null ? '—' : `${s.epsilonSpent.toFixed(3)} of ${dp.epsilon}`] : []),
  ]);
  const roundRows = [...rounds].reverse().map((r) => {
    const participants = parseList(r.participantsJson);
    const survivors = parseList(r.survivorsJson);
    const metric = name && closed(r) ? weightedMetric(deps, studyId, r.round, name) : null;
    return [
      String(r.round),
      badge(r.state === 'open' ? r.phase : r.state),
      iso(r.openedAtMs),
      r.closedAtMs === null ? `${duration(now - r.openedAtMs)} so far` : duration(r.closedAtMs - r.openedAtMs),
      `${survivors.length || '—'} of ${participants.length}`,
      bytes(r.bytesIn),
      duration(r.aggregateMs || null),
      metric === null ? '—' : metric.toFixed(4),
      r.failReason ?? '',
    ];
  });
  return html`${summary}
    ${
      st.state === 'draft'
        ? html`<p class="empty">Draft: no roster, no rounds until the lead starts the study.</p>`
        : table(
            'Sites in this study',
            ['Site', 'Key fingerprint', 'Connection', 'State', 'Upload (this round / last report)', 'Train time', 'Encrypt time', 'Rounds aggregated', ...(dp ? ['ε spent (this study)'] : [])],
            siteRows,
            {
              id: 'study-sites',
              empty: 'No participants.',
            },
          )
    }
    ${dp ? html`<p class="note">ε spent is computed by the coordinator from the manifest (σ ${dp.noiseMultiplier ?? '—'}, δ ${dp.delta}${dp.level === 'patient' ? `, sampling rate ${dp.samplingRate}` : ''}) and the rounds whose aggregate included the site's update. Each site's own accountant is authoritative: it also counts rounds whose update did not survive and other studies on the same data. "budget spent" means the site declined a round for its budget.</p>` : null}
    <h3>Rounds</h3>
    ${table('Rounds, newest first', ['Round', 'State', 'Opened', 'Duration', 'Contributors', 'Bytes in', 'Aggregate time', name ? `${name} (weighted mean)` : 'Metric', 'Failure'], roundRows, { id: 'rounds', empty: 'No round has opened yet.' })}
    <h3>${name ?? 'Metric'} per round</h3>
    ${name ? html`<div class="chart" data-chart="/studies/${studyId}/chart.json" role="img" aria-label="${name} per round: weighted mean and each site"></div>` : html`<p class="empty">No metrics reported yet.</p>`}`;
}
