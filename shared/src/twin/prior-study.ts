import type { TwinPriorSpec } from '@twinfed/protocols';
import type { ModelName } from './models.js';

/** Models of the demo's prior: the closed-form ones (general Gompertz needs RK45 and is slow to fit at every site). */
export const PRIOR_DEMO_MODELS: ModelName[] = ['exponential', 'logistic', 'gompertz', 'classicBertalanffy'];

/**
 * The population-prior study of `npm run demo:twin`: one round (the prior is a one-shot sum),
 * patients with at least 4 measurements, at least 5 of them per site (the minimum-patient rule),
 * at most 500 per site (the fixed-point scale: Laleh Study3, the largest, has ~250 such patients).
 * Weight 1 per site (maxSamplesPerSite 1), so the aggregate's totalSamples is the number of
 * contributors and the sum is mean × totalSamples. clipBound 1: every element is within ±1 by
 * construction (shared/src/twin/prior-codec.ts). The training fields other than clipBound and
 * maxSamplesPerSite are unused by this task.
 */
export function twinPriorStudySpec(models: readonly ModelName[] = PRIOR_DEMO_MODELS): TwinPriorSpec {
  return {
    title: 'Population prior of tumour growth parameters (Laleh 2022 Study1-3)',
    task: 'twin-prior',
    model: { arch: 'growth-prior', models: [...models], maxPatientsPerSite: 500, maxRssPerPatient: 1, maxDofPerPatient: 50 },
    training: { epochsPerRound: 1, batchSize: 1, learningRate: 0.1, clipBound: 1, seed: 1, maxSamplesPerSite: 1 },
    data: { source: 'twin-measurements', minMeasurements: 4, minPatients: 5 },
    rounds: 1,
    minSites: 3,
    roundDeadlineS: 300,
  };
}
