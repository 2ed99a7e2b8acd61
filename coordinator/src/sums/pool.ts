/**
 * Running sums of the rounds in their upload phase, on worker threads.
 *
 * Each ciphertext index belongs to one worker (index mod workers), which holds its sum in memory
 * and adds chunks in the order they are posted; the main thread keeps parsing, verifying and
 * storing. Memory is one sum per index per round in progress: flat in the number of sites.
 *
 * Nothing here is durable. The chunk row stored in each chunk's transaction is the record: when
 * the upload phase ends the sums are taken once (Rounds.finalizeSums) and written as the round's
 * accumulators, and a sum that is not known to hold every stored chunk (the process restarted
 * during the upload phase, or a worker died) is rebuilt from the rows instead. So each chunk
 * counts exactly once whatever instant the process died. Since BFV addition is exact and
 * commutative (shared/src/he/aggregate.ts), the sum does not depend on the order chunks arrive in
 * or on how they are spread over workers: it is bit for bit the serial sum.
 *
 * `workers: 0` runs the same sums inline on the main thread (no threads; tests, tiny machines).
 */
import { closeSync, mkdirSync, openSync, readSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { WireError, isWireErrorCode } from '@twinfed/protocols';
import { heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import type { SumMode } from './adder.js';
import type { WorkerReply, WorkerRequest } from './protocol.js';
import { SumState } from './state.js';

/** Default worker count: one per core beyond the main thread's, at least one, at most 8. */
export function defaultSumWorkers(): number {
  return Math.max(1, Math.min(8, availableParallelism() - 1));
}

interface Lane {
  post(m: WorkerRequest, transfer?: ArrayBuffer[]): void;
  close(): Promise<void>;
  adders: Set<string>;
}

interface RoundState {
  /** Every chunk stored for this round since its upload phase began went through this pool. */
  complete: boolean;
  /** Sealed, taken or dropped: no more chunks begin for it. */
  sealed: boolean;
  /** Chunks whose fate (stored, or refused and undone) is not settled yet. */
  inflight: number;
  waiters: (() => void)[];
}

type Pending = { resolve: (r: WorkerReply & { ok: true }) => void; reject: (e: Error) => void; lane: number };

export class SumPool {
  private readonly lanes: (Lane | null)[];
  private readonly pending = new Map<number, Pending>();
  private readonly rounds = new Map<string, RoundState>();
  private nextId = 1;
  private closing = false;

  /**
   * `chunkDir`: folder of the chunk logs (the durable bytes of the chunks of rounds in progress,
   * one file per round and worker, deleted once the round's sums are written). Without it the
   * chunks' bytes are kept in their database rows (in-memory databases, tests).
   */
  constructor(
    readonly mode: SumMode,
    readonly workerCount: number = defaultSumWorkers(),
    private readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void = () => undefined,
    readonly chunkDir: string | null = null,
  ) {
    if (!Number.isInteger(workerCount) || workerCount < 0 || workerCount > 64) throw new RangeError(`aggregation workers: ${workerCount} (0..64)`);
    this.lanes = Array.from({ length: Math.max(1, workerCount) }, () => null);
    if (chunkDir) mkdirSync(chunkDir, { recursive: true, mode: 0o700 });
  }

  static key(studyId: string, round: number): string {
    return `${studyId}\u0000${round}`;
  }

  // ------------------------------------------------------------ chunk logs

  /** File-name prefix of a round's chunk logs (study ids are [A-Za-z0-9_-]). */
  private static logPrefix(studyId: string, round: number): string {
    return `${encodeURIComponent(studyId)}.r${round}.`;
  }

  /** The study and round a chunk-log file belongs to, or null for another file. */
  static logRound(file: string): { studyId: string; round: number } | null {
    const m = /^(.+)\.r(\d+)\.w\d+\.log$/.exec(file);
    return m ? { studyId: decodeURIComponent(m[1]), round: Number(m[2]) } : null;
  }

  /** The chunk-log files in the folder. */
  logFiles(): string[] {
    if (!this.chunkDir) return [];
    return readdirSync(this.chunkDir).filter((f) => SumPool.logRound(f) !== null);
  }

  /** Reads a chunk's bytes back from its log. */
  readLog(file: string, offset: number, length: number): Uint8Array {
    if (!this.chunkDir) throw new Error('no chunk-log folder');
    const fd = openSync(join(this.chunkDir, file), 'r');
    try {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, out, done, length - done, offset + done);
        if (n === 0) throw new Error(`${file}: ${length} bytes at ${offset} run past its end`);
        done += n;
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }

  /** Deletes a round's chunk logs (its sums are written, or it failed). */
  removeLogs(studyId: string, round: number): void {
    if (!this.chunkDir) return;
    const prefix = SumPool.logPrefix(studyId, round);
    for (const f of this.logFiles()) if (f.startsWith(prefix)) rmSync(join(this.chunkDir, f), { force: true });
  }

  // ---------------------------------------------------------------- rounds

  private round(key: string): RoundState {
    let r = this.rounds.get(key);
    // A round first seen through a chunk (not open()) began its upload phase before this process:
    // chunks stored earlier are not in this sum.
    if (!r) this.rounds.set(key, (r = { complete: false, sealed: false, inflight: 0, waiters: [] }));
    return r;
  }

  /** The round's upload phase begins now, in this process: its sum will hold every chunk stored from here on. */
  open(key: string): void {
    this.rounds.set(key, { complete: true, sealed: false, inflight: 0, waiters: [] });
  }

  /** Whether the round's sum holds every chunk stored for it (else finalizing rebuilds it from the rows). */
  isComplete(key: string): boolean {
    const r = this.rounds.get(key);
    return !!r && r.complete;
  }

  /** No chunk may begin for the round from now on (its survivors are fixed, its sums about to be taken). */
  seal(key: string): void {
    this.round(key).sealed = true;
  }

  /**
   * Marks one chunk in flight for the round (begin → add → stored or undone → end). Refused with
   * TWF_E_ROUND_CLOSED once the round's sum was taken or dropped.
   */
  begin(key: string): void {
    const r = this.round(key);
    if (r.sealed) throw new WireError('TWF_E_ROUND_CLOSED', "the round's upload phase is over");
    r.inflight++;
  }

  end(key: string): void {
    const r = this.rounds.get(key);
    if (!r) return;
    r.inflight--;
    if (r.inflight === 0) for (const w of r.waiters.splice(0)) w();
  }

  /** Resolves when no chunk of the round is in flight. */
  settled(key: string): Promise<void> {
    const r = this.rounds.get(key);
    if (!r || r.inflight === 0) return Promise.resolve();
    return new Promise((res) => r.waiters.push(res));
  }

  // ------------------------------------------------------------ arithmetic

  /**
   * Adds a chunk to the sum of its index; rejects (sum unchanged) with TWF_E_BAD_CIPHERTEXT when it
   * is not a valid chunk. Resolves with the worker's time for the addition, ms, and, with `durable`
   * and a chunk-log folder, where its bytes now are on disk (its row records that, not the bytes).
   */
  add(key: string, params: HeParams, index: number, chunk: Uint8Array, durable = false, perChunk = 1): Promise<{ ms: number; log?: { file: string; offset: number; length: number } }> {
    return this.request('add', key, params, index, chunk, durable, perChunk);
  }

  /**
   * Subtracts a chunk added before (a refused chunk, an abandoned partial upload). If that fails
   * the sum is no longer known to hold exactly the stored chunks: the round is rebuilt from them.
   */
  sub(key: string, params: HeParams, index: number, chunk: Uint8Array, perChunk = 1): Promise<{ ms: number }> {
    return this.request('sub', key, params, index, chunk, false, perChunk).catch((e: unknown) => {
      const r = this.rounds.get(key);
      if (r) r.complete = false;
      throw e;
    });
  }

  private async request(
    op: 'add' | 'sub',
    key: string,
    params: HeParams,
    index: number,
    chunk: Uint8Array,
    durable: boolean,
    perChunk: number,
  ): Promise<{ ms: number; log?: { file: string; offset: number; length: number } }> {
    const laneNo = index % this.lanes.length;
    const lane = this.lane(laneNo);
    const adder = `${this.mode}:${heParamsDigest(params)}:${perChunk}`;
    if (!lane.adders.has(adder)) {
      lane.adders.add(adder);
      lane.post({ op: 'adder', name: adder, mode: this.mode, params, perChunk });
    }
    const [studyId, round] = key.split('\u0000');
    const file = durable && this.chunkDir ? `${SumPool.logPrefix(studyId, Number(round))}w${laneNo}.log` : null;
    // A copy of exactly the chunk, handed over: posting a view would copy its whole backing buffer
    // (a socket read can hold several messages).
    const own = chunk.slice();
    const r = await this.call(laneNo, lane, { op, id: this.nextId++, adder, key, index, chunk: own, ...(file ? { log: join(this.chunkDir!, file) } : {}) }, [own.buffer]);
    return { ms: r.ms ?? 0, ...(file && r.log ? { log: { file, ...r.log } } : {}) };
  }

  /** Takes the round's sums (index → sum) and forgets them; the round accepts no chunk after. */
  async take(key: string): Promise<Map<number, Uint8Array>> {
    const r = this.round(key);
    r.sealed = true;
    // Taken: a later attempt for this round (its write failed) must rebuild from the rows.
    r.complete = false;
    const out = new Map<number, Uint8Array>();
    const started = this.lanes.map((l, i) => (l ? i : -1)).filter((i) => i >= 0);
    const parts = await Promise.all(started.map((i) => this.call(i, this.lanes[i]!, { op: 'take', id: this.nextId++, key })));
    for (const p of parts) p.indexes!.forEach((idx, k) => out.set(idx, p.buffers![k]));
    return out;
  }

  /** Empties the round's sums before they are rebuilt from the stored chunks (the round stays sealed). */
  reset(key: string): void {
    for (const l of this.lanes) l?.post({ op: 'drop', key });
    const r = this.round(key);
    r.sealed = true;
    r.complete = false;
  }

  /**
   * Forgets a failed round's sums. Its bookkeeping (a few bytes) stays, sealed, so that a chunk
   * still on its way cannot start a new sum for it.
   */
  drop(key: string): void {
    this.reset(key);
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.lanes.map((l) => (l ? l.close() : Promise.resolve())));
    for (const p of this.pending.values()) p.reject(new Error('aggregation pool closed'));
    this.pending.clear();
  }

  // --------------------------------------------------------------- threads

  private call(laneNo: number, lane: Lane, m: WorkerRequest & { id: number }, transfer: ArrayBuffer[] = []): Promise<WorkerReply & { ok: true }> {
    return new Promise((resolve, reject) => {
      this.pending.set(m.id, { resolve, reject, lane: laneNo });
      lane.post(m, transfer);
    });
  }

  private settle(reply: WorkerReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve(reply);
    else if (reply.code && isWireErrorCode(reply.code)) p.reject(new WireError(reply.code, reply.message));
    else p.reject(new Error(reply.message));
  }

  private lane(i: number): Lane {
    const have = this.lanes[i];
    if (have) return have;
    const lane = this.workerCount === 0 ? this.inlineLane() : this.workerLane(i);
    this.lanes[i] = lane;
    return lane;
  }

  private inlineLane(): Lane {
    const state = new SumState();
    return {
      adders: new Set(),
      post: (m) => void state.post(m).then(({ reply }) => reply && this.settle(reply)),
      close: async () => undefined,
    };
  }

  private workerLane(i: number): Lane {
    const w = new Worker(new URL('./worker.js', import.meta.url));
    let busy = 0;
    // A worker keeps the process alive only while it owes an answer.
    w.unref();
    const lane: Lane = {
      adders: new Set(),
      post: (m, transfer = []) => {
        if ('id' in m && busy++ === 0) w.ref();
        w.postMessage(m, transfer);
      },
      close: async () => {
        await w.terminate();
      },
    };
    w.on('message', (reply: WorkerReply) => {
      if (--busy === 0) w.unref();
      this.settle(reply);
    });
    const lost = (why: string) => {
      if (this.lanes[i] !== lane) return;
      this.lanes[i] = null;
      if (this.closing) return;
      // Its sums are gone: every round in progress is rebuilt from the stored chunks when it ends.
      for (const r of this.rounds.values()) r.complete = false;
      for (const [id, p] of this.pending)
        if (p.lane === i) {
          this.pending.delete(id);
          p.reject(new Error(`aggregation worker ${i} ${why}`));
        }
      this.log('error', `aggregation worker ${i} ${why}; the sums of the rounds in progress will be rebuilt from the stored chunks`);
    };
    w.on('error', (e) => lost(`failed: ${e.message}`));
    w.on('exit', (code) => lost(`exited with code ${code}`));
    return lane;
  }
}
