export * from './version.js';
export * from './canonical.js';
export * from './errors.js';
export * from './envelope.js';
export * from './manifest.js';
export * from './messages.js';
export * from './rest.js';
