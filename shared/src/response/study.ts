import type { ResponseSpec } from '@twinfed/protocols';

/**
 * Arm vocabulary of the Laleh et al. 2022 Study1–3 tables, as the study lead declares it in the
 * manifest (no site reveals its arms). The labels are study-specific, so in practice the one-hot
 * columns encode "which trial and which arm of it"; they are mostly a site indicator.
 */
export const LALEH_STUDY1_3_ARMS = [
  'Study_1_Arm_1',
  'Study_1_Arm_2',
  'Study_1_Arm_3',
  'Study_2_Arm_1',
  'Study_2_Arm_2',
  'Study_3_Arm_1',
  'Study_3_Arm_2',
  'Study_3_Arm_3',
  'Study_3_Arm_4',
  'Study_3_Arm_5',
  'Study_3_Arm_6',
];

/**
 * The response study of `npm run demo:response` and `twinfed response compare`: softmax regression,
 * full-batch gradient descent (batchSize 1024 ≥ any site's patients), 20 epochs per round,
 * learning rate 0.5, L2 1e-3, 70 % of each site's patients (salted id hash) for training.
 * clipBound 2: the largest per-weight update seen on Study1–3 is 0.85.
 */
export function responseStudySpec(rounds = 20, arms: readonly string[] = LALEH_STUDY1_3_ARMS): ResponseSpec {
  return {
    title: 'Treatment response from the first three measurements (Laleh 2022 Study1-3)',
    task: 'response',
    model: { arch: 'logreg', features: 'first3-v1', nClasses: 3, arms: [...arms], l2: 1e-3, initSeed: 7 },
    training: { epochsPerRound: 20, batchSize: 1024, learningRate: 0.5, clipBound: 2, seed: 11 },
    data: { source: 'twin-measurements', minMeasurements: 5, trainPercent: 70, splitSalt: 'twinfed-response-v1', minTrainPatients: 10 },
    rounds,
    minSites: 3,
    roundDeadlineS: 120,
  };
}
