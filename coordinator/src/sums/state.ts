/**
 * The running sums of one aggregation thread: a worker thread's (worker.ts) or, with no worker
 * threads, the main thread's (SumPool inline). Requests are handled strictly in the order given:
 * a subtract always follows the add it undoes, a take sees every add posted before it.
 */
import { createAdder, type ChunkAdder } from './adder.js';
import type { WorkerReply, WorkerRequest } from './protocol.js';

export class SumState {
  private readonly adders = new Map<string, Promise<ChunkAdder>>();
  /** round key → ciphertext index → sum. */
  private readonly sums = new Map<string, Map<number, Uint8Array>>();
  private chain: Promise<unknown> = Promise.resolve();

  /** Queues a request behind the earlier ones; resolves with its reply (null for adder and drop) and the buffers to hand over. */
  post(m: WorkerRequest): Promise<{ reply: WorkerReply | null; transfer: ArrayBuffer[] }> {
    const next = this.chain.then(() => this.handle(m));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async handle(m: WorkerRequest): Promise<{ reply: WorkerReply | null; transfer: ArrayBuffer[] }> {
    switch (m.op) {
      case 'adder':
        if (!this.adders.has(m.name)) this.adders.set(m.name, createAdder(m.mode, m.params));
        return { reply: null, transfer: [] };
      case 'drop':
        this.sums.delete(m.key);
        return { reply: null, transfer: [] };
      case 'add':
      case 'sub': {
        try {
          const adder = await this.adders.get(m.adder)!;
          const t0 = performance.now();
          let round = this.sums.get(m.key);
          const acc = round?.get(m.index) ?? null;
          if (m.op === 'sub' && acc === null) throw new Error(`no sum at index ${m.index} of ${m.key} to subtract from`);
          const next = m.op === 'add' ? adder.add(acc, m.chunk) : adder.sub(acc!, m.chunk);
          if (!round) this.sums.set(m.key, (round = new Map<number, Uint8Array>()));
          round.set(m.index, next);
          return { reply: { id: m.id, ok: true, ms: performance.now() - t0 }, transfer: [] };
        } catch (e) {
          const err = e as Error & { code?: unknown };
          return { reply: { id: m.id, ok: false, code: typeof err.code === 'string' ? err.code : null, message: err.message ?? String(e) }, transfer: [] };
        }
      }
      case 'take': {
        const round = this.sums.get(m.key) ?? new Map<number, Uint8Array>();
        this.sums.delete(m.key);
        const indexes = [...round.keys()];
        const buffers = indexes.map((i) => round.get(i)!);
        // Handed over, not copied, where a sum owns its whole ArrayBuffer (the HE layer returns fresh arrays).
        const transfer = buffers.filter((b) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength).map((b) => b.buffer as ArrayBuffer);
        return { reply: { id: m.id, ok: true, indexes, buffers }, transfer };
      }
    }
  }
}
