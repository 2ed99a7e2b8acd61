import { and, eq } from 'drizzle-orm';
import type { DpConfig, StudyManifest } from '@twinfed/protocols';
import { RDP_ORDERS, dpStepsPerRound, epsilonFromRdp, rdpSubsampledGaussian } from '@twinfed/shared/dp/accountant';
import type { SiteConfig } from './config.js';
import type { SiteDb } from './db/index.js';
import { dpLedger } from './db/schema.js';

/**
 * The site's privacy ledger and the budget it enforces (docs/privacy.md).
 *
 * Rényi DP composes by adding RDP curves order by order (Mironov, "Rényi Differential Privacy",
 * CSF 2017, Prop. 1), whatever the mechanism or study; so the ledger stores each round's curve at
 * the accountant's orders, a dataset's spend is the sum of its rows, and epsilon is read off the sum
 * at a delta (Balle et al., AISTATS 2020). Two budgets are checked before a round trains:
 *  - the study's: the manifest's (epsilon, delta) for this study's rounds on this dataset;
 *  - the site's: site.json `privacy.maxEpsilon` at `privacy.delta` for all studies on the dataset.
 * A round that would exceed either is refused before any training (TWF_E_DP_BUDGET); the spend is
 * recorded when the update is made, before it can leave, so a crash can only over-count.
 */

export type PrivacyPolicy = SiteConfig['privacy'];
export const DEFAULT_PRIVACY_POLICY: PrivacyPolicy = { maxEpsilon: 10, delta: 1e-5, requireDp: false };

/** Which of the site's data a study trains on: rounds on the same dataset share the site's budget. */
export function datasetKeyOf(m: StudyManifest): string {
  return m.task === 'segmentation' ? `segmentation:${m.data.modality}` : `${m.task}:${m.data.source}`;
}

/** Compositions of one round and the per-step mechanism, from the manifest's dp section. */
export function roundMechanism(m: StudyManifest): { dp: DpConfig; steps: number; samplingRate: number; noiseMultiplier: number } | null {
  const dp = m.dp;
  if (!dp) return null;
  if (dp.noiseMultiplier === undefined) throw new Error(`study ${m.studyId}: the manifest's dp section has no noiseMultiplier (the coordinator derives it at creation)`);
  if (dp.level === 'patient') return { dp, steps: dpStepsPerRound(m.training.epochsPerRound, dp.samplingRate), samplingRate: dp.samplingRate, noiseMultiplier: dp.noiseMultiplier };
  return { dp, steps: 1, samplingRate: 1, noiseMultiplier: dp.noiseMultiplier };
}

/** RDP curve (at RDP_ORDERS) of `steps` compositions of the subsampled Gaussian. */
function rdpOf(samplingRate: number, noiseMultiplier: number, steps: number): Float64Array {
  const one = rdpSubsampledGaussian(samplingRate, noiseMultiplier);
  return one.map((v) => v * steps);
}

function add(into: Float64Array, v: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] += v[i];
}

const fromBlob = (b: Buffer) => new Float64Array(new Uint8Array(b).buffer.slice(0));

function sumRows(db: SiteDb, datasetKey: string, studyId?: string): Float64Array {
  const rows = db
    .select({ rdp: dpLedger.rdp })
    .from(dpLedger)
    .where(studyId ? and(eq(dpLedger.datasetKey, datasetKey), eq(dpLedger.studyId, studyId)) : eq(dpLedger.datasetKey, datasetKey))
    .all();
  const total = new Float64Array(RDP_ORDERS.length);
  for (const r of rows) add(total, fromBlob(r.rdp));
  return total;
}

const eps = (rdp: Float64Array, delta: number) => (rdp.some((v) => v > 0) ? epsilonFromRdp(rdp, delta).epsilon : 0);

export interface BudgetView {
  datasetKey: string;
  /** Epsilon this study has spent on the dataset, at the manifest's delta (0 without DP). */
  studySpent: number;
  /** Epsilon all studies have spent on the dataset, at the site's delta. */
  datasetSpent: number;
  /** After one more round of this study (null when the study has no DP). */
  studyAfterRound: number | null;
  datasetAfterRound: number | null;
  /** The whole study, every round, on its own (null without DP). */
  projectedStudy: number | null;
  /** The dataset's spend if the whole study runs, at the site's delta (null without DP). */
  projectedDataset: number | null;
  /** Why the next round must be refused; null when it may run. */
  refusal: string | null;
}

/** What the ledger says about this study on this site, and whether its next round may train. */
export function budgetView(db: SiteDb, m: StudyManifest, policy: PrivacyPolicy): BudgetView {
  const datasetKey = datasetKeyOf(m);
  const study = sumRows(db, datasetKey, m.studyId);
  const dataset = sumRows(db, datasetKey);
  const mech = roundMechanism(m);
  const base = { datasetKey, studySpent: m.dp ? eps(study, m.dp.delta) : 0, datasetSpent: eps(dataset, policy.delta) };
  if (!mech) {
    return {
      ...base,
      studyAfterRound: null,
      datasetAfterRound: null,
      projectedStudy: null,
      projectedDataset: null,
      refusal: policy.requireDp ? `this site's policy (site.json privacy.requireDp) admits only studies with differential privacy; study ${m.studyId} has none` : null,
    };
  }
  const round = rdpOf(mech.samplingRate, mech.noiseMultiplier, mech.steps);
  const whole = rdpOf(mech.samplingRate, mech.noiseMultiplier, mech.steps * m.rounds);
  const studyNext = Float64Array.from(study);
  add(studyNext, round);
  const datasetNext = Float64Array.from(dataset);
  add(datasetNext, round);
  const datasetWhole = Float64Array.from(dataset);
  add(datasetWhole, whole);
  const studyAfterRound = eps(studyNext, mech.dp.delta);
  const datasetAfterRound = eps(datasetNext, policy.delta);
  // A relative slack of 1e-9 so a budget met exactly (sigma derived from it) is not refused by rounding.
  const over = (a: number, b: number) => a > b * (1 + 1e-9);
  let refusal: string | null = null;
  if (over(studyAfterRound, mech.dp.epsilon))
    refusal = `this round would take the study's epsilon on ${datasetKey} to ${studyAfterRound.toFixed(3)} (delta ${mech.dp.delta}), above the manifest's ${mech.dp.epsilon}`;
  else if (over(datasetAfterRound, policy.maxEpsilon))
    refusal = `this round would take the epsilon of all studies on ${datasetKey} to ${datasetAfterRound.toFixed(3)} (delta ${policy.delta}), above this site's privacy.maxEpsilon ${policy.maxEpsilon}`;
  return { ...base, studyAfterRound, datasetAfterRound, projectedStudy: eps(whole, mech.dp.delta), projectedDataset: eps(datasetWhole, policy.delta), refusal };
}

/**
 * Records the spend of one round (idempotent per study, round and dataset). `taken` is what the
 * trainer reports (DP-SGD steps actually run); without it, the manifest's round is recorded.
 */
export function recordRound(
  db: SiteDb,
  m: StudyManifest,
  round: number,
  policy: PrivacyPolicy,
  taken?: { steps: number; samplingRate: number; noiseMultiplier: number },
): { epsilonStudy: number; epsilonDataset: number } | null {
  const mech = roundMechanism(m);
  if (!mech) return null;
  const used = taken ?? mech;
  const datasetKey = datasetKeyOf(m);
  const rdp = rdpOf(used.samplingRate, used.noiseMultiplier, used.steps);
  return db.transaction((tx) => {
    const had = tx
      .select({ id: dpLedger.id, s: dpLedger.epsilonStudy, d: dpLedger.epsilonDataset })
      .from(dpLedger)
      .where(and(eq(dpLedger.studyId, m.studyId), eq(dpLedger.round, round), eq(dpLedger.datasetKey, datasetKey)))
      .get();
    if (had) return { epsilonStudy: had.s, epsilonDataset: had.d };
    const study = sumRows(tx as unknown as SiteDb, datasetKey, m.studyId);
    add(study, rdp);
    const dataset = sumRows(tx as unknown as SiteDb, datasetKey);
    add(dataset, rdp);
    const out = { epsilonStudy: eps(study, mech.dp.delta), epsilonDataset: eps(dataset, policy.delta) };
    tx.insert(dpLedger)
      .values({
        datasetKey,
        studyId: m.studyId,
        round,
        level: mech.dp.level,
        steps: used.steps,
        samplingRate: used.samplingRate,
        noiseMultiplier: used.noiseMultiplier,
        rdp: Buffer.from(rdp.buffer),
        epsilonStudy: out.epsilonStudy,
        epsilonDataset: out.epsilonDataset,
        deltaDataset: policy.delta,
        recordedAtMs: Date.now(),
      })
      .run();
    return out;
  });
}

/**
 * Rounds the site's audit log records as spent (dp.spent, written after the ledger row, in the
 * signed hash-chained log) that the ledger no longer holds: the ledger was edited to win budget
 * back. The budget check refuses DP rounds while there are any; rewriting the audit log as well
 * breaks its chain (twinfed audit verify) or its agreement with the coordinator's (audit compare).
 */
export function ledgerGaps(db: SiteDb): { studyId: string; round: number }[] {
  return db.$client
    .prepare(
      "select distinct a.study_id as studyId, a.round as round from audit_log a where a.action = 'dp.spent' and not exists (select 1 from dp_ledger l where l.study_id = a.study_id and l.round = a.round) order by a.id",
    )
    .all() as { studyId: string; round: number }[];
}

/** Lines for the officer's view of a manifest (`twinfed site studies --show`). */
export function formatBudget(v: BudgetView, m: StudyManifest, policy: PrivacyPolicy): string[] {
  if (!m.dp) {
    return [
      `  differential privacy: none in this manifest (each update is only clipped to ±${m.training.clipBound} and aggregated under encryption)${policy.requireDp ? '; this site requires DP and will refuse its rounds' : ''}`,
    ];
  }
  const dp = m.dp;
  const mech = roundMechanism(m)!;
  const unit =
    dp.level === 'patient'
      ? `patient-level DP-SGD: each step samples patients with rate ${dp.samplingRate}, clips each patient's gradient to L2 ${dp.clipNorm}, adds Gaussian noise sigma ${dp.noiseMultiplier} x ${dp.clipNorm}; ${mech.steps} steps per round`
      : `site-level distributed discrete Gaussian: the whole update clipped to L2 ${dp.clipNorm}, noise sigma ${dp.noiseMultiplier} x ${dp.clipNorm} over the sum; one composition per round`;
  return [
    `  differential privacy: ${unit}`,
    `                  budget of this study (epsilon, delta) = (${dp.epsilon}, ${dp.delta}); projected for all ${m.rounds} rounds: epsilon ${v.projectedStudy!.toFixed(3)}`,
    `                  this site's data ${v.datasetKey}: spent epsilon ${v.datasetSpent.toFixed(3)} of its maxEpsilon ${policy.maxEpsilon} (delta ${policy.delta}); after this study: ${v.projectedDataset!.toFixed(3)}${v.projectedDataset! > policy.maxEpsilon ? ' -> the site will refuse the rounds beyond its budget' : ''}`,
  ];
}
