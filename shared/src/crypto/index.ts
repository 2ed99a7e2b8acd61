export * from './sodium.js';
export * from './identity.js';
export * from './envelope.js';
