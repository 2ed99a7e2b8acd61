export * from './config.js';
export * from './errors.js';
export * from './enrol.js';
export * from './node.js';
export * from './trainer.js';
export { openSiteDb, type SiteDb } from './db/index.js';
export * from './doctor.js';
export * from './import-sts.js';
export * from './unet-trainer.js';
