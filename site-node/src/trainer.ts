import { WireError, type StudyManifest } from '@twinfed/protocols';
import { dpStepsPerRound, type DpSgdOptions } from '@twinfed/shared/dp/dpsgd';
import type { ProximalOptions } from '@twinfed/shared/strategy/proximal';
import type { AuditLog } from '@twinfed/shared/audit/index';

/** Result of local training from a given global model. */
export interface LocalTrainResult {
  weights: Float32Array;
  /**
   * The FedAvg weight of the update: training slices (segmentation) or patients (response); under
   * patient-level DP the number of training PATIENTS for every task (see localObjective).
   */
  nSamples: number;
  loss: number;
  ms: number;
  /**
   * Set when the round ran patient-level DP-SGD (manifest.dp.level 'patient'): what the site's
   * accountant composes. `steps` is the number of noisy steps actually taken.
   */
  dp?: { steps: number; samplingRate: number; noiseMultiplier: number; clipNorm: number };
}

export interface LocalEvalResult {
  /** Mean Dice over validation patients (3D per patient), or null when none. */
  meanDice: number | null;
  valPatients: number;
  perPatient: { patientId: string; dice: number }[];
  /**
   * The task's own metric when it is not Dice (response: macro one-vs-rest AUC on the site's
   * held-out patients); meanDice is then null, never a relabelled AUC.
   */
  metric?: { name: string; value: number | null };
}

/** One finished epoch of a round's local training (for progress lines and the site console). */
export interface LocalTrainProgress {
  /** 1-based epoch just finished, of `epochs` (the manifest's epochsPerRound). */
  epoch: number;
  epochs: number;
  /** Mean training loss over that epoch's steps. */
  loss: number;
  /** Since training of this round started. */
  elapsedMs: number;
}

/**
 * Turns per-step progress (step of steps, loss) into one LocalTrainProgress per epoch: an epoch is
 * ceil(steps / epochs) steps, i.e. one pass over the data, and under DP-SGD (steps = epochs / q
 * Poisson-sampled steps) the steps expected to see every patient once. Undefined without a sink.
 */
export function epochProgress(epochs: number, sink: ((p: LocalTrainProgress) => void) | undefined): ((p: { step: number; steps: number; loss: number }) => void) | undefined {
  if (!sink) return undefined;
  const t0 = performance.now();
  let sum = 0;
  let n = 0;
  return ({ step, steps, loss }) => {
    sum += loss;
    n++;
    const per = Math.max(1, Math.ceil(steps / Math.max(1, epochs)));
    if (step % per !== 0 && step !== steps) return;
    sink({ epoch: Math.min(epochs, Math.ceil(step / per)), epochs, loss: sum / n, elapsedMs: performance.now() - t0 });
    sum = 0;
    n = 0;
  };
}

/**
 * What a site node needs from a model: the seeded initial weights every site
 * reproduces, local training, local evaluation. The U-Net implementation is
 * in unet-trainer.ts; others (response models) plug in here.
 */
export interface LocalTrainer {
  readonly backend: string;
  /** Counts of local data usable for this study (for the join message). */
  /** trainSlices counts the training samples (slices for segmentation, patients for response). */
  dataSummary(manifest: StudyManifest): { trainSlices: number; valPatients: number };
  initialWeights(manifest: StudyManifest): Float32Array;
  /** `onProgress`, when given, hears of each epoch as it ends (see epochProgress). */
  train(manifest: StudyManifest, weights: Float32Array, round: number, onProgress?: (p: LocalTrainProgress) => void): Promise<LocalTrainResult>;
  evaluate(manifest: StudyManifest, weights: Float32Array): Promise<LocalEvalResult>;
  /**
   * Called with a checked, decrypted aggregate's next model before it is evaluated and stored
   * (task 'twin-prior': decodes the summed statistics and stores the population prior). `refuse`
   * refuses the aggregate (TWF_E_AGGREGATE_BOUNDS) with that reason. Absent for model trainers.
   */
  onAggregate?(manifest: StudyManifest, weights: Float32Array, info: AggregateHookInfo): { refuse?: string };
  /** Releases what the trainer keeps between rounds (the U-Net trainer's worker threads); SiteNode.close calls it. */
  close?(): Promise<void>;
}

/** What onAggregate learns of the round besides the weights. */
export interface AggregateHookInfo {
  round: number;
  /** Sum of the declared weights: with weight 1 per site (twin-prior), the number of contributors. */
  totalSamples: number;
  contributors: number;
  audit: AuditLog;
}

/**
 * What the manifest asks of one round's local training, for every trainer:
 * - `proximal`: strategy 'fedprox' (Li et al., MLSys 2020) → the local objective gets
 *   (mu/2)·||w − w_global||² with w_global = `anchor`, the weights handed to train(); other
 *   strategies act on the server side and leave local training alone.
 * - `dp`: dp.level 'patient' → DP-SGD (Abadi et al., CCS 2016) with the manifest's q, C and sigma
 *   and steps = dpStepsPerRound(epochsPerRound, q) = max(1, round(epochsPerRound / q)), the
 *   number the site's accountant composes. dp.level 'site' trains normally: that noise is added
 *   to the whole update after quantisation, not here.
 *
 * The FedAvg weight under patient-level DP: the number of training slices (or any other count
 * the noisy steps do not cover) would be released exactly, outside the accountant's guarantee, so
 * trainers send the number of training PATIENTS instead. That is still data-dependent and not
 * noised; it is the patient count a site's join message already discloses (a residual leak the
 * study accepts, not one the (epsilon, delta) covers).
 */
export function localObjective(m: StudyManifest, anchor: Float32Array): { proximal?: ProximalOptions; dp?: DpSgdOptions } {
  const proximal = m.strategy?.name === 'fedprox' ? { mu: m.strategy.mu, anchor } : undefined;
  if (m.dp?.level !== 'patient') return { proximal };
  const { samplingRate, clipNorm, noiseMultiplier } = m.dp;
  if (noiseMultiplier == null) {
    throw new WireError(
      'TWF_E_DP_PARAMS',
      `study ${m.studyId}: manifest.dp.noiseMultiplier is missing; the coordinator derives it from the privacy budget when the study is created, so an approved manifest always names it. Refusing to train without noise.`,
    );
  }
  return { proximal, dp: { samplingRate, clipNorm, noiseMultiplier, steps: dpStepsPerRound(m.training.epochsPerRound, samplingRate) } };
}

/** LocalTrainResult.dp for a run that used `dp`, with the steps actually taken. */
export function dpReport(dp: DpSgdOptions, stepsTaken: number): NonNullable<LocalTrainResult['dp']> {
  return { steps: stepsTaken, samplingRate: dp.samplingRate, noiseMultiplier: dp.noiseMultiplier, clipNorm: dp.clipNorm };
}
