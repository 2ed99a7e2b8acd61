/**
 * The running sums of one aggregation thread: a worker thread's (worker.ts) or, with no worker
 * threads, the main thread's (SumPool inline). Requests are handled strictly in the order given:
 * a subtract always follows the add it undoes, a take sees every add posted before it.
 *
 * Chunk logs: an add that names a log file also appends the chunk's bytes to that file (one file
 * per round and worker) and is answered only once they are on disk (fdatasync). The adds handled
 * in one turn of the thread's event loop share one fdatasync per file, as the main thread's
 * commits share one fsync (group-commit.ts), and it runs on libuv's thread pool: the thread goes
 * on adding while the disk syncs (a blocking fdatasync took as long as the additions). The main
 * thread stores the chunk's row, pointing at those bytes, only after that answer: a row never
 * points at bytes a crash could lose.
 */
import { close, fdatasync, fstatSync, openSync, writeSync } from 'node:fs';
import { createAdder, type ChunkAdder, type RunningSum } from './adder.js';
import type { WorkerReply, WorkerRequest } from './protocol.js';

type Result = { reply: WorkerReply | null; transfer: ArrayBuffer[]; durable?: Promise<void> };

interface LogFile {
  fd: number;
  size: number;
  /** Written since its last fdatasync started. */
  dirty: boolean;
  /** fdatasyncs in flight. */
  syncs: number;
  /** Its round is done: closed once nothing is in flight. */
  closing: boolean;
}

export class SumState {
  private readonly adders = new Map<string, Promise<ChunkAdder>>();
  /**
   * round key → chunk index → the running sums of the chunk's ciphertexts (one, or
   * ciphertextsPerChunk) and the number of chunks in them. Subtracting a sum's only chunk removes
   * the entry: SEAL refuses the zero (transparent) ciphertext it would leave.
   */
  private readonly sums = new Map<string, Map<number, { sum: RunningSum; n: number; perChunk: number }>>();
  /** Open chunk logs by path, and the paths of each round key. */
  private readonly logs = new Map<string, LogFile>();
  private readonly logsOf = new Map<string, Set<string>>();
  /** Every open log, closing ones included. */
  private readonly files = new Set<LogFile>();
  private chain: Promise<unknown> = Promise.resolve();
  /** The fdatasync round that will cover what is written now (started at the next check phase). */
  private nextSync: Promise<void> | null = null;

  /** Queues a request behind the earlier ones; resolves with its reply (null for adder and drop) and the buffers to hand over. */
  async post(m: WorkerRequest): Promise<{ reply: WorkerReply | null; transfer: ArrayBuffer[] }> {
    const next = this.chain.then(() => this.handle(m));
    // The next request waits for this one's computation, not for its bytes to reach the disk.
    this.chain = next.catch(() => undefined);
    const r = await next;
    if (r.durable && r.reply?.ok) {
      try {
        await r.durable;
      } catch (e) {
        return { reply: { id: r.reply.id, ok: false, code: null, message: `writing the chunk log: ${(e as Error).message}` }, transfer: [] };
      }
    }
    return r;
  }

  /**
   * Resolves once what was written so far is on disk: one fdatasync per log written since the last
   * round of them, started after the requests queued now are handled (writes made while it runs
   * wait for the next round).
   */
  private syncSoon(): Promise<void> {
    if (!this.nextSync)
      this.nextSync = new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          this.nextSync = null;
          const dirty = [...this.files].filter((f) => f.dirty);
          const synced = dirty.map((f) => {
            f.dirty = false;
            f.syncs++;
            return new Promise<void>((res, rej) =>
              fdatasync(f.fd, (e) => {
                f.syncs--;
                this.maybeClose(f);
                if (e) rej(e);
                else res();
              }),
            );
          });
          Promise.all(synced).then(() => resolve(), reject);
        }),
      );
    return this.nextSync;
  }

  private append(key: string, path: string, chunk: Uint8Array): { offset: number; length: number } {
    let f = this.logs.get(path);
    if (!f) {
      const fd = openSync(path, 'a', 0o600);
      f = { fd, size: fstatSync(fd).size, dirty: false, syncs: 0, closing: false };
      this.logs.set(path, f);
      this.files.add(f);
      (this.logsOf.get(key) ?? this.logsOf.set(key, new Set()).get(key)!).add(path);
    }
    const offset = f.size;
    let done = 0;
    while (done < chunk.length) done += writeSync(f.fd, chunk, done, chunk.length - done);
    f.size += chunk.length;
    f.dirty = true;
    return { offset, length: chunk.length };
  }

  /** Closes a round's logs, each once its writes are synced (closing a descriptor under a running fdatasync would fail it). */
  private closeLogs(key: string): void {
    for (const path of this.logsOf.get(key) ?? []) {
      const f = this.logs.get(path);
      this.logs.delete(path);
      if (f) {
        f.closing = true;
        this.maybeClose(f);
      }
    }
    this.logsOf.delete(key);
  }

  private maybeClose(f: LogFile): void {
    if (!f.closing || f.syncs > 0 || f.dirty || !this.files.has(f)) return;
    this.files.delete(f);
    close(f.fd, () => undefined);
  }

  private async handle(m: WorkerRequest): Promise<Result> {
    switch (m.op) {
      case 'adder':
        if (!this.adders.has(m.name)) this.adders.set(m.name, createAdder(m.mode, m.params, m.perChunk));
        return { reply: null, transfer: [] };
      case 'drop':
        for (const e of this.sums.get(m.key)?.values() ?? []) e.sum.free();
        this.sums.delete(m.key);
        this.closeLogs(m.key);
        return { reply: null, transfer: [] };
      case 'add':
      case 'sub': {
        try {
          const adder = await this.adders.get(m.adder)!;
          const t0 = performance.now();
          let round = this.sums.get(m.key);
          const acc = round?.get(m.index) ?? null;
          if (m.op === 'sub') {
            if (acc === null) throw new Error(`no sum at index ${m.index} of ${m.key} to subtract from`);
            if (acc.n === 1) {
              acc.sum.free();
              round!.delete(m.index);
            } else {
              acc.sum.sub(m.chunk);
              acc.n--;
            }
          } else if (acc) {
            acc.sum.add(m.chunk);
            acc.n++;
          } else {
            const sum = adder.start(m.chunk);
            if (!round) this.sums.set(m.key, (round = new Map<number, { sum: RunningSum; n: number; perChunk: number }>()));
            round.set(m.index, { sum, n: 1, perChunk: adder.perChunk });
          }
          const ms = performance.now() - t0;
          if (m.op === 'add' && m.log) {
            const at = this.append(m.key, m.log, m.chunk);
            return { reply: { id: m.id, ok: true, ms, log: at }, transfer: [], durable: this.syncSoon() };
          }
          return { reply: { id: m.id, ok: true, ms }, transfer: [] };
        } catch (e) {
          const err = e as Error & { code?: unknown };
          return { reply: { id: m.id, ok: false, code: typeof err.code === 'string' ? err.code : null, message: err.message ?? String(e) }, transfer: [] };
        }
      }
      case 'take': {
        const round = this.sums.get(m.key) ?? new Map<number, { sum: RunningSum; n: number; perChunk: number }>();
        this.sums.delete(m.key);
        this.closeLogs(m.key);
        // By ciphertext index: a chunk's k-th ciphertext is index × perChunk + k.
        const indexes: number[] = [];
        const buffers: Uint8Array[] = [];
        for (const [i, e] of round) {
          try {
            e.sum.save().forEach((b, k) => {
              indexes.push(i * e.perChunk + k);
              buffers.push(b);
            });
          } finally {
            e.sum.free();
          }
        }
        // Handed over, not copied, where a sum owns its whole ArrayBuffer (the HE layer returns fresh arrays).
        const transfer = buffers.filter((b) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength).map((b) => b.buffer as ArrayBuffer);
        return { reply: { id: m.id, ok: true, indexes, buffers }, transfer };
      }
    }
  }
}
