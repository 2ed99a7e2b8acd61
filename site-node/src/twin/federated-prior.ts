import { WireError, manifestHash, type StudyManifest, type TwinPriorManifest } from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import {
  boxStats,
  decodePriorStats,
  encodePriorStats,
  fitPatient,
  implausibleBoxStats,
  modelBox,
  priorCodecErrorBound,
  zStatsFromBox,
  type BoxStats,
  type ModelName,
  type PriorCodecConfig,
} from '@twinfed/shared/twin/index';
import type { SiteDb } from '../db/index.js';
import { measurements, meta } from '../db/schema.js';
import type { LocalEvalResult, LocalTrainResult, LocalTrainer } from '../trainer.js';
import { TwinService } from './service.js';
import { CURRENT_PRIOR_KEY, federatedPriorHistory, readFederatedPrior, type FederatedPriorRecord, type PriorFileModels } from './prior-store.js';

/**
 * The federated population prior at a site (task 'twin-prior'): the trainer that fits this site's
 * patients and encodes their sufficient statistics (shared/src/twin/prior-codec.ts), decodes the
 * consortium sum and stores it (prior-store.ts). TwinService uses the current prior for the MAP
 * fits of sparse patients.
 */

function tp(m: StudyManifest): TwinPriorManifest {
  if (m.task !== 'twin-prior') throw new WireError('TWF_E_BAD_REQUEST', `the twin-prior trainer runs twin-prior studies, study ${m.studyId} is task '${m.task}'`);
  return m;
}

/** The codec settings a manifest fixes. */
export function priorCodecConfig(m: TwinPriorManifest): PriorCodecConfig {
  return {
    models: m.model.models,
    maxPatientsPerSite: m.model.maxPatientsPerSite,
    maxRssPerPatient: m.model.maxRssPerPatient,
    maxDofPerPatient: m.model.maxDofPerPatient,
    clipBound: m.training.clipBound,
  };
}

/** The site's patients (ids with measurements), sorted. */
function patientIds(db: SiteDb): string[] {
  return [
    ...new Set(
      db
        .selectDistinct({ id: measurements.patientId })
        .from(measurements)
        .all()
        .map((r) => r.id),
    ),
  ].sort();
}

/** The primary-lesion series of the patients that enter the statistics: ≥ data.minMeasurements points and a positive volume. */
export function eligibleObservations(db: SiteDb, m: TwinPriorManifest): { days: number[]; volumesMm3: number[] }[] {
  // Reading observations only: the service's audit log is never written here.
  const twin = new TwinService(db, { append: () => undefined } as unknown as AuditLog);
  return patientIds(db)
    .map((id) => twin.observations(id))
    .filter((o) => o.days.length >= m.data.minMeasurements && Math.max(...o.volumesMm3) > 0);
}

/**
 * This site's box statistics per model: every patient with at least data.minMeasurements
 * measurements of its primary lesion and a positive volume, fitted per model by least squares
 * (no schedule, as `twin evaluate` fits), each z clipped to the model's box. Deterministic (seed 1).
 */
export function siteBoxStats(db: SiteDb, m: TwinPriorManifest): { byModel: Map<ModelName, BoxStats>; patients: number; clipped: number } {
  const obs = eligibleObservations(db, m);
  const cfg = priorCodecConfig(m);
  const byModel = new Map<ModelName, BoxStats>();
  let clipped = 0;
  for (const model of cfg.models) {
    const fits = obs.map((o) => fitPatient(model, { days: o.days, volumesMm3: o.volumesMm3 }, { seed: 1 }));
    const r = boxStats(fits, modelBox(model), cfg);
    byModel.set(model, r.stats);
    clipped += r.clipped;
  }
  return { byModel, patients: obs.length, clipped };
}

/**
 * The twin-prior trainer. `train` ignores the weights it is handed (the base model is all zeros)
 * and returns the encoded statistics with nSamples 1, so FedAvg's aggregate is the mean over the
 * contributors and the sum is mean × totalSamples. A site with fewer than data.minPatients
 * patients (or more than model.maxPatientsPerSite) refuses to train (TWF_E_NO_DATA). `onAggregate`
 * decodes the sum, refuses one no set of honest sites could have produced, and stores the prior.
 */
export function createTwinPriorTrainer(db: SiteDb): LocalTrainer {
  return {
    backend: 'cpu-js',
    dataSummary(mIn) {
      const m = tp(mIn);
      return { trainSlices: Math.min(eligibleObservations(db, m).length, m.model.maxPatientsPerSite), valPatients: 0 };
    },
    initialWeights(mIn) {
      return new Float32Array(tp(mIn).updateLength);
    },
    async train(mIn, base): Promise<LocalTrainResult> {
      const m = tp(mIn);
      const t0 = performance.now();
      const s = siteBoxStats(db, m);
      if (s.patients < m.data.minPatients)
        throw new Error(`TWF_E_NO_DATA: ${s.patients} patients with at least ${m.data.minMeasurements} measurements; the study's minimum-patient rule needs ${m.data.minPatients}`);
      if (s.patients > m.model.maxPatientsPerSite) throw new Error(`TWF_E_NO_DATA: ${s.patients} patients; the manifest's maxPatientsPerSite is ${m.model.maxPatientsPerSite} (the fixed-point scale)`);
      const v = encodePriorStats(s.byModel, priorCodecConfig(m));
      // FedAvg sends weights − base: add the base back so the delta is exactly the statistics.
      const weights = new Float32Array(v.length);
      for (let i = 0; i < v.length; i++) weights[i] = base[i] + v[i];
      return { weights, nSamples: 1, loss: 0, ms: performance.now() - t0 };
    },
    async evaluate(mIn): Promise<LocalEvalResult> {
      const m = tp(mIn);
      const rec = readFederatedPrior(db);
      return { meanDice: null, valPatients: 0, perPatient: [], metric: { name: 'priorPatients', value: rec?.studyId === m.studyId ? rec.patients : null } };
    },
    onAggregate(mIn, weights, info) {
      const m = tp(mIn);
      const cfg = priorCodecConfig(m);
      // Weight 1 per site: the sum of weights is the number of contributors, or a site declared more.
      if (info.totalSamples !== info.contributors) return { refuse: `totalSamples ${info.totalSamples} for ${info.contributors} contributors; every site of a twin-prior study sends weight 1` };
      const contributors = info.contributors;
      const tolNorm = priorCodecErrorBound(contributors, (m.encryption as { precisionBits: number }).precisionBits);
      const tolU = tolNorm * cfg.maxPatientsPerSite;
      const sums = decodePriorStats(weights, contributors, cfg);
      const models: PriorFileModels = {};
      let patients = -1;
      for (const [model, b] of sums) {
        const why = implausibleBoxStats(b, { contributors, minPatients: m.data.minPatients, tol: tolU, ...cfg });
        if (why) return { refuse: `the summed prior statistics cannot come from ${contributors} honest sites: ${why}` };
        if (patients >= 0 && b.n !== patients) return { refuse: `${model} has ${b.n} patients, another model ${patients}: every site puts the same patients into every model` };
        patients = b.n;
        const { model: _m, ...z } = zStatsFromBox(b, modelBox(model));
        models[model] = z;
      }
      const prev = readFederatedPrior(db);
      if (prev?.studyId === m.studyId && prev.round === info.round) return {};
      const version = Math.max(prev?.version ?? 0, ...federatedPriorHistory(db).map((r) => r.version)) + 1;
      const rec: FederatedPriorRecord = {
        format: 'twinfed-twin-prior-v1',
        version,
        studyId: m.studyId,
        manifestHash: manifestHash(m),
        round: info.round,
        contributingSites: contributors,
        patients,
        errorBoundU: tolU,
        storedAt: new Date().toISOString(),
        models,
      };
      const json = JSON.stringify(rec);
      db.transaction((tx) => {
        tx.insert(meta)
          .values({ key: `twin.prior.v${String(version).padStart(6, '0')}`, value: json })
          .run();
        tx.insert(meta)
          .values({ key: CURRENT_PRIOR_KEY, value: json })
          .onConflictDoUpdate({ target: meta.key, set: { value: json } })
          .run();
      });
      info.audit.append({
        actor: info.audit.ownerId,
        action: 'twin.prior.stored',
        studyId: m.studyId,
        round: info.round,
        detail: `federated prior v${version}: ${cfg.models.join(',')} from ${patients} patients at ${contributors} sites (error bound ${tolU.toExponential(2)} in box units)`,
      });
      return {};
    },
  };
}
