export * from './chain.js';
export * from './compare.js';
export * from './receipts.js';
export * from './log.js';
export * from './table.js';
