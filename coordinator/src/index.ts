export * from './config.js';
export * from './errors.js';
export * from './engine.js';
export * from './metrics.js';
export * from './server.js';
export { openCoordinatorDb } from './db/index.js';
