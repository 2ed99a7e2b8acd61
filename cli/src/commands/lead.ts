import type { LeadClient } from '../http.js';
import { printable } from './text.js';

/** One study as GET /api/studies lists it. */
export interface StudyListing {
  studyId: string;
  title: string;
  state: string;
  currentRound: number;
  manifestHash: string;
  rounds: number;
  closedRounds: number;
  rosterSites: number;
  joinedSites: number;
  createdAt: string;
}

export async function listStudies(client: LeadClient): Promise<StudyListing[]> {
  return client.call<StudyListing[]>('GET', '/api/studies');
}

export function formatStudies(rows: readonly StudyListing[]): string {
  if (!rows.length) return 'no studies yet (create one: twinfed lead create-study SPEC.json; examples in examples/specs/)';
  const table = [
    ['STUDY', 'STATE', 'ROUNDS', 'SITES', 'CREATED', 'TITLE'],
    ...rows.map((s) => [s.studyId, s.state, `${s.closedRounds}/${s.rounds}`, s.state === 'draft' ? '-' : `${s.joinedSites}/${s.rosterSites}`, s.createdAt.slice(0, 19).replace('T', ' '), s.title]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return printable(
    [
      ...table.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')),
      'ROUNDS: closed/needed; SITES: joined with the current manifest (approved by their officer) / roster',
    ].join('\n'),
  );
}

/** GET /api/studies/:id, the fields this view reads. */
export interface StudyStatusWire {
  studyId: string;
  title: string;
  state: string;
  stopReason: string | null;
  manifestHash: string;
  manifestVersion: number;
  currentRound: number;
  closedRounds: number;
  rounds: number;
  keyEpoch: number;
  participants: { siteId: string; siteName: string; fingerprint: string; joined: boolean; connected: boolean; excluded: string | null; dpExhausted: boolean }[];
  roundSummaries: {
    round: number;
    state: string;
    phase: string;
    keySet: string[];
    survivors: string[];
    participants: string[];
    declined: { siteId: string; code: string }[];
    maskKeysFrom?: string[];
    uploading?: string[];
    uploaded?: string[];
    failReason: string | null;
    openedAt: string;
    closedAt: string | null;
    deadlineAt: string;
  }[];
}

/** Where a site is in the open round. */
export type RoundProgress = 'not asked' | 'training' | 'keyed' | 'uploading' | 'uploaded' | 'dropped' | 'declined';

export interface SiteLine {
  siteId: string;
  siteName: string;
  fingerprint: string;
  connected: boolean;
  /** Joined with the current manifest, which a site does only after its officer approved it. */
  joined: boolean;
  /** true: joined (so approved); false: online and not joined (its officer has not approved this manifest version); null: offline, cannot tell. */
  approved: boolean | null;
  excluded: string | null;
  /** In the open round; null when no round is open or the site is excluded. */
  round: RoundProgress | null;
  declinedCode?: string;
}

export interface LeadStatusView {
  studyId: string;
  title: string;
  state: string;
  stopReason: string | null;
  manifestVersion: number;
  manifestHash: string;
  keyEpoch: number;
  /** Round in progress (or the last one), of `rounds`; closed so far. */
  currentRound: number;
  rounds: number;
  closedRounds: number;
  openRound: { round: number; phase: string; openedAt: string; deadlineAt: string } | null;
  /** Seconds until the study is expected to complete, from the mean duration of its closed rounds; null without a closed round or when not running. */
  etaS: number | null;
  /** Mean seconds of a closed round (the ETA's basis); null without one. */
  meanRoundS: number | null;
  sites: SiteLine[];
  /** Site names whose officer has not approved the current manifest (not joined, not excluded); offline ones marked. */
  notApproved: { siteName: string; siteId: string; online: boolean }[];
  history: { round: number; state: string; contributors: string[]; dropped: string[]; durationS: number | null; failReason: string | null }[];
}

/** The lead's view of a study status: site names, per-site progress in the open round, who has not approved, an ETA. */
export function leadStatusView(s: StudyStatusWire, nowMs = Date.now()): LeadStatusView {
  const name = (id: string) => s.participants.find((p) => p.siteId === id)?.siteName ?? id;
  const open = s.roundSummaries.find((r) => r.state === 'open') ?? null;
  const sites: SiteLine[] = s.participants.map((p) => {
    let round: RoundProgress | null = null;
    let declinedCode: string | undefined;
    if (open && !p.excluded) {
      const declined = open.declined.find((d) => d.siteId === p.siteId);
      if (declined) [round, declinedCode] = ['declined', declined.code];
      else if (!open.participants.includes(p.siteId)) round = 'not asked';
      else if (open.uploaded?.includes(p.siteId)) round = 'uploaded';
      else if (open.uploading?.includes(p.siteId)) round = 'uploading';
      else if (open.keySet.length && !open.keySet.includes(p.siteId)) round = 'dropped';
      else if (open.maskKeysFrom?.includes(p.siteId) || open.keySet.includes(p.siteId)) round = 'keyed';
      else round = 'training';
    }
    return {
      siteId: p.siteId,
      siteName: p.siteName,
      fingerprint: p.fingerprint,
      connected: p.connected,
      joined: p.joined,
      approved: p.joined ? true : p.connected ? false : null,
      excluded: p.excluded,
      round,
      ...(declinedCode ? { declinedCode } : {}),
    };
  });
  const durations = s.roundSummaries.filter((r) => r.state === 'closed' && r.closedAt).map((r) => (Date.parse(r.closedAt!) - Date.parse(r.openedAt)) / 1000);
  const meanRoundS = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : null;
  const left = Math.max(0, s.rounds - s.closedRounds);
  const elapsedOpenS = open ? Math.max(0, (nowMs - Date.parse(open.openedAt)) / 1000) : 0;
  const etaS = s.state === 'running' && meanRoundS !== null ? Math.max(0, Math.round(left * meanRoundS - Math.min(elapsedOpenS, meanRoundS))) : s.state === 'completed' ? 0 : null;
  return {
    studyId: s.studyId,
    title: s.title,
    state: s.state,
    stopReason: s.stopReason,
    manifestVersion: s.manifestVersion,
    manifestHash: s.manifestHash,
    keyEpoch: s.keyEpoch,
    currentRound: s.currentRound,
    rounds: s.rounds,
    closedRounds: s.closedRounds,
    openRound: open ? { round: open.round, phase: open.phase, openedAt: open.openedAt, deadlineAt: open.deadlineAt } : null,
    etaS,
    meanRoundS: meanRoundS === null ? null : Math.round(meanRoundS * 10) / 10,
    sites,
    notApproved: sites.filter((x) => !x.joined && !x.excluded).map((x) => ({ siteName: x.siteName, siteId: x.siteId, online: x.connected })),
    history: s.roundSummaries.map((r) => ({
      round: r.round,
      state: r.state,
      contributors: r.survivors.map(name),
      dropped: r.keySet.filter((k) => !r.survivors.includes(k)).map(name),
      durationS: r.closedAt ? Math.round((Date.parse(r.closedAt) - Date.parse(r.openedAt)) / 100) / 10 : null,
      failReason: r.failReason,
    })),
  };
}

const duration = (s: number) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

export function formatLeadStatus(v: LeadStatusView): string {
  const w = Math.max(4, ...v.sites.map((x) => x.siteName.length));
  const lines = [
    `${v.studyId} "${v.title}": ${v.state}${v.stopReason ? ` (${v.stopReason})` : ''}; ${v.closedRounds}/${v.rounds} rounds closed${v.openRound ? `, round ${v.openRound.round} open (${v.openRound.phase}, deadline ${v.openRound.deadlineAt})` : ''}`,
    v.state === 'draft' ? '  draft: no roster yet; start it with twinfed lead start ' + v.studyId : `  manifest version ${v.manifestVersion} ${v.manifestHash}; key epoch ${v.keyEpoch}`,
    `  ETA: ${v.etaS === null ? (v.state === 'running' ? 'after the first round closes' : '-') : v.etaS === 0 ? 'done' : `about ${duration(v.etaS)} (${v.rounds - v.closedRounds} rounds left, ${duration(v.meanRoundS!)} per round so far)`}`,
  ];
  if (v.sites.length) {
    lines.push(`  ${'SITE'.padEnd(w)}  ${'LINK'.padEnd(7)}  ${'APPROVAL'.padEnd(22)}  ROUND ${v.openRound?.round ?? '-'}`);
    for (const x of v.sites) {
      const approval = x.excluded ? `excluded (${x.excluded})` : x.approved ? 'approved, joined' : x.approved === false ? 'NOT APPROVED yet' : 'unknown (offline)';
      lines.push(
        `  ${x.siteName.padEnd(w)}  ${(x.connected ? 'online' : 'offline').padEnd(7)}  ${approval.padEnd(22)}  ${x.round === null ? '-' : x.round}${x.declinedCode ? ` ${x.declinedCode}` : ''}`,
      );
    }
  }
  if (v.notApproved.length) lines.push(`  not approved yet: ${v.notApproved.map((n) => `${n.siteName}${n.online ? '' : ' (offline)'}`).join(', ')}`);
  for (const h of v.history)
    lines.push(
      `  round ${h.round} ${h.state}${h.durationS !== null ? ` in ${duration(h.durationS)}` : ''}: contributors ${h.contributors.join(', ') || '-'}; dropped ${h.dropped.join(', ') || '-'}${h.failReason ? `; ${h.failReason}` : ''}`,
    );
  return printable(lines.join('\n'));
}

export async function leadStatus(client: LeadClient, studyId: string): Promise<LeadStatusView> {
  return leadStatusView(await client.call<StudyStatusWire>('GET', `/api/studies/${encodeURIComponent(studyId)}`));
}

const FINAL = new Set(['completed', 'stopped']);

/**
 * Redraws the status every `everyMs` until the study completes or stops (or Ctrl-C). Text: the
 * screen is redrawn on a terminal, a block printed per change otherwise; JSON: one line per change
 * (the ETA's countdown alone is no change).
 */
export async function watchStatus(client: LeadClient, studyId: string, o: { json: boolean; everyMs?: number; write?: (s: string) => void; tty?: boolean }): Promise<LeadStatusView> {
  const write = o.write ?? ((s: string) => process.stdout.write(s));
  const tty = o.tty ?? process.stdout.isTTY === true;
  let last = '';
  for (;;) {
    const v = await leadStatus(client, studyId);
    const key = JSON.stringify({ ...v, etaS: null });
    if (o.json) {
      if (key !== last) write(`${JSON.stringify(v)}\n`);
    } else if (tty) write(`\x1b[2J\x1b[H${formatLeadStatus(v)}\n(every ${(o.everyMs ?? 2000) / 1000} s; Ctrl-C to stop watching)\n`);
    else if (key !== last) write(`${new Date().toISOString()}\n${formatLeadStatus(v)}\n`);
    last = key;
    if (FINAL.has(v.state)) return v;
    await new Promise((r) => setTimeout(r, o.everyMs ?? 2000));
  }
}

export async function deleteDraft(client: LeadClient, studyId: string): Promise<{ studyId: string; deleted: true; title: string }> {
  return client.call('DELETE', `/api/studies/${encodeURIComponent(studyId)}`);
}
