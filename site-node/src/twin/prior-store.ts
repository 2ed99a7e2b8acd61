import { eq, like } from 'drizzle-orm';
import { priorFromStats, type GaussianPrior, type ModelName, type SufficientStats } from '@twinfed/shared/twin/index';
import type { SiteDb } from '../db/index.js';
import { meta } from '../db/schema.js';

/**
 * The site's store of federated population priors (task 'twin-prior', federated-prior.ts):
 * versioned records with provenance in the site database (table `meta`, keys
 * `twin.prior.v<NNNNNN>` per version and `twin.prior.current`). TwinService reads the current one
 * for the MAP fits of sparse patients.
 */

/** Per model the summed statistics of z (prior.ts's SufficientStats less `model`, which the key names). */
export type PriorFileModels = Record<string, Omit<SufficientStats, 'model'>>;

/**
 * A federated prior as the site stores it and as `twinfed twin evaluate --prior` reads it
 * ({ models: { MODEL: SufficientStats } } plus provenance).
 */
export interface FederatedPriorRecord {
  format: 'twinfed-twin-prior-v1';
  /** 1 for the first prior this site stored, +1 for each later study (or re-run) that produced one. */
  version: number;
  studyId: string;
  manifestHash: string;
  round: number;
  contributingSites: number;
  /** Patients in the statistics, per model (the same patients for every model). */
  patients: number;
  /** Largest error of each decoded sum of box statistics, in box units u (see prior-codec.ts). */
  errorBoundU: number;
  storedAt: string;
  models: PriorFileModels;
}

export const CURRENT_PRIOR_KEY = 'twin.prior.current';

/** The current federated prior of this site, or null when no twin-prior study has produced one. */
export function readFederatedPrior(db: SiteDb): FederatedPriorRecord | null {
  const v = db.select().from(meta).where(eq(meta.key, CURRENT_PRIOR_KEY)).get()?.value;
  return v ? (JSON.parse(v) as FederatedPriorRecord) : null;
}

/** Every stored version, newest first. */
export function federatedPriorHistory(db: SiteDb): FederatedPriorRecord[] {
  return db
    .select()
    .from(meta)
    .where(like(meta.key, 'twin.prior.v%'))
    .all()
    .map((r) => JSON.parse(r.value) as FederatedPriorRecord)
    .sort((a, b) => b.version - a.version);
}

/** The Gaussian prior of one model from the current federated prior, or null. */
export function federatedGaussianPrior(db: SiteDb, model: ModelName): { prior: GaussianPrior; record: FederatedPriorRecord } | null {
  const rec = readFederatedPrior(db);
  const s = rec?.models[model];
  if (!rec || !s || s.n < 2) return null;
  return { prior: priorFromStats({ model, ...s }), record: rec };
}
