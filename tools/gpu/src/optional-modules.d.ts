// Installed only in tools/gpu (npm ci there); imported for its side effect (it registers the
// 'webgpu' backend). Declared here so that type-checking and the root lint do not need it.
declare module '@tensorflow/tfjs-backend-webgpu';
