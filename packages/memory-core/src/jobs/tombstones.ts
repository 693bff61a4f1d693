import type { ChainableCommander, Redis } from 'ioredis';
import { orUnavailable, RedisDown } from '../errors';
import { chunks } from '../runtime/chunks';

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
 * Runs a pipeline and returns each command's reply. ioredis resolves a pipeline whose commands failed
 * (Redis gone mid-way included) with the errors in its replies: they are thrown here, so that a caller
 * under `orUnavailable` answers 503 rather than reading a failed command as an empty reply.
 */
export async function execAll(pipeline: ChainableCommander): Promise<unknown[]> {
  const replies = await pipeline.exec();
  if (!replies) throw new Error('the Redis transaction was aborted');
  return replies.map(([error, reply]) => {
    if (error) throw error;
    return reply;
  });
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
   * Marks a memory of `userId` deleted. The tombstone counts the deletes that marked it, so that one
   * delete taking its mark back cannot undo another's.
   */
  async markMemoryDeleted(userId: string, id: string): Promise<void> {
    const key = this.memoryKey(userId, id);
    await this.run(() => execAll(this.redis.multi().incr(key).expire(key, TOMBSTONE_TTL_SECONDS)));
  }

  /**
   * Takes back one delete's mark, for a delete that found nothing to delete: the tombstone goes with
   * the last mark (another delete's mark stays).
   */
  async takeBackMark(userId: string, id: string): Promise<void> {
    await this.run(() => this.redis.eval(TAKE_BACK_ONE, 1, this.memoryKey(userId, id)));
  }

  /** The batch job that holds memory `id`, while that job has not completed. */
  batchOf(id: string): Promise<string | null> {
    return this.run(() => this.redis.get(this.batchKey(id)));
  }

  /** Per user: set by the one delete that counted a queued memory as deleted. */
  private countedKey(userId: string, id: string) {
    return `${this.prefix}:counted:memory:${userId}:${id}`;
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
    await orUnavailable(() => execAll(pipeline), RedisDown.queue);
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
    await this.run(() => execAll(pipeline));
  }

  /** The memories noted as queued in a session that were accepted at or before `at`. */
  queuedInSession(userId: string, sessionId: string, at: Date): Promise<string[]> {
    return this.run(() => this.redis.zrangebyscore(this.queuedKey(userId, sessionId), '-inf', at.getTime()));
  }

  /**
   * Claims queued memories of `userId` for the delete that counts them: each is counted by one
   * delete only, whichever claims it first (by id or by session, concurrent or not). Returns the ids
   * this call claimed.
   */
  async claimCounted(userId: string, ids: string[]): Promise<Set<string>> {
    const claimed = new Set<string>();
    for (const part of chunks(ids, 1_000)) {
      const pipeline = this.redis.pipeline();
      for (const id of part)
        pipeline.set(this.countedKey(userId, id), '1', 'EX', TOMBSTONE_TTL_SECONDS, 'NX');
      const replies = await this.run(() => execAll(pipeline));
      part.forEach((id, i) => {
        if (replies[i] === 'OK') claimed.add(id);
      });
    }
    return claimed;
  }

  /** The batch job of each memory that has one still recorded (`null` for the others). */
  batchesOf(ids: string[]): Promise<(string | null)[]> {
    return this.getMany(ids.map((id) => this.batchKey(id)));
  }

  /** MGET in parts of 1,000 keys, so that a session of many memories does not hold Redis up. */
  private async getMany(keys: string[]): Promise<(string | null)[]> {
    const values: (string | null)[] = [];
    for (const part of chunks(keys, 1_000)) values.push(...(await this.run(() => this.redis.mget(part))));
    return values;
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
