import type { StudyManifest } from '@twinfed/protocols';

/** Result of local training from a given global model. */
export interface LocalTrainResult {
  weights: Float32Array;
  /** Number of training samples (slices) the update is weighted by. */
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
  train(manifest: StudyManifest, weights: Float32Array, round: number): Promise<LocalTrainResult>;
  evaluate(manifest: StudyManifest, weights: Float32Array): Promise<LocalEvalResult>;
}
