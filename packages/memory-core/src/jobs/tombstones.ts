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

/** One delete's mark off a tombstone; the key goes with the last one. */
const TAKE_BACK_ONE = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1`;

/** Puts a key back to ARGV[2] (or deletes it when that is empty) while it still holds ARGV[1]. */
const RESTORE_IF_MINE = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
return redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')`;

/** A memory noted as queued in a session, with when it was accepted (ms). */
export interface QueuedEntry {
  id: string;
  acceptedAt: number;
}

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
   * Takes back a failed delete's own mark: the tombstone goes once no other delete's mark is left on
   * it (another delete that counted on it keeps it; two that both failed leave none).
   */
  async unmarkFailedDelete(userId: string, id: string): Promise<void> {
    await this.run(() => this.redis.eval(TAKE_BACK_ONE, 1, this.memoryKey(userId, id)));
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
  async takeQueuedInSession(userId: string, sessionId: string, at: Date): Promise<QueuedEntry[]> {
    const key = this.queuedKey(userId, sessionId);
    const replies = await this.run(() =>
      this.redis
        .multi()
        .zrangebyscore(key, '-inf', at.getTime(), 'WITHSCORES')
        .zremrangebyscore(key, '-inf', at.getTime())
        .exec(),
    );
    const flat = (replies?.[0]?.[1] as string[] | undefined) ?? [];
    const entries: QueuedEntry[] = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ id: flat[i]!, acceptedAt: Number(flat[i + 1]) });
    return entries;
  }

  /** Puts back what `takeQueuedInSession` took, for a session delete that then failed. */
  async giveBackQueued(userId: string, sessionId: string, entries: QueuedEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const key = this.queuedKey(userId, sessionId);
    await this.run(() =>
      this.redis
        .multi()
        .zadd(key, 'NX', ...entries.flatMap((e) => [e.acceptedAt, e.id]))
        .expire(key, TOMBSTONE_TTL_SECONDS)
        .exec(),
    );
  }

  /** Of these memories of `userId`, the ones a delete by id has covered. */
  async deletedById(userId: string, ids: string[]): Promise<Set<string>> {
    const values = await this.getMany(ids.map((id) => this.memoryKey(userId, id)));
    return new Set(ids.filter((_, i) => values[i] !== null));
  }

  /** The batch job of each memory that has one still recorded (`null` for the others). */
  batchesOf(ids: string[]): Promise<(string | null)[]> {
    return this.getMany(ids.map((id) => this.batchKey(id)));
  }

  /** MGET in parts of 1,000 keys, so that a session of many memories does not hold Redis up. */
  private async getMany(keys: string[]): Promise<(string | null)[]> {
    const values: (string | null)[] = [];
    for (let start = 0; start < keys.length; start += 1_000) {
      values.push(...(await this.run(() => this.redis.mget(keys.slice(start, start + 1_000)))));
    }
    return values;
  }

  /** Marks a session of `userId` deleted at `at`; returns the time of the delete before it, if any. */
  async markSessionDeleted(userId: string, sessionId: string, at: Date): Promise<number | null> {
    const previous = await this.run(() =>
      this.redis.set(
        this.sessionKey(userId, sessionId),
        String(at.getTime()),
        'EX',
        TOMBSTONE_TTL_SECONDS,
        'GET',
      ),
    );
    return previous === null ? null : Number(previous);
  }

  /**
   * Takes back a session delete that failed: the tombstone it set goes back to the one before it (or
   * goes), unless a later delete of the session has set its own since.
   */
  async unmarkSessionDeleted(userId: string, sessionId: string, at: Date, previous: number | null) {
    await this.run(() =>
      this.redis.eval(
        RESTORE_IF_MINE,
        1,
        this.sessionKey(userId, sessionId),
        String(at.getTime()),
        previous === null ? '' : String(previous),
      ),
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
