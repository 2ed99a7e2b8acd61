import type { HeParams } from '@twinfed/shared/he/index';
import type { SumMode } from './adder.js';

/** Messages from SumPool to an aggregation worker (worker.ts); handled in the order posted. */
export type WorkerRequest =
  /** `perChunk`: ciphertexts per chunk (1: the chunk is one ciphertext; more: packFrames of them). */
  | { op: 'adder'; name: string; mode: SumMode; params: HeParams; perChunk: number }
  /** `log`: append the chunk to this file and answer once it is on disk (adds only). */
  | { op: 'add' | 'sub'; id: number; adder: string; key: string; index: number; chunk: Uint8Array; log?: string }
  /** Answered with the sums by ciphertext index (chunk index × perChunk + position in the chunk). */
  | { op: 'take'; id: number; key: string }
  | { op: 'drop'; key: string };

/** A worker's answer to an add, sub or take. */
export type WorkerReply =
  { id: number; ok: true; ms?: number; log?: { offset: number; length: number }; indexes?: number[]; buffers?: Uint8Array[] } | { id: number; ok: false; code: string | null; message: string };
