export * from './sodium.js';
export * from './identity.js';
export * from './envelope.js';
export * from './statement.js';
export * from './tls-pin.js';
