import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { createRedis, QueueName } from 'memory-core';
import { servers } from './paths';
import { nowMs } from './stats';

/**
 * The completion events of a bench stack's ingest queue, from the Redis stream BullMQ writes them to
 * (one blocking read, as the gateway's `wait=true` waits). The ingestion section waits on these rather
 * than polling the store for its row count: on 2 cores, a count every few milliseconds takes CPU from
 * the very run it measures (a Chroma `count` cost the bench 0.20 ms per memory). A job completes only
 * once the worker's write of its memories is committed.
 */
export class IngestJobEvents {
  /** Each completed job's id, with when its event arrived (`nowMs`). */
  private readonly completed = new Map<string, number>();
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly events: QueueEvents,
    private readonly connection: Redis,
  ) {
    events.on('completed', ({ jobId }) => {
      this.completed.set(jobId, nowMs());
      for (const wake of this.waiters) wake();
    });
  }

  /** Listening to the ingest queue under `queuePrefix`, its events so far included. */
  static async open(queuePrefix: string): Promise<IngestJobEvents> {
    // QueueEvents blocks on its connection, so it gets one of its own.
    const connection = createRedis(servers.redisUrl, 'worker');
    // From the stream's start: a stack's stream holds only its own jobs' events, and reading it whole
    // misses none that complete while the first read is being set up.
    const events = new QueueEvents(QueueName.Ingest, { connection, prefix: queuePrefix, lastEventId: '0' });
    await events.waitUntilReady();
    return new IngestJobEvents(events, connection);
  }

  /** When the job's completion event arrived (`nowMs`); undefined while it has not. */
  completedAt(jobId: string): number | undefined {
    return this.completed.get(jobId);
  }

  /** How many of `jobIds` have completed. */
  countCompleted(jobIds: readonly string[]): number {
    return jobIds.reduce((n, id) => n + (this.completed.has(id) ? 1 : 0), 0);
  }

  /**
   * Resolves once every one of `jobIds` has completed; rejects at `deadline` (epoch ms), saying how
   * many had.
   */
  async waitFor(jobIds: readonly string[], deadline: number): Promise<void> {
    for (;;) {
      if (this.countCompleted(jobIds) === jobIds.length) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${this.countCompleted(jobIds)} of ${jobIds.length} store jobs completed in time`);
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  async close(): Promise<void> {
    await this.events.close();
    this.connection.disconnect();
  }
}
