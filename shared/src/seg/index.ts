export * from './metrics.js';
export * from './volume.js';
