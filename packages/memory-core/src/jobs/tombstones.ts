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

/** A queued memory, as far as the bookkeeping of deletes needs it. */
export type QueuedRef = Pick<TombstoneCandidate, 'id' | 'session_id' | 'created_at'>;

/** Deletes a key only while its value is 1 (one delete's tombstone). */
const DELETE_IF_ONE = `if redis.call('GET', KEYS[1]) == '1' then return redis.call('DEL', KEYS[1]) end return 0`;

function bySession(memories: QueuedRef[]): Map<string, QueuedRef[]> {
  const sessions = new Map<string, QueuedRef[]>();
  for (const m of memories) {
    if (m.session_id === null) continue;
    const members = sessions.get(m.session_id);
    if (members) members.push(m);
    else sessions.set(m.session_id, [m]);
  }
  return sessions;
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

  /**
   * Marks a memory of `userId` deleted; `true` when no earlier delete of it had. The tombstone counts
   * the deletes that set it, so that one delete taking it back cannot undo another's.
   */
  async markMemoryDeleted(userId: string, id: string): Promise<boolean> {
    const key = this.memoryKey(userId, id);
    const replies = await this.run(() =>
      this.redis.multi().incr(key).expire(key, TOMBSTONE_TTL_SECONDS).exec(),
    );
    return Number(replies?.[0]?.[1]) === 1;
  }

  /** Takes back a tombstone that covered nothing. */
  async unmarkMemoryDeleted(userId: string, id: string): Promise<void> {
    await this.run(() => this.redis.del(this.memoryKey(userId, id)));
  }

  /**
   * Takes back the tombstone of a delete that failed, only while no other delete has marked the
   * memory since: that one counted on the tombstone (and may have answered that it was gone).
   */
  async unmarkFailedDelete(userId: string, id: string): Promise<void> {
    await this.run(() => this.redis.eval(DELETE_IF_ONE, 1, this.memoryKey(userId, id)));
  }

  /** The batch job that holds memory `id`, while that job has not completed. */
  batchOf(id: string): Promise<string | null> {
    return this.run(() => this.redis.get(this.batchKey(id)));
  }

  /** Per user and session: the memories of the session still queued, scored by when they were accepted. */
  private queuedKey(userId: string, sessionId: string) {
    return `${this.prefix}:queued:session:${userId}:${sessionId}`;
  }

  /**
   * Records queued memories, before their job exists: for a batch job, which job holds each memory
   * (a memory's own id leads to its job only for single stores, so a delete by id needs this), until
   * the job completes; for each session, which of its memories were queued when (a session delete
   * counts the ones its tombstone drops). Entries older than a tombstone's life are pruned here.
   */
  async noteQueued(userId: string, memories: QueuedRef[], batchJobId?: string): Promise<void> {
    const sessions = bySession(memories);
    if (batchJobId === undefined && sessions.size === 0) return;
    const pipeline = this.redis.multi();
    if (batchJobId !== undefined) {
      for (const m of memories) pipeline.set(this.batchKey(m.id), batchJobId, 'EX', TOMBSTONE_TTL_SECONDS);
    }
    const stale = Date.now() - TOMBSTONE_TTL_SECONDS * 1000;
    for (const [sessionId, members] of sessions) {
      const key = this.queuedKey(userId, sessionId);
      // NX: a retried request keeps the time its memory was first accepted.
      pipeline.zadd(key, 'NX', ...members.flatMap((m) => [Date.parse(m.created_at), m.id]));
      pipeline.zremrangebyscore(key, '-inf', stale);
      pipeline.expire(key, TOMBSTONE_TTL_SECONDS);
    }
    // Part of queuing the memories: a store that cannot do it answers as the queue does.
    await orUnavailable(() => pipeline.exec(), RedisDown.queue);
  }

  /** Forgets what `noteQueued` recorded: called once the job has completed. */
  async forgetQueued(userId: string, memories: QueuedRef[], batch: boolean): Promise<void> {
    const sessions = bySession(memories);
    if (!(batch && memories.length > 0) && sessions.size === 0) return;
    const pipeline = this.redis.multi();
    if (batch && memories.length > 0) pipeline.del(...memories.map((m) => this.batchKey(m.id)));
    for (const [sessionId, members] of sessions) {
      pipeline.zrem(this.queuedKey(userId, sessionId), ...members.map((m) => m.id));
    }
    await this.run(() => pipeline.exec());
  }

  /**
   * Takes the memories of a session queued at or before `at` out of its record, for the session delete
   * whose tombstone covers them: a later delete of the session does not count them again. Some may
   * no longer be queued (their job failed, was removed, or never got added): the caller checks.
   */
  async takeQueuedInSession(userId: string, sessionId: string, at: Date): Promise<string[]> {
    const key = this.queuedKey(userId, sessionId);
    const replies = await this.run(() =>
      this.redis
        .multi()
        .zrangebyscore(key, '-inf', at.getTime())
        .zremrangebyscore(key, '-inf', at.getTime())
        .exec(),
    );
    return (replies?.[0]?.[1] as string[] | undefined) ?? [];
  }

  /** Of these memories of `userId`, the ones a delete by id has covered. */
  async deletedById(userId: string, ids: string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const values = await this.run(() => this.redis.mget(ids.map((id) => this.memoryKey(userId, id))));
    return new Set(ids.filter((_, i) => values[i] !== null));
  }

  /** The batch job of each memory that has one still recorded (`null` for the others). */
  async batchesOf(ids: string[]): Promise<(string | null)[]> {
    if (ids.length === 0) return [];
    return this.run(() => this.redis.mget(ids.map((id) => this.batchKey(id))));
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
