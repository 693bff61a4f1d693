import { createHash, randomUUID } from 'node:crypto';
import type { Queue, QueueEvents, Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { stringify as stableStringify } from 'safe-stable-stringify';
import { v5 as uuidv5 } from 'uuid';
import {
  chunks,
  ConflictError,
  execAll,
  JobName,
  NotFoundError,
  QueueName,
  StoreMemoryBatchPayload,
  StoreMemoryPayload,
  orUnavailable,
  RedisDown,
  ValidationError,
  jobDeferral,
  jobIds,
  storeJobContents,
  storeJobPriority,
  toQueuedMemory,
  validate,
  type JobDeferral,
  type Logger,
  type Memory,
  type MemoryInputParsed,
  type MemoryStore,
  type QueuedMemory,
  type StoreJobName,
  type StoreJobResult,
  type Tombstones,
} from 'memory-core';

/** Job states in which a store job may still write its memories. */
const PENDING_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children', 'active']);

/** Namespace of ids derived from Idempotency-Keys (uuid v5). */
export const IDEMPOTENCY_NAMESPACE = '6f1c2a8e-7d3b-4c59-9a0e-3b8f4d2e1a77';
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
/**
 * Marks a key's record as written by a gateway whose ids come from the key and the body's
 * fingerprint. A record without it (the bare fingerprint) was written by an earlier gateway, whose
 * ids came from the key alone: a retry within the record's life keeps that id.
 */
const KEY_AND_BODY = 'kb:';

export interface Caller {
  userId: string;
  requestId: string;
  idempotencyKey?: string | undefined;
}

export interface JobView {
  job_id: string;
  name: string;
  queue: string;
  state: string;
  progress: unknown;
  attempts_made: number;
  result: unknown;
  failed_reason: string | null;
  /** While a store job waits out a store that does not answer: why, and until when. */
  deferred: JobDeferral | null;
  created_at: string;
  finished_at: string | null;
}

/**
 * The gateway's write side: turns validated requests into store jobs (ids chosen here, so a job that
 * runs twice writes the same rows), answers job status, and deletes so that a delete beats a store
 * job still in the queue.
 */
export class IngestService {
  constructor(
    private readonly queues: { ingest: Queue; all: Queue[] },
    private readonly queueEvents: QueueEvents,
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly store: MemoryStore,
    private readonly tombstones: Tombstones,
    private readonly logger: Logger,
  ) {}

  /**
   * With an Idempotency-Key the ids are derived from the key and the body, so a retried request maps
   * to the same memory and job; the same key with a different body is a 409 while the key's record
   * lives (24 h). After that the key is free again: another body gets other ids, so that neither an
   * old job kept under the key's ids (a failed one stays 7 days) nor a delete of the old memory (its
   * tombstone stays 7 days) takes the new request's place.
   */
  private async idsFor(caller: Caller, kind: string, body: unknown): Promise<string> {
    if (caller.idempotencyKey === undefined) return randomUUID();
    if (!IDEMPOTENCY_KEY.test(caller.idempotencyKey)) {
      throw new ValidationError(
        'Idempotency-Key must be 1-255 printable ASCII characters',
        undefined,
        'invalid_idempotency_key',
      );
    }
    const scope = `${caller.userId}:${kind}:${caller.idempotencyKey}`;
    // Keys sorted: a retry whose client serialises the same object in another key order is the same body.
    const fingerprint = createHash('sha256')
      .update(stableStringify(body) ?? '')
      .digest('hex');
    const key = `${this.prefix}:idempotency:${createHash('sha256').update(scope).digest('hex')}`;
    const record = `${KEY_AND_BODY}${fingerprint}`;
    const held = await orUnavailable(async () => {
      // A record that expires between the two commands leaves the key free: take it then, so that
      // another body cannot take it from a request already accepted.
      for (let tries = 0; tries < 3; tries += 1) {
        if (await this.redis.set(key, record, 'EX', IDEMPOTENCY_TTL_SECONDS, 'NX')) return record;
        const current = await this.redis.get(key);
        if (current !== null) return current;
      }
      throw new Error('the Idempotency-Key record kept expiring between SET NX and GET');
    }, RedisDown.queue);
    // A space, which a key cannot hold, ends the key: no key and body share ids with another key.
    if (held === record) return uuidv5(`${scope} ${fingerprint}`, IDEMPOTENCY_NAMESPACE);
    if (held === fingerprint) return uuidv5(scope, IDEMPOTENCY_NAMESPACE);
    throw new ConflictError(
      'this Idempotency-Key was used with a different request body',
      undefined,
      'idempotency_key_reused',
    );
  }

  /**
   * Queues a store job. With an Idempotency-Key the id may be taken already: BullMQ then answers with
   * that job, whatever its state. One that failed for good (e.g. its worker died again and again) runs
   * again with its attempts anew, so that the client's retry can still store what the failure lost.
   */
  private async add(
    name: StoreJobName,
    data: { memories: unknown[] } | { memory: unknown },
    jobId: string,
    mayExist: boolean,
  ): Promise<Job> {
    const priority = storeJobPriority(name, 'memories' in data ? data.memories.length : 1);
    const job = await orUnavailable(
      () => this.queues.ingest.add(name, data, priority === undefined ? { jobId } : { jobId, priority }),
      RedisDown.queue,
    );
    if (!mayExist) return job;
    await orUnavailable(async () => {
      if ((await job.getState()) !== 'failed') return;
      // Two retries at once: the second finds the job no longer failed, which is what it wanted. Its
      // count of starts stays: the worker reads it to know an earlier attempt may have written rows.
      await job.retry('failed', { resetAttemptsMade: true }).catch(async (error) => {
        if ((await job.getState()) === 'failed') throw error;
      });
      this.logger.info({ jobId }, 'failed job queued again by a retried request');
    }, RedisDown.queue);
    return job;
  }

  /**
   * Notes a store's memories as queued (`Tombstones.noteQueued`). A retried request (Idempotency-Key)
   * whose job exists noted them when the job was first queued, and a session delete may have counted
   * them since: only a job that failed for good, which the retry queues again, is noted again, with
   * the times its memories were first accepted.
   */
  private async noteQueued(caller: Caller, jobId: string, memories: QueuedMemory[], batch: boolean) {
    let noted = memories;
    if (caller.idempotencyKey !== undefined) {
      const existing = await orUnavailable(() => this.queues.ingest.getJob(jobId), RedisDown.queue);
      if (existing) {
        if ((await orUnavailable(() => existing.getState(), RedisDown.queue)) !== 'failed') return;
        noted = storeJobContents(existing).memories;
      }
    }
    await this.tombstones.noteQueued(caller.userId, noted, batch ? jobId : undefined);
  }

  async storeOne(input: MemoryInputParsed, caller: Caller): Promise<{ memoryId: string; job: Job }> {
    const memoryId = await this.idsFor(caller, 'store', input);
    const payload = validate(StoreMemoryPayload, {
      user_id: caller.userId,
      request_id: caller.requestId,
      memory: toQueuedMemory(input, memoryId, new Date()),
    });
    const jobId = jobIds.storeMemory(memoryId);
    // Before the job exists: a session delete must count this memory from then on.
    await this.noteQueued(caller, jobId, [payload.memory], false);
    const job = await this.add(JobName.StoreMemory, payload, jobId, caller.idempotencyKey !== undefined);
    this.logger.info({ requestId: caller.requestId, jobId: job.id, memoryId }, 'memory queued');
    return { memoryId, job };
  }

  async storeBatch(inputs: MemoryInputParsed[], caller: Caller): Promise<{ memoryIds: string[]; job: Job }> {
    const batchId = await this.idsFor(caller, 'batch', inputs);
    const now = new Date();
    const memories = inputs.map((input, i) =>
      toQueuedMemory(input, uuidv5(`${batchId}:${i}`, IDEMPOTENCY_NAMESPACE), now),
    );
    const payload = validate(StoreMemoryBatchPayload, {
      user_id: caller.userId,
      request_id: caller.requestId,
      memories,
    });
    const jobId = jobIds.storeBatch(batchId);
    // Before the job exists: a delete of one of these memories must find the job from then on, and a
    // session delete count them.
    await this.noteQueued(caller, jobId, payload.memories, true);
    const job = await this.add(JobName.StoreMemoryBatch, payload, jobId, caller.idempotencyKey !== undefined);
    this.logger.info({ requestId: caller.requestId, jobId: job.id, count: memories.length }, 'batch queued');
    return { memoryIds: memories.map((m) => m.id), job };
  }

  /** Waits for a store job; `undefined` when the timeout passes first. */
  async waitForStored(job: Job, userId: string, timeoutMs: number): Promise<Memory | undefined> {
    let result: StoreJobResult;
    try {
      result = (await job.waitUntilFinished(this.queueEvents, timeoutMs)) as StoreJobResult;
    } catch (error) {
      const message = (error as Error).message;
      if (/timed out/i.test(message)) return undefined;
      throw new ConflictError(`the store job failed: ${message}`, { job_id: job.id }, 'job_failed');
    }
    const outcome = result.memories[0];
    if (!outcome || outcome.status === 'deleted')
      throw new NotFoundError('the memory was deleted before it was stored', undefined, 'memory_not_found');
    const memory = await this.store.get(userId, outcome.id);
    if (!memory)
      throw new NotFoundError('the memory was deleted after it was stored', undefined, 'memory_not_found');
    return memory;
  }

  /**
   * A job's view. A store job is the user's who stored it: another user's is not found. A migration
   * job (and its rollback) spans every user's memories: an operator's only.
   */
  async job(id: string, viewer: { userId: string; operator: boolean }): Promise<JobView> {
    for (const queue of this.queues.all) {
      // State first, then the job: a job seen as completed is read with its result (BullMQ moves it
      // and stores the result in one step). The other order could read the job while it is still
      // active and its state just after it completed: "completed" without a result.
      const state = await orUnavailable(() => queue.getJobState(id), RedisDown.queue);
      if (state === 'unknown') continue;
      const job = await orUnavailable(() => queue.getJob(id), RedisDown.queue);
      if (!job) continue;
      if (queue.name === QueueName.Migration) {
        if (!viewer.operator) break;
      } else if ((job.data as { user_id?: unknown } | undefined)?.user_id !== viewer.userId) break;
      return {
        job_id: id,
        name: job.name,
        queue: queue.name,
        // A queued batch is "prioritized" to BullMQ (`storeJobPriority`): to a client it waits as any.
        state: state === 'prioritized' ? 'waiting' : state,
        progress: job.progress,
        attempts_made: job.attemptsMade,
        result: job.returnvalue ?? null,
        failed_reason: job.failedReason || null,
        deferred: state === 'delayed' ? await this.deferralOf(queue, job) : null,
        created_at: new Date(job.timestamp).toISOString(),
        finished_at: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
      };
    }
    throw new NotFoundError(`job ${id} not found`, undefined, 'job_not_found');
  }

  /**
   * Why a delayed job waits, from the last line of its log: a deferral written while it last ran (an
   * older one, followed by a failed attempt's backoff, is not why it waits now).
   */
  private async deferralOf(queue: Queue, job: Job): Promise<JobDeferral | null> {
    const { logs } = await orUnavailable(() => queue.getJobLogs(job.id!, 0, 0, false), RedisDown.queue);
    const deferral = jobDeferral.parse(logs[0]);
    return deferral && Date.parse(deferral.retry_at) >= (job.processedOn ?? 0) ? deferral : null;
  }

  /**
   * Deletes one memory. The tombstone goes first, so a store job still queued (or running right now)
   * drops the memory or removes it just after writing it; such a delete answers `true` although the
   * store never held the memory. A delete that finds nothing takes its tombstone back.
   */
  async deleteOne(id: string, caller: Caller): Promise<boolean> {
    const batchJobId = await this.tombstones.batchOf(id);
    const jobId = batchJobId ?? jobIds.storeMemory(id);
    const found = await orUnavailable(() => this.queues.ingest.getJob(jobId), RedisDown.queue);
    // Only the caller's own queued memory counts (the tombstone alone never exposes another user's).
    const job =
      (found?.data as { user_id?: string } | undefined)?.user_id === caller.userId ? found : undefined;
    await this.tombstones.markMemoryDeleted(caller.userId, id);
    const state = job ? await orUnavailable(() => job.getState(), RedisDown.queue) : 'none';
    // The job stays: it drops the memory when it runs (before embedding it) and completes saying so,
    // so a `wait=true` store and the job's own view both learn of the delete.
    const pending = PENDING_STATES.has(state);
    // A store that does not answer fails the delete (503) and its mark stays: a queued memory may be
    // dropped for it. The retry answers 200 if no other delete has counted the memory since.
    const stored = await this.store.delete(caller.userId, id);
    // While a memory has a store job, it counts for the one delete that claims it (this one, another
    // by id, or a session delete): a repeated delete, or one after the session delete that counted it,
    // finds it claimed, already gone. A memory whose job is gone counts for the delete that removed it.
    const claim = async () => (await this.tombstones.claimCounted(caller.userId, [id])).has(id);
    // A row this delete removed counts whatever the claim (a session delete racing it may count the
    // memory too); the claim keeps a session delete that comes later from counting it again.
    const claimed = job !== undefined && (pending || stored) && (await claim());
    const deleted = stored || claimed;
    // A job that completed before this delete looked, having dropped the memory for a tombstone (a
    // failed attempt of this delete, or another's that counted it), counts for whichever claims it.
    const droppedByIt =
      !deleted && state === 'completed' && (await this.droppedByJob(jobId, id)) && (await claim());
    const wasThere = deleted || droppedByIt;
    // Nothing of the caller's was there or on its way for this delete: its mark would only block a
    // later store of this id (an Idempotency-Key's id can be known before the store), and hold a key
    // in Redis for days. Another delete's mark stays.
    if (!wasThere) await this.tombstones.takeBackMark(caller.userId, id);
    this.logger.info(
      { requestId: caller.requestId, memoryId: id, deleted: wasThere, jobState: state },
      'memory deleted',
    );
    return wasThere;
  }

  /** Whether the completed job `jobId` dropped memory `id` because a delete had covered it. */
  private async droppedByJob(jobId: string, id: string): Promise<boolean> {
    // Read again: the job seen before it completed carries no result.
    const job = await orUnavailable(() => this.queues.ingest.getJob(jobId), RedisDown.queue);
    const result = job?.returnvalue as StoreJobResult | null | undefined;
    return result?.memories.some((m) => m.requested_id === id && m.status === 'deleted') ?? false;
  }

  /**
   * Deletes a session's memories: the stored ones now, and the ones still queued by the tombstone,
   * which drops them when their job runs. `deleted` counts both; `queued` the second. Each queued
   * memory is counted by one delete only (this one, a concurrent one, or a delete by id: whichever
   * claims it first). A memory accepted in the same instant may be dropped but not counted; after a
   * 503, memories the failed attempt's tombstone already dropped are not counted by the retry.
   */
  async deleteSession(sessionId: string, caller: Caller): Promise<{ deleted: number; queued: number }> {
    const at = new Date();
    await this.tombstones.markSessionDeleted(caller.userId, sessionId, at);
    const pending = await this.stillQueued(
      await this.tombstones.queuedInSession(caller.userId, sessionId, at),
    );
    const removed = await this.store.deleteByScope(
      { user_id: caller.userId, where: { field: 'session_id', op: '$eq', value: sessionId } },
      pending,
    );
    // Memories with a pending job count for the one delete that claims them, whether their row was
    // written yet or not; the other rows removed count here.
    const claimed = await this.tombstones.claimCounted(caller.userId, pending);
    const inStore = new Set(removed.among);
    const queued = [...claimed].filter((id) => !inStore.has(id)).length;
    const deleted = removed.count - removed.among.length + claimed.size;
    this.logger.info({ requestId: caller.requestId, count: deleted, queued }, 'session deleted');
    return { deleted, queued };
  }

  /**
   * Of memories noted as queued, those whose store job may still write them: a job that failed, was
   * removed or completed writes nothing more, and one not found may never be added (a memory whose
   * request adds it in this instant is dropped but not counted).
   */
  private async stillQueued(ids: string[]): Promise<string[]> {
    const batches = await this.tombstones.batchesOf(ids);
    const jobOf = ids.map((id, i) => batches[i] ?? jobIds.storeMemory(id));
    const pending = await this.pendingJobs([...new Set(jobOf)]);
    return ids.filter((_, i) => pending.has(jobOf[i]!));
  }

  /**
   * The store jobs among these that are pending, read straight from BullMQ's keys in pipelines (the
   * job's hash exists, and it is in neither the completed nor the failed set): `getJobState` scans the
   * wait and active lists for each job, which for thousands of jobs stalls Redis.
   */
  private async pendingJobs(ids: string[]): Promise<Set<string>> {
    const queue = this.queues.ingest;
    const pending = new Set<string>();
    for (const part of chunks(ids, 500)) {
      const pipeline = this.redis.pipeline();
      for (const id of part) {
        pipeline.exists(queue.toKey(id));
        pipeline.zscore(queue.keys.completed!, id);
        pipeline.zscore(queue.keys.failed!, id);
      }
      const replies = await orUnavailable(() => execAll(pipeline), RedisDown.queue);
      part.forEach((id, i) => {
        const [exists, completed, failed] = replies.slice(3 * i, 3 * i + 3);
        if (exists && completed === null && failed === null) pending.add(id);
      });
    }
    return pending;
  }
}
