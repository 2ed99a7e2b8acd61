export * from './html.js';
export * from './layout.js';
export * from './session.js';
export * from './headers.js';
export * from './assets.js';
export * from './sse.js';
