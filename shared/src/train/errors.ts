import { defineErrors, errorClass, type ErrorSpec } from '@twinfed/protocols/define-errors';

/** Errors of local training (shared/src/train); `code` is stable, the message is `CODE: detail (catalogue message)`. */
export const TRAIN_ERRORS = defineErrors({
  TWF_E_TRAIN_WORKERS: {
    message: 'The number of training worker threads is not usable: TWINFED_TRAIN_WORKERS (or the workers option) must be a whole number from 0 to 64, 0 = train on the calling thread.',
  },
  TWF_E_TRAIN_WORKER: {
    message:
      'A training worker thread failed (its backend did not start, a step threw, or the thread died) and the step was not taken; the detail is what the worker reported. A dead worker is replaced on the next step; TWINFED_TRAIN_WORKERS=0 trains without worker threads.',
  },
  TWF_E_TRAIN_POOL_CLOSED: {
    message: 'The training worker pool was closed (the site node is stopping); a new pool (sharedTrainingPool) is needed for further steps.',
  },
});

export type TrainErrorCode = keyof typeof TRAIN_ERRORS;

export class TrainError extends errorClass('TrainError', TRAIN_ERRORS, (code: string, spec: ErrorSpec, detail: string) => `${code}: ${detail} (${spec.message})`) {}
