import { and, asc, desc, eq, isNull } from 'drizzle-orm';
import type { AuditLog } from '@twinfed/shared/audit/index';
import {
  MODEL_NAMES,
  bandScore,
  conformalFactor,
  fitModels,
  forecastWithBand,
  getModel,
  killRateIdentifiable,
  parameterSummary,
  priorFromStats,
  sufficientStats,
  type Fit,
  type ForecastBand,
  type GaussianPrior,
  type ModelName,
  type Schedule,
  widenBand,
} from '@twinfed/shared/twin/index';
import type { SiteDb } from '../db/index.js';
import { federatedGaussianPrior } from './prior-store.js';
import { forecasts, imagingSeries, lesions, masks, measurements, radiomicsFeatures, timepoints, treatments, twinFits, twinPatients } from '../db/schema.js';

/** The radiomics features shown in headline (`site twin show`, the clinician's twin page): size, shape, intensity, texture; all are stored. */
export const RADIOMICS_HEADLINE = ['morph_volume', 'morph_sphericity', 'morph_diam', 'stat_mean', 'stat_max', 'ih_entropy', 'cm_contrast_3D_comb', 'szm_zs_entr_3D'] as const;

/** Days after the last observation at which the twin records a forecast. */
export const FORECAST_HORIZON_DAYS = [30, 60, 90];
/** Below this many measurements a patient is fitted with the site's population prior (MAP). */
export const PRIOR_BELOW_POINTS = 4;

/**
 * Below this many completed follow-ups (forecasts scored against a later measurement, all patients
 * of the site) the twin shows its model band, with a note, instead of the calibrated band.
 */
export const MIN_CALIBRATION_FOLLOWUPS = 10;

/**
 * How the 90 % band shown by `twin show`, `simulate` and the console is calibrated. Split-conformal
 * (Vovk et al. 2005; Lei et al., JASA 2018): the band scores (bandScore, diameter scale) of this
 * site's completed follow-ups give a factor by which every model band is widened (or narrowed)
 * around its median, so that a new forecast is covered with probability ≥ 90 % if forecasts are
 * exchangeable. The stored forecasts keep the model band, which is what the scores refer to.
 */
export interface BandCalibration {
  /** Completed follow-ups (scored forecasts) at this site. */
  n: number;
  /** The conformal factor (1 when not applied). */
  factor: number;
  applied: boolean;
  /** One line for people: what the shown band is. */
  note: string;
}

// JSON has no Infinity (ongoing therapy has stopDay = Infinity).
const replacer = (_k: string, v: unknown) => (v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v);
const reviver = (_k: string, v: unknown) => (v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v);

export function serialiseFit(f: Fit): string {
  const { model: _model, ...rest } = f;
  return JSON.stringify(rest, replacer);
}

export function restoreFit(modelName: string, json: string): Fit {
  return { ...(JSON.parse(json, reviver) as Omit<Fit, 'model'>), model: getModel(modelName as ModelName) };
}

export interface RefitResult {
  patientId: string;
  points: number;
  selected: ModelName | null;
  method: 'wls' | 'map' | null;
  /** Forecasts of the previous fit scored against measurements that arrived since. */
  scored: { day: number; predictedMm3: number; observedMm3: number; absErrorNorm: number; inside90: boolean }[];
  reason?: string;
}

/**
 * The patient's twin at this site: a growth model calibrated to the
 * patient's measurements (refitted whenever new ones arrive), the forecasts
 * it made and how they scored, and what-if simulations. State lives in the
 * site database; the maths is in @twinfed/shared/twin.
 */
export class TwinService {
  constructor(
    private readonly db: SiteDb,
    private readonly audit: AuditLog,
  ) {}

  /** Measurements of the patient's primary lesion (the one measured most often), one value per day. */
  observations(patientId: string): { lesion: string | null; days: number[]; volumesMm3: number[] } {
    const rows = this.db.select().from(measurements).where(eq(measurements.patientId, patientId)).orderBy(asc(measurements.day)).all();
    if (rows.length === 0) return { lesion: null, days: [], volumesMm3: [] };
    const byLesion = new Map<number, typeof rows>();
    for (const r of rows) byLesion.set(r.lesionId, [...(byLesion.get(r.lesionId) ?? []), r]);
    const [lesionId, list] = [...byLesion.entries()].sort((a, b) => b[1].length - a[1].length)[0];
    const byDay = new Map<number, number[]>();
    for (const r of list) byDay.set(r.day, [...(byDay.get(r.day) ?? []), r.volumeMm3]);
    const days = [...byDay.keys()].sort((a, b) => a - b);
    const lesion = this.db.select().from(lesions).where(eq(lesions.id, lesionId)).get();
    return { lesion: lesion?.name ?? null, days, volumesMm3: days.map((d) => byDay.get(d)!.reduce((a, b) => a + b, 0) / byDay.get(d)!.length) };
  }

  /** The patient's treatments as a schedule for the growth models. */
  schedule(patientId: string): Schedule | undefined {
    const rows = this.db.select().from(treatments).where(eq(treatments.patientId, patientId)).all();
    if (rows.length === 0) return undefined;
    return {
      radiotherapy: rows
        .filter((r) => r.kind === 'radiotherapy' && r.fractions && r.doseGyPerFraction)
        .map((r) => ({ dayStart: r.startDay, fractions: r.fractions!, doseGyPerFraction: r.doseGyPerFraction! })),
      systemic: rows.filter((r) => r.kind === 'systemic').map((r) => ({ agentClass: r.agentClass ?? 'systemic', startDay: r.startDay, stopDay: r.stopDay ?? Infinity })),
    };
  }

  selectedFit(patientId: string): { row: typeof twinFits.$inferSelect; fit: Fit } | null {
    const row = this.db
      .select()
      .from(twinFits)
      .where(and(eq(twinFits.patientId, patientId), eq(twinFits.selected, true)))
      .orderBy(desc(twinFits.id))
      .limit(1)
      .get();
    return row ? { row, fit: restoreFit(row.model, row.paramsJson) } : null;
  }

  /**
   * Population prior per model for the MAP fits of sparse patients: the site's current federated
   * prior (task 'twin-prior', prior-store.ts) when it has this model, else this site's own
   * (localPrior).
   */
  sitePrior(model: ModelName): GaussianPrior | null {
    return federatedGaussianPrior(this.db, model)?.prior ?? this.localPrior(model);
  }

  /** Where sitePrior(model) comes from, for the audit and the pages: 'federated prior vN (study S)', 'site prior', or null. */
  priorSource(model: ModelName): string | null {
    const f = federatedGaussianPrior(this.db, model);
    if (f) return `federated prior v${f.record.version} (study ${f.record.studyId}, ${f.record.patients} patients at ${f.record.contributingSites} sites)`;
    return this.localPrior(model) ? 'site prior' : null;
  }

  /** Population prior per model from this site's selected well-measured fits (sufficient statistics). */
  localPrior(model: ModelName): GaussianPrior | null {
    const rows = this.db
      .select()
      .from(twinFits)
      .where(and(eq(twinFits.model, model), eq(twinFits.selected, true), eq(twinFits.method, 'wls')))
      .all();
    const fits = rows.filter((r) => r.nPoints >= PRIOR_BELOW_POINTS).map((r) => restoreFit(r.model, r.paramsJson));
    if (fits.length < 3) return null;
    return priorFromStats(sufficientStats(fits));
  }

  /**
   * Assimilates the patient's data: first scores what the current fit had
   * predicted for the days measured since it was made (the twin keeps score
   * of itself), then refits every growth model, selects one by AICc, and
   * records forecasts for the coming days.
   */
  refit(patientId: string, opts: { seed?: number } = {}): RefitResult {
    const obs = this.observations(patientId);
    const prev = this.selectedFit(patientId);
    const scored: RefitResult['scored'] = [];
    if (prev) {
      const used = new Set(JSON.parse(prev.row.dataDaysJson) as number[]);
      const lastUsed = Math.max(...used);
      const vmax = Math.max(...obs.volumesMm3);
      obs.days.forEach((day, i) => {
        if (used.has(day) || day <= lastUsed) return;
        const band = forecastWithBand(prev.fit, [day], prev.fit.schedule, { seed: opts.seed ?? 7 });
        const s = {
          day,
          predictedMm3: band.median[0],
          observedMm3: obs.volumesMm3[i],
          absErrorNorm: Math.abs(obs.volumesMm3[i] - band.median[0]) / vmax,
          inside90: obs.volumesMm3[i] >= band.lower[0] && obs.volumesMm3[i] <= band.upper[0],
        };
        scored.push(s);
        const existing = this.db
          .select()
          .from(forecasts)
          .where(and(eq(forecasts.fitId, prev.row.id), eq(forecasts.day, day)))
          .get();
        const values = { observedMm3: s.observedMm3, absErrorNorm: s.absErrorNorm, inside90: s.inside90, scoredAtMs: Date.now() };
        if (existing) this.db.update(forecasts).set(values).where(eq(forecasts.id, existing.id)).run();
        else
          this.db
            .insert(forecasts)
            .values({ fitId: prev.row.id, patientId, day, predictedMm3: band.median[0], lower90Mm3: band.lower[0], upper90Mm3: band.upper[0], createdAtMs: Date.now(), ...values })
            .run();
      });
    }
    if (obs.days.length < 2) return { patientId, points: obs.days.length, selected: null, method: null, scored, reason: 'needs at least 2 measurements' };
    const full = this.schedule(patientId);
    // A log-kill rate is identifiable only with measurements before the therapy started;
    // otherwise the therapy's effect is absorbed into the growth parameters (as in
    // Ghaffari Laleh et al. 2022, who fit growth laws to treated lesions directly).
    const sys = full?.systemic ?? [];
    // ... and needs a pre-treatment slope (two measurements before it started): with one baseline
    // scan, k is confounded with the growth rate and its draws blow the band up (killRateIdentifiable).
    const killIdentifiable = obs.days.length >= PRIOR_BELOW_POINTS && killRateIdentifiable(obs.days, full);
    const schedule: Schedule | undefined = full && (full.radiotherapy?.length || killIdentifiable) ? { radiotherapy: full.radiotherapy, ...(killIdentifiable ? { systemic: sys } : {}) } : undefined;
    const sparse = obs.days.length < PRIOR_BELOW_POINTS;
    const models = sparse ? MODEL_NAMES.filter((m) => this.sitePrior(m)) : [...MODEL_NAMES];
    const useModels = models.length > 0 ? models : (['exponential'] as ModelName[]);
    const fitsByModel: Partial<Record<ModelName, Fit>> = {};
    for (const m of useModels) {
      const prior = sparse ? (this.sitePrior(m) ?? undefined) : undefined;
      fitsByModel[m] = fitModels({ days: obs.days, volumesMm3: obs.volumesMm3 }, [m], {
        schedule,
        estimateKill: killIdentifiable,
        seed: opts.seed ?? 1,
        ...(prior && !killIdentifiable ? { prior } : {}),
      }).fits[m];
    }
    const list = Object.values(fitsByModel) as Fit[];
    const crit = (f: Fit) => (list.every((x) => Number.isFinite(x.aicc)) ? f.aicc : f.aic);
    const best = list.reduce((a, b) => (crit(b) < crit(a) ? b : a));
    const lastDay = obs.days[obs.days.length - 1];
    this.db.transaction((tx) => {
      tx.insert(twinPatients).values({ patientId, createdAtMs: Date.now() }).onConflictDoNothing().run();
      tx.update(twinFits).set({ selected: false }).where(eq(twinFits.patientId, patientId)).run();
      for (const f of list) {
        const row = tx
          .insert(twinFits)
          .values({
            patientId,
            model: f.modelName,
            method: f.map ? 'map' : 'wls',
            paramsJson: serialiseFit(f),
            covarianceJson: JSON.stringify(f.cov),
            sigma: f.sigma,
            aic: f.aic,
            bic: f.bic,
            nPoints: f.n,
            dataDaysJson: JSON.stringify(obs.days),
            selected: f === best,
            fittedAtMs: Date.now(),
          })
          .returning({ id: twinFits.id })
          .get();
        if (f !== best) continue;
        const days = FORECAST_HORIZON_DAYS.map((d) => lastDay + d);
        const band = forecastWithBand(f, days, f.schedule, { seed: opts.seed ?? 7 });
        days.forEach((day, i) =>
          tx.insert(forecasts).values({ fitId: row.id, patientId, day, predictedMm3: band.median[i], lower90Mm3: band.lower[i], upper90Mm3: band.upper[i], createdAtMs: Date.now() }).run(),
        );
      }
      this.audit.append({
        actor: this.audit.ownerId,
        action: 'twin.refit',
        detail: `${patientId}: ${obs.days.length} points, ${best.modelName} (${best.map ? `MAP with ${this.priorSource(best.modelName) ?? 'site prior'}` : 'least squares'})${scored.length ? `, scored ${scored.length} earlier forecast(s)` : ''}`,
      });
    });
    return { patientId, points: obs.days.length, selected: best.modelName, method: best.map ? 'map' : 'wls', scored };
  }

  /** The twin's score sheet: every earlier forecast checked against a later measurement. */
  scoreSheet(patientId: string) {
    return this.db
      .select()
      .from(forecasts)
      .where(eq(forecasts.patientId, patientId))
      .orderBy(asc(forecasts.day))
      .all()
      .filter((f) => f.observedMm3 !== null);
  }

  /** The split-conformal calibration of the band from this site's completed follow-ups (see BandCalibration). */
  calibration(): BandCalibration {
    const rows = this.db
      .select()
      .from(forecasts)
      .all()
      .filter((r) => r.observedMm3 !== null);
    const n = rows.length;
    const scores = rows.map((r) => bandScore({ days: [r.day], point: [r.predictedMm3], median: [r.predictedMm3], lower: [r.lower90Mm3], upper: [r.upper90Mm3], level: 0.9 }, 0, r.observedMm3!));
    const factor = conformalFactor(scores, 0.9);
    if (n < MIN_CALIBRATION_FOLLOWUPS || !Number.isFinite(factor))
      return {
        n,
        factor: 1,
        applied: false,
        note: `model band, not calibrated: this site has ${n} completed follow-up${n === 1 ? '' : 's'}, calibration needs at least ${MIN_CALIBRATION_FOLLOWUPS}`,
      };
    return { n, factor, applied: true, note: `calibrated on ${n} completed follow-ups at this site (split conformal, factor ${factor.toFixed(2)})` };
  }

  /** A model band as shown: widened by the site's calibration factor when there is one. */
  calibrated(band: ForecastBand, cal: BandCalibration = this.calibration()): ForecastBand {
    return cal.applied ? widenBand(band, cal.factor) : band;
  }

  /** Forecasts not yet scored; the band is the calibrated one (the model band is kept in modelLower90Mm3/modelUpper90Mm3). */
  pendingForecasts(patientId: string, cal: BandCalibration = this.calibration()) {
    const sel = this.selectedFit(patientId);
    if (!sel) return [];
    return this.db
      .select()
      .from(forecasts)
      .where(and(eq(forecasts.fitId, sel.row.id), isNull(forecasts.observedMm3)))
      .orderBy(asc(forecasts.day))
      .all()
      .map((r) => {
        const b = this.calibrated({ days: [r.day], point: [r.predictedMm3], median: [r.predictedMm3], lower: [r.lower90Mm3], upper: [r.upper90Mm3], level: 0.9 }, cal);
        return { ...r, lower90Mm3: b.lower[0], upper90Mm3: b.upper[0], modelLower90Mm3: r.lower90Mm3, modelUpper90Mm3: r.upper90Mm3, band: cal.applied ? ('calibrated' as const) : ('model' as const) };
      });
  }

  /** What-if: the current fit under alternative schedules, with the same parameter draws for each. */
  simulate(
    patientId: string,
    alternatives: Record<string, Schedule | undefined>,
    horizonDays = 180,
    stepDays = 3,
  ): { fit: Fit; current: ForecastBand; alternatives: Record<string, ForecastBand>; calibration: BandCalibration } {
    const sel = this.selectedFit(patientId);
    if (!sel) throw new Error(`TWF_E_NO_TWIN: patient ${patientId} has no calibrated twin yet (needs at least 2 measurements; run twinfed site import)`);
    const f = sel.fit;
    const start = Math.min(...f.days);
    const days: number[] = [];
    for (let d = start; d <= Math.max(...f.days) + horizonDays; d += stepDays) days.push(d);
    const calibration = this.calibration();
    const current = this.calibrated(forecastWithBand(f, days, f.schedule, { seed: 7 }), calibration);
    const out: Record<string, ForecastBand> = {};
    for (const [name, s] of Object.entries(alternatives)) {
      // An alternative replaces the kinds of treatment it names and keeps the rest of the current plan.
      const merged: Schedule = { radiotherapy: s?.radiotherapy ?? f.schedule?.radiotherapy, systemic: s?.systemic ?? f.schedule?.systemic };
      try {
        out[name] = this.calibrated(forecastWithBand(f, days, merged, { seed: 7 }), calibration);
      } catch (e) {
        throw new Error(
          `TWF_E_WHATIF: "${name}" cannot be simulated for ${patientId}: ${(e as Error).message}. (A twin calibrated without two measurements before systemic therapy started has that therapy folded into its growth rate, so changes to systemic therapy cannot be simulated.)`,
        );
      }
    }
    return { fit: f, current, alternatives: out, calibration };
  }

  /**
   * The IBSI radiomics features computed at import for each of the patient's masks
   * (docs/radiomics.md), oldest time point first: tag -> value (null where IBSI leaves the
   * feature undefined for that ROI).
   */
  radiomics(patientId: string): { day: number; modality: string; lesion: string; origin: string; settings: string; features: Record<string, number | null> }[] {
    const rows = this.db
      .select({
        maskId: radiomicsFeatures.maskId,
        settings: radiomicsFeatures.settings,
        tag: radiomicsFeatures.tag,
        value: radiomicsFeatures.value,
        day: timepoints.day,
        modality: imagingSeries.modality,
        lesion: lesions.name,
        origin: masks.origin,
      })
      .from(radiomicsFeatures)
      .innerJoin(masks, eq(masks.id, radiomicsFeatures.maskId))
      .innerJoin(imagingSeries, eq(imagingSeries.id, masks.seriesId))
      .innerJoin(timepoints, eq(timepoints.id, imagingSeries.timepointId))
      .innerJoin(lesions, eq(lesions.id, radiomicsFeatures.lesionId))
      .where(eq(radiomicsFeatures.patientId, patientId))
      .orderBy(asc(timepoints.day), asc(radiomicsFeatures.maskId), asc(radiomicsFeatures.tag))
      .all();
    const out = new Map<string, { day: number; modality: string; lesion: string; origin: string; settings: string; features: Record<string, number | null> }>();
    for (const r of rows) {
      const key = `${r.maskId}|${r.settings}`;
      if (!out.has(key)) out.set(key, { day: r.day, modality: r.modality, lesion: r.lesion, origin: r.origin, settings: r.settings, features: {} });
      out.get(key)!.features[r.tag] = r.value;
    }
    return [...out.values()];
  }

  summary(patientId: string) {
    const sel = this.selectedFit(patientId);
    return sel ? { model: sel.row.model, method: sel.row.method, aic: sel.row.aic, parameters: parameterSummary(sel.fit), points: sel.row.nPoints } : null;
  }
}
