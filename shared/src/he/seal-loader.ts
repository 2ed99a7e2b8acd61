/**
 * Loads node-seal (Microsoft SEAL 4.1 compiled to WebAssembly) once per process.
 * We use the "throws" build, which refuses to produce transparent ciphertexts.
 *
 * Quirk: node-seal's .d.ts declares `export default` while the UMD file sets
 * `module.exports = factory`, so under NodeNext TypeScript sees the factory one
 * level deeper than Node does at runtime. We accept both shapes.
 */
import * as sealModule from 'node-seal/throws_wasm_node_umd.js';
import type { SEALLibrary } from 'node-seal/implementation/seal.js';

export type { SEALLibrary };
export type { Context } from 'node-seal/implementation/context.js';
export type { CipherText } from 'node-seal/implementation/cipher-text.js';
export type { SecretKey } from 'node-seal/implementation/secret-key.js';
export type { BatchEncoder } from 'node-seal/implementation/batch-encoder.js';
export type { Evaluator } from 'node-seal/implementation/evaluator.js';

type Factory = () => Promise<SEALLibrary>;

let sealPromise: Promise<SEALLibrary> | null = null;

function factory(): Factory {
  const mod = sealModule as unknown as { default: Factory | { default: Factory } };
  const d = mod.default;
  if (typeof d === 'function') return d;
  if (d && typeof d.default === 'function') return d.default;
  throw new Error('node-seal: unexpected module shape');
}

/** The SEAL library, instantiated on first use and shared afterwards. */
export function loadSeal(): Promise<SEALLibrary> {
  if (!sealPromise) {
    sealPromise = factory()().catch((e: unknown) => {
      sealPromise = null;
      throw e;
    });
  }
  return sealPromise;
}

/**
 * node-seal errors carry SEAL's message; some are numbers (wasm exception
 * pointers). Produce a short string for error details without dumping stacks.
 */
export function sealErrorMessage(e: unknown): string {
  if (e instanceof Error) return e.message.slice(0, 300);
  return String(e).slice(0, 300);
}
