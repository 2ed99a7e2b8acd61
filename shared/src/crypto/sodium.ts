import { createRequire } from 'node:module';

// libsodium-wrappers 0.7.x ships a broken ESM entry (it imports a file it does
// not ship), so load its CommonJS build.
const require = createRequire(import.meta.url);
type Sodium = typeof import('libsodium-wrappers');
const sodiumModule = require('libsodium-wrappers') as Sodium;

let ready = false;

/** Resolves once libsodium's WebAssembly is initialised; call before any other crypto helper. */
export async function initSodium(): Promise<Sodium> {
  await sodiumModule.ready;
  ready = true;
  return sodiumModule;
}

/** The initialised libsodium module; throws if initSodium() was not awaited. */
export function sodium(): Sodium {
  if (!ready) throw new Error('libsodium not initialised: await initSodium() at start-up');
  return sodiumModule;
}

export function toB64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function fromB64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'base64'));
}
