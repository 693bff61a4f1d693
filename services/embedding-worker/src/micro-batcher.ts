import {
  isAppError,
  toMemoryRecord,
  type Embedder,
  type Logger,
  type MemoryRecord,
  type MemoryStore,
  type Metrics,
  type QueuedMemory,
  type Tombstones,
  type StoreJobResult,
  type UpsertResult,
} from 'memory-core';

export type MemoryOutcome = StoreJobResult['memories'][number];

interface Pending {
  /** Its job's queue priority (`storeJobPriority`; 0 for none): lower goes first. */
  priority: number;
  userId: string;
  memory: QueuedMemory;
  /** Its job ran before (a retry, a take-over, a deferral): an earlier attempt may have written it. */
  retried: boolean;
  resolve: (outcome: MemoryOutcome) => void;
  reject: (error: unknown) => void;
}

export interface MicroBatcherOptions {
  /** Most texts per model call and per write. */
  maxBatch: number;
  /**
   * How long the first waiting text waits for others while the worker is busy (a batch embedded or
   * written within the last `waitMs`). An idle worker has no one to wait for: its first text goes at
   * once, with whatever was submitted in the same turn of the event loop.
   */
  waitMs: number;
  /** Writes that may run while the next batch is being embedded. @defaultValue 2 */
  maxWritesInFlight?: number;
}

/**
 * Collects memories from concurrent jobs into micro-batches: one model call and one store write per
 * batch. Embedding (CPU) of the next batch overlaps the write (I/O) of the previous one. Memories
 * that a delete has covered are dropped before the write, and removed again if the delete raced it.
 */
export class MicroBatcher {
  private pending: Pending[] = [];
  /** Cancels the scheduled drain, if any. */
  private cancelWait: (() => void) | undefined;
  private draining = false;
  /** When the last drain ended (performance.now()): within `waitMs` of it, the worker is under load. */
  private drainedAt = -Infinity;
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly embedder: Embedder,
    private readonly store: MemoryStore,
    private readonly tombstones: Tombstones,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly options: MicroBatcherOptions,
  ) {}

  /**
   * Resolves with one outcome per memory, in order, once all are written (or dropped). Memories wait
   * in the order of their job's `priority` (the queue's: lower first, `storeJobPriority`), those of
   * one priority in the order they came: a single store submitted while a bulk load's memories wait
   * goes into the next micro-batch, as BullMQ took its job before the waiting batches.
   */
  submit(
    userId: string,
    memories: QueuedMemory[],
    options: { retried?: boolean; priority?: number } = {},
  ): Promise<MemoryOutcome[]> {
    const retried = options.retried ?? false;
    const priority = options.priority ?? 0;
    const items: Pending[] = [];
    const outcomes = memories.map(
      (memory) =>
        new Promise<MemoryOutcome>((resolve, reject) =>
          items.push({ priority, userId, memory, retried, resolve, reject }),
        ),
    );
    // After every memory whose priority is the same number or a lower one, before any with a larger
    // one (most submissions append).
    let at = this.pending.length;
    while (at > 0 && this.pending[at - 1]!.priority > priority) at -= 1;
    this.pending.splice(at, 0, ...items);
    this.schedule();
    return Promise.all(outcomes);
  }

  private schedule(): void {
    if (this.draining) return;
    if (this.pending.length >= this.options.maxBatch || this.options.waitMs === 0) {
      this.cancelWait?.();
      this.cancelWait = undefined;
      void this.drain();
    } else if (!this.cancelWait) {
      const go = () => {
        this.cancelWait = undefined;
        void this.drain();
      };
      const idle = this.writes.size === 0 && performance.now() - this.drainedAt >= this.options.waitMs;
      if (idle) {
        // After what was submitted in this turn of the event loop (the jobs taken together).
        const handle = setImmediate(go);
        this.cancelWait = () => clearImmediate(handle);
      } else {
        const handle = setTimeout(go, this.options.waitMs);
        this.cancelWait = () => clearTimeout(handle);
      }
    }
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.options.maxBatch);
        await this.embedAndWrite(batch);
      }
    } finally {
      this.draining = false;
      this.drainedAt = performance.now();
    }
  }

  private async embedAndWrite(batch: Pending[]): Promise<void> {
    const fail = (items: Pending[], error: unknown) => items.forEach((item) => item.reject(error));
    let live: Pending[];
    let vectors: Float32Array[];
    try {
      const deleted = await this.tombstones.deletedAmong(
        batch.map((p) => ({ ...p.memory, user_id: p.userId })),
      );
      const dropped = batch.filter((p) => deleted.has(p.memory.id));
      await this.removeEarlierWrites(dropped);
      for (const item of dropped) {
        item.resolve({ requested_id: item.memory.id, id: item.memory.id, status: 'deleted' });
      }
      live = batch.filter((p) => !deleted.has(p.memory.id));
      if (live.length === 0) return;
      const end = this.metrics.embeddingDuration.startTimer();
      vectors = await this.embedder.embed(live.map((p) => p.memory.content));
      end();
      this.metrics.embeddingBatchSize.observe(live.length);
    } catch (error) {
      fail(batch, error);
      return;
    }
    const write = this.write(live, vectors).catch((error: unknown) => fail(live, error));
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
    if (this.writes.size >= (this.options.maxWritesInFlight ?? 2)) await Promise.race(this.writes);
  }

  /**
   * Memories a delete covers may have been written by an earlier attempt of their job, whose removal
   * after the write failed (the store or Redis failed there, or the worker died): a later attempt
   * removes those rows. A delete by id covers any row of the id; a session delete only the row in its
   * session (a row of the same id elsewhere is an older version the queued one would have moved, and
   * stays). Only for jobs that ran before: a first attempt wrote nothing.
   */
  private async removeEarlierWrites(dropped: Pending[]): Promise<void> {
    const rerun = dropped.filter((p) => p.retried);
    if (rerun.length === 0) return;
    // Asked without their session, the tombstones answer for deletes by id alone.
    const byId = await this.tombstones.deletedAmong(
      rerun.map((p) => ({ ...p.memory, user_id: p.userId, session_id: null })),
    );
    await Promise.all(
      rerun.map(async ({ userId, memory }) => {
        if (
          !byId.has(memory.id) &&
          (await this.store.get(userId, memory.id))?.session_id !== memory.session_id
        )
          return;
        await this.store.delete(userId, memory.id);
      }),
    );
  }

  private async write(items: Pending[], vectors: Float32Array[]): Promise<void> {
    const model = this.embedder.info.model;
    const records = items.map((p, i) => toMemoryRecord(p.userId, p.memory, vectors[i]!, model));
    const results = await this.upsert(records);
    // A delete that raced the write left its tombstone first: remove what it covers now.
    const deletedMeanwhile = await this.tombstones.deletedAmong(records);
    for (const id of deletedMeanwhile) {
      const record = records.find((r) => r.id === id)!;
      await this.store.delete(record.user_id, id);
    }
    items.forEach((item, i) => {
      const result = results[i]!;
      if (result instanceof Error) {
        item.reject(result);
        return;
      }
      const status = deletedMeanwhile.has(item.memory.id) ? 'deleted' : result.status;
      this.metrics.memoriesStored.inc({ status });
      item.resolve({ requested_id: result.requested_id, id: result.id, status });
    });
    this.logger.debug({ count: items.length }, 'batch written');
  }

  /**
   * One write for the batch. When the store rejects the batch for what a record holds (a 4xx), the
   * records are written one by one, so that one bad record fails only its own job.
   */
  private async upsert(records: MemoryRecord[]): Promise<(UpsertResult | Error)[]> {
    try {
      return await this.store.upsert(records);
    } catch (error) {
      if (records.length === 1 || !isAppError(error) || error.httpStatus >= 500) throw error;
      this.logger.warn(
        { count: records.length, code: error.code },
        'batch rejected, writing its records one by one',
      );
      const results: (UpsertResult | Error)[] = [];
      for (const record of records) {
        results.push(
          await this.store.upsert([record]).then(
            ([result]) => result!,
            (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
          ),
        );
      }
      return results;
    }
  }

  /** Waits for writes in flight (used on shutdown, after the worker stopped taking jobs). */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.draining || this.writes.size > 0) {
      await Promise.allSettled([...this.writes]);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
