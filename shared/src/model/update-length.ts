import type { AnyModelConfig } from '@twinfed/protocols';
import { featureNames } from '../response/features.js';
import { weightCount } from '../response/model.js';
import { countConfigParams } from './specs.js';
import { priorVectorLength } from '../twin/prior-codec.js';

/**
 * Number of parameters in one federated update of a model: the U-Net's flat weights in wire order,
 * or the response model's K × (D + 1) softmax weights, or the population prior's fixed-point
 * sufficient statistics (shared/src/twin/prior-codec.ts). The coordinator writes it into the manifest
 * (`updateLength`), so the length of every upload is fixed by what the officers approved, never by
 * the first chunk that arrives. Pure: no tfjs.
 */
export function updateLength(model: AnyModelConfig): number {
  switch (model.arch) {
    case 'unet2d':
      return countConfigParams({ inChannels: model.inChannels, nClasses: model.nClasses, base: model.base, depth: model.depth, size: model.size });
    case 'logreg':
      return weightCount({ nFeatures: featureNames(model.arms).length, nClasses: model.nClasses, l2: model.l2 });
    case 'growth-prior':
      return priorVectorLength(model.models);
  }
}
