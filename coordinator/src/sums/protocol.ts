import type { HeParams } from '@twinfed/shared/he/index';
import type { SumMode } from './adder.js';

/** Messages from SumPool to an aggregation worker (worker.ts); handled in the order posted. */
export type WorkerRequest =
  | { op: 'adder'; name: string; mode: SumMode; params: HeParams }
  | { op: 'add' | 'sub'; id: number; adder: string; key: string; index: number; chunk: Uint8Array }
  | { op: 'take'; id: number; key: string }
  | { op: 'drop'; key: string };

/** A worker's answer to an add, sub or take. */
export type WorkerReply = { id: number; ok: true; ms?: number; indexes?: number[]; buffers?: Uint8Array[] } | { id: number; ok: false; code: string | null; message: string };
