export * from './metrics.js';
export * from './volume.js';
export * from './gradcam.js';
export * from './overlay.js';
