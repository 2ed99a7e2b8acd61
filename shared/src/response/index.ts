/**
 * Treatment-response model core (pure): RECIST-style labels, features of the first three
 * measurements, deterministic patient split, multinomial logistic regression with hand-written
 * gradients, macro one-vs-rest AUC / balanced accuracy, permutation importance.
 */
export * from './labels.js';
export * from './split.js';
export * from './features.js';
export * from './metrics.js';
export * from './model.js';
export * from './evaluate.js';
export * from './laleh.js';
export * from './regimes.js';
export * from './study.js';
