import type { CoordinatorStore } from './store/index.js';

interface Item {
  fn: (tx: CoordinatorStore) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit (the technique of DeWitt et al., "Implementation techniques for main memory
 * database systems", SIGMOD 1984, §4; PostgreSQL's commit_delay): the small transactions of many
 * messages that arrive together share one SQLite commit, so one fsync (synchronous = FULL)
 * serves them all instead of one each. The coordinator's durability is unchanged: each `run`
 * resolves only after the commit that holds its writes, and its caller acknowledges the message
 * only then.
 *
 * Requests queued in one turn of the event loop are flushed together at the next check phase
 * (setImmediate): no timer, so a lone message waits for nothing. Under load (the last commit
 * carried at least BUSY_BATCH requests) the flush waits `delayMs` more (PostgreSQL's commit_delay
 * with commit_siblings): a commit's cost is mostly its fsync and the pages it rewrites (the round's
 * row, each site's update row, the audit log's last page), the same for 8 requests or 40, so
 * bigger batches cut the main thread's blocked time per chunk. Each runs in its own savepoint
 * inside the batch's transaction: one that throws is rolled back alone and rejects alone; the
 * others commit. If the commit itself fails, every request of the batch rejects. Like any
 * transaction here, `fn` is synchronous and re-reads what it decides on.
 */
/** A commit that carried this many requests means the coordinator is busy: the next one waits delayMs. */
const BUSY_BATCH = 4;

export class GroupCommit {
  private queue: Item[] = [];
  private scheduled = false;
  private lastBatch = 0;
  /** Batches committed and requests they carried (for the bench's breakdown and metrics). */
  readonly stats = { commits: 0, requests: 0, maxBatch: 0 };

  constructor(
    private readonly store: CoordinatorStore,
    private readonly onCommit: (requests: number) => void = () => undefined,
    private readonly maxBatch = 512,
    /** Extra wait of a flush under load, ms (0: none). */
    private readonly delayMs = 2,
  ) {}

  run<T>(fn: (tx: CoordinatorStore) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        if (this.delayMs > 0 && this.lastBatch >= BUSY_BATCH) setTimeout(() => this.flush(), this.delayMs);
        else setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.queue.splice(0, this.maxBatch);
    this.lastBatch = items.length;
    if (this.queue.length) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
    const results: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.store.transaction((tx) => {
        for (const it of items) {
          try {
            results.push({ ok: true, value: tx.transaction(it.fn) });
          } catch (error) {
            results.push({ ok: false, error });
          }
        }
      });
    } catch (e) {
      for (const it of items) it.reject(e);
      return;
    }
    this.stats.commits++;
    this.stats.requests += items.length;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, items.length);
    this.onCommit(items.length);
    items.forEach((it, i) => {
      const r = results[i];
      if (r.ok) it.resolve(r.value);
      else it.reject(r.error);
    });
  }
}
