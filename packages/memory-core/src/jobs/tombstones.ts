import type { Redis } from 'ioredis';
import { orUnavailable, RedisDown } from '../errors';

/** How long a tombstone outlives the delete: longer than any store job's retries. */
export const TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600;

export interface TombstoneCandidate {
  id: string;
  user_id: string;
  session_id: string | null;
  /** When the memory was accepted (ISO 8601). A session delete covers memories accepted before it. */
  created_at: string;
}

/**
 * Deletes win over store jobs still in the queue: the gateway leaves a tombstone when it deletes, and
 * the worker drops (or removes right after writing) every memory a tombstone covers. Keys live under
 * the queue prefix, so on Redis Cluster they share the queue's hash slot.
 */
export class Tombstones {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** Per user: a delete by one user never drops another user's memory, whatever the id. */
  private memoryKey(userId: string, id: string) {
    return `${this.prefix}:tombstone:memory:${userId}:${id}`;
  }

  private sessionKey(userId: string, sessionId: string) {
    return `${this.prefix}:tombstone:session:${userId}:${sessionId}`;
  }

  private batchKey(id: string) {
    return `${this.prefix}:batch-of:memory:${id}`;
  }

  /** Marks a memory of `userId` deleted; `true` when no earlier delete of it had. */
  async markMemoryDeleted(userId: string, id: string): Promise<boolean> {
    const previous = await this.run(() =>
      this.redis.set(this.memoryKey(userId, id), '1', 'EX', TOMBSTONE_TTL_SECONDS, 'GET'),
    );
    return previous === null;
  }

  /** Takes back a tombstone that covered nothing. */
  async unmarkMemoryDeleted(userId: string, id: string): Promise<void> {
    await this.run(() => this.redis.del(this.memoryKey(userId, id)));
  }

  /** The batch job that holds memory `id`, while that job has not completed. */
  batchOf(id: string): Promise<string | null> {
    return this.run(() => this.redis.get(this.batchKey(id)));
  }

  /**
   * Records which batch job holds each memory, until that job completes: a memory's own id leads to
   * its job only for single stores (the job id derives from it), so a delete needs this for batches.
   */
  async noteBatchMembers(jobId: string, memoryIds: string[]): Promise<void> {
    if (memoryIds.length === 0) return;
    const pipeline = this.redis.multi();
    for (const id of memoryIds) pipeline.set(this.batchKey(id), jobId, 'EX', TOMBSTONE_TTL_SECONDS);
    await this.run(() => pipeline.exec());
  }

  /** Forgets the batch job of these memories: called once the job has completed. */
  async forgetBatchMembers(memoryIds: string[]): Promise<void> {
    if (memoryIds.length === 0) return;
    await this.run(() => this.redis.del(...memoryIds.map((id) => this.batchKey(id))));
  }

  async markSessionDeleted(userId: string, sessionId: string, at: Date): Promise<void> {
    await this.run(() =>
      this.redis.set(this.sessionKey(userId, sessionId), String(at.getTime()), 'EX', TOMBSTONE_TTL_SECONDS),
    );
  }

  /** The ids among `candidates` that a delete has covered. */
  async deletedAmong(candidates: TombstoneCandidate[]): Promise<Set<string>> {
    if (candidates.length === 0) return new Set();
    const keys = candidates.flatMap((c) => [
      this.memoryKey(c.user_id, c.id),
      c.session_id === null ? this.memoryKey(c.user_id, c.id) : this.sessionKey(c.user_id, c.session_id),
    ]);
    const values = await this.run(() => this.redis.mget(keys));
    const deleted = new Set<string>();
    candidates.forEach((c, i) => {
      const byId = values[2 * i];
      const bySession = c.session_id === null ? null : values[2 * i + 1];
      if (byId || (bySession && Date.parse(c.created_at) <= Number(bySession))) deleted.add(c.id);
    });
    return deleted;
  }

  private run<T>(command: () => Promise<T>): Promise<T> {
    return orUnavailable(command, RedisDown.state);
  }
}
