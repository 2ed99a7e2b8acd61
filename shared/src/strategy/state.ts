/**
 * Server-optimiser state on disk and in audit entries: a versioned, little-endian binary layout
 * that is the same bytes for the same state at every site, and its SHA-256.
 *
 *   'TWSS'               4 bytes magic
 *   format version       u8 (1)
 *   strategy name        u8 length + ASCII
 *   steps                u32
 *   elements per vector  u32
 *   vector count         u8
 *   per vector, in sorted name order: u8 length + ASCII name, then elements × float64
 */
import { sha256Hex, type StrategyName } from '@twinfed/protocols';
import { StrategyError } from './errors.js';
import type { StrategyState } from './types.js';

const MAGIC = [0x54, 0x57, 0x53, 0x53]; // 'TWSS'
export const STATE_FORMAT_VERSION = 1;
/** What `stateHash` says for a strategy without state (FedAvg, FedProx) and at version 0. */
export const NO_STATE_HASH = 'none';
const NAMES: readonly StrategyName[] = ['fedavg', 'fedprox', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];

const ascii = (s: string): Uint8Array => {
  if (!/^[a-z0-9_-]{1,64}$/i.test(s)) throw new StrategyError('TWF_E_STRATEGY_STATE', `unusable name ${JSON.stringify(s)} in state`);
  return new TextEncoder().encode(s);
};

export function serialiseState(state: StrategyState): Uint8Array {
  const names = Object.keys(state.vectors).sort();
  if (names.length > 255) throw new StrategyError('TWF_E_STRATEGY_STATE', 'too many state vectors');
  const length = names.length ? state.vectors[names[0]].length : 0;
  if (!Number.isInteger(state.steps) || state.steps < 0 || state.steps > 0xffffffff) throw new StrategyError('TWF_E_STRATEGY_STATE', `steps ${state.steps}`);
  if (length > 0xffffffff / 8) throw new StrategyError('TWF_E_STRATEGY_STATE', 'state vectors too long');
  const strategy = ascii(state.strategy);
  const encNames = names.map((n) => {
    if (state.vectors[n].length !== length) throw new StrategyError('TWF_E_STRATEGY_STATE', `state vector ${n} has ${state.vectors[n].length} elements, ${names[0]} ${length}`);
    return ascii(n);
  });
  const size = 4 + 1 + 1 + strategy.length + 4 + 4 + 1 + encNames.reduce((s, n) => s + 1 + n.length + 8 * length, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let at = 0;
  out.set(MAGIC, at);
  at += 4;
  dv.setUint8(at++, STATE_FORMAT_VERSION);
  dv.setUint8(at++, strategy.length);
  out.set(strategy, at);
  at += strategy.length;
  dv.setUint32(at, state.steps, true);
  at += 4;
  dv.setUint32(at, length, true);
  at += 4;
  dv.setUint8(at++, names.length);
  names.forEach((n, k) => {
    dv.setUint8(at++, encNames[k].length);
    out.set(encNames[k], at);
    at += encNames[k].length;
    const v = state.vectors[n];
    for (let i = 0; i < length; i++, at += 8) dv.setFloat64(at, v[i], true);
  });
  return out;
}

/** Parses what serialiseState wrote; TWF_E_STRATEGY_STATE on any other bytes (wrong magic or version, truncated, trailing bytes, NaN). */
export function parseState(bytes: Uint8Array): StrategyState {
  const bad = (why: string): never => {
    throw new StrategyError('TWF_E_STRATEGY_STATE', `unreadable strategy state: ${why}`);
  };
  if (!(bytes instanceof Uint8Array)) bad('not bytes');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number) => {
    if (at + n > bytes.length) bad('truncated');
  };
  need(6);
  if (!MAGIC.every((b, i) => bytes[i] === b)) bad('wrong magic');
  at = 4;
  const version = dv.getUint8(at++);
  if (version !== STATE_FORMAT_VERSION) bad(`format version ${version}; this site reads ${STATE_FORMAT_VERSION}`);
  const str = (): string => {
    need(1);
    const n = dv.getUint8(at++);
    need(n);
    const s = new TextDecoder().decode(bytes.subarray(at, at + n));
    at += n;
    return s;
  };
  const strategy = str() as StrategyName;
  if (!NAMES.includes(strategy)) bad(`unknown strategy ${JSON.stringify(strategy)}`);
  need(9);
  const steps = dv.getUint32(at, true);
  at += 4;
  const length = dv.getUint32(at, true);
  at += 4;
  const count = dv.getUint8(at++);
  const vectors: Record<string, Float64Array> = {};
  let prev = '';
  for (let k = 0; k < count; k++) {
    const name = str();
    if (!/^[a-z0-9_-]{1,64}$/i.test(name) || name <= prev) bad('vector names not in sorted order');
    prev = name;
    need(8 * length);
    const v = new Float64Array(length);
    for (let i = 0; i < length; i++, at += 8) {
      v[i] = dv.getFloat64(at, true);
      if (!Number.isFinite(v[i])) bad(`${name}[${i}] is not finite`);
    }
    vectors[name] = v;
  }
  if (at !== bytes.length) bad(`${bytes.length - at} trailing bytes`);
  return { strategy, steps, vectors };
}

/** SHA-256 (hex) of the serialised state; NO_STATE_HASH ('none') for null. */
export function stateHash(state: StrategyState | null): string {
  return state === null ? NO_STATE_HASH : sha256Hex(serialiseState(state));
}
