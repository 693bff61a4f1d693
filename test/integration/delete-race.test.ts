import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import {
  PgvectorMemoryStore,
  QueueName,
  Tombstones,
  defaultJobOptions,
  MemoryInput,
  toMemoryRecord,
  toQueuedMemory,
  type QueuedMemory,
  validate,
  type StoreJobResult,
} from 'memory-core';
import { IngestService } from '../../services/api-gateway/src/ingest.service';
import { forgetFinishedJob } from '../../services/embedding-worker/src/processors/store-memory.processor';
import { createTestSchema, servers, uniqueName } from '../setup/servers';

const logger = pino({ level: 'silent' });

/**
 * Tombstones that run `between` right after a delete by id marks its tombstone, and `betweenSession`
 * right after a session delete marks its own, once each.
 */
class InterleavedTombstones extends Tombstones {
  between: (() => Promise<unknown>) | undefined;
  betweenSession: (() => Promise<unknown>) | undefined;

  override async markMemoryDeleted(userId: string, id: string): Promise<void> {
    await super.markMemoryDeleted(userId, id);
    const between = this.between;
    this.between = undefined;
    await between?.();
  }

  override async markSessionDeleted(userId: string, sessionId: string, at: Date): Promise<void> {
    await super.markSessionDeleted(userId, sessionId, at);
    const between = this.betweenSession;
    this.betweenSession = undefined;
    await between?.();
  }
}

/**
 * A delete races the store job of its memory: the gateway's IngestService against a real queue in
 * Redis and a real PostgreSQL store. The test plays the worker by hand, so that a job completes at an
 * exact point of the delete.
 */
describe('a delete racing its store job', () => {
  let schema: { schema: string; drop: () => Promise<void> };
  let store: PgvectorMemoryStore;
  let connection: Redis;
  let queue: Queue;
  let events: QueueEvents;
  let worker: Worker;
  let tombstones: InterleavedTombstones;
  let service: IngestService;
  const prefix = `{${uniqueName('delrace')}}`;
  const caller = { userId: 'racer', requestId: 'r-1' };

  beforeAll(async () => {
    schema = await createTestSchema('delrace');
    store = new PgvectorMemoryStore({ connectionString: servers.databaseUrl, schema: schema.schema }, logger);
    await store.initialize();
    connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(QueueName.Ingest, { connection, prefix, defaultJobOptions });
    events = new QueueEvents(QueueName.Ingest, { connection: { url: servers.redisUrl }, prefix });
    worker = new Worker(QueueName.Ingest, null, { connection: { url: servers.redisUrl }, prefix });
    tombstones = new InterleavedTombstones(connection, prefix);
    service = new IngestService(
      { ingest: queue, all: [queue] },
      events,
      connection,
      prefix,
      store,
      tombstones,
      logger,
    );
  });
  afterAll(async () => {
    await Promise.all([worker.close(), events.close()]);
    await queue.obliterate({ force: true });
    await queue.close();
    await Promise.all([store.close(), connection.quit()]);
    await schema.drop();
  });

  const input = (content: string) => validate(MemoryInput, { content, session_id: 's' });

  /** Takes the next job as the worker would; returns it with the lock token it needs. */
  async function take(): Promise<{ job: Job; token: string }> {
    const token = randomUUID();
    const job = (await worker.getNextJob(token)) as Job;
    expect(job).toBeDefined();
    return { job, token };
  }

  /** Completes a taken job with the result a worker gives when a tombstone dropped these ids. */
  function completeAsDropped(taken: { job: Job; token: string }, ids: string[]) {
    const result: StoreJobResult = {
      memories: ids.map((id) => ({ requested_id: id, id, status: 'deleted' })),
    };
    return taken.job.moveToCompleted(result, taken.token, false);
  }

  it('answers deleted when the job completes, dropping the memory, while the delete runs', async () => {
    const { memoryId } = await service.storeOne(input('dropped while the delete ran'), caller);
    const taken = await take();
    tombstones.between = () => completeAsDropped(taken, [memoryId]);
    expect(await service.deleteOne(memoryId, caller)).toBe(true);
    expect(await queue.getJobState(taken.job.id!)).toBe('completed');
    // Deleting it again finds nothing: the first delete took it.
    expect(await service.deleteOne(memoryId, caller)).toBe(false);
  });

  it('leaves a queued single store in the queue, to complete saying the memory was deleted', async () => {
    const { memoryId, job } = await service.storeOne(input('deleted while queued'), caller);
    expect(await service.deleteOne(memoryId, caller)).toBe(true);
    // Still there: a `wait=true` store and the job's own view learn of the delete when it runs.
    expect(await queue.getJobState(job.id!)).toBe('waiting');
    const taken = await take();
    expect(taken.job.id).toBe(job.id);
    await completeAsDropped(taken, [memoryId]);
  });

  it('takes its tombstone back when it finds nothing, so a later store of the id is kept', async () => {
    const keyed = { ...caller, idempotencyKey: `later-${randomUUID()}` };
    const { memoryId, job } = await service.storeOne(input('stored after a delete found nothing'), keyed);
    // The same id, deleted by the caller before its job existed (an Idempotency-Key makes it known).
    await job.remove();
    expect(await service.deleteOne(memoryId, caller)).toBe(false);
    const candidate = {
      id: memoryId,
      user_id: caller.userId,
      session_id: 's',
      created_at: new Date().toISOString(),
    };
    expect(await tombstones.deletedAmong([candidate])).toEqual(new Set());
    await service.storeOne(input('stored after a delete found nothing'), keyed);
    await completeAsDropped(await take(), []);
  });

  it('answers 503 when the store does not answer, and its retry counts the queued memory', async () => {
    // The same gateway with PostgreSQL down: nothing listens on the store's port.
    const downStore = new PgvectorMemoryStore(
      { connectionString: 'postgres://memory:memory@127.0.0.1:1/memory', schema: schema.schema },
      logger,
    );
    const down = new IngestService(
      { ingest: queue, all: [queue] },
      events,
      connection,
      prefix,
      downStore,
      tombstones,
      logger,
    );
    try {
      const { memoryId, job } = await service.storeOne(input('deleted while the store was down'), caller);
      await expect(down.deleteOne(memoryId, caller)).rejects.toMatchObject({ httpStatus: 503 });
      const candidate = {
        id: memoryId,
        user_id: caller.userId,
        session_id: 's',
        created_at: new Date().toISOString(),
      };
      // Its mark stays (the memory may be dropped for it), and nothing counted the memory yet.
      expect(await tombstones.deletedAmong([candidate])).toEqual(new Set([memoryId]));
      expect(await service.deleteOne(memoryId, caller)).toBe(true);
      expect(await service.deleteOne(memoryId, caller)).toBe(false);
      const taken = await take();
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, [memoryId]);

      // The worker drops it between the failed delete and its retry: the retry still counts it.
      const dropped = await service.storeOne(input('dropped between a failed delete and its retry'), caller);
      await expect(down.deleteOne(dropped.memoryId, caller)).rejects.toMatchObject({ httpStatus: 503 });
      await completeAsDropped(await take(), [dropped.memoryId]);
      expect(await service.deleteOne(dropped.memoryId, caller)).toBe(true);
      expect(await service.deleteOne(dropped.memoryId, caller)).toBe(false);

      // Another delete of the same memory lands while the failing one waits on the store: it counts
      // the memory, and the failing one's retry finds it gone.
      const raced = await service.storeOne(input('deleted twice while the store flapped'), caller);
      tombstones.between = async () => expect(await service.deleteOne(raced.memoryId, caller)).toBe(true);
      await expect(down.deleteOne(raced.memoryId, caller)).rejects.toMatchObject({ httpStatus: 503 });
      expect(await tombstones.deletedAmong([{ ...candidate, id: raced.memoryId }])).toEqual(
        new Set([raced.memoryId]),
      );
      expect(await service.deleteOne(raced.memoryId, caller)).toBe(false);
      await completeAsDropped(await take(), [raced.memoryId]);
    } finally {
      await downStore.close();
    }
  });

  it('answers not found when an earlier delete had already dropped it', async () => {
    const { memoryId } = await service.storeOne(input('deleted twice'), caller);
    const taken = await take();
    expect(await service.deleteOne(memoryId, caller)).toBe(true);
    tombstones.between = () => completeAsDropped(taken, [memoryId]);
    expect(await service.deleteOne(memoryId, caller)).toBe(false);
  });

  it('answers not found when the job had completed, dropping it for another delete, before', async () => {
    const session = `dropped-${randomUUID()}`;
    const { memoryId } = await service.storeOne(
      validate(MemoryInput, { content: 'dropped for its session', session_id: session }),
      caller,
    );
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 1, queued: 1 });
    await completeAsDropped(await take(), [memoryId]);
    expect(await service.deleteOne(memoryId, caller)).toBe(false);
  });

  it("deletes one memory of a batch still queued, and leaves the batch's others", async () => {
    const { memoryIds, job } = await service.storeBatch(
      [input('batch one'), input('batch two'), input('batch three')],
      caller,
    );
    expect(await service.deleteOne(memoryIds[1]!, caller)).toBe(true);
    // The batch stays queued (its other memories are still to be stored), and says which it holds.
    // Queued behind single stores, by its size (`storeJobPriority`).
    expect(await queue.getJobState(job.id!)).toBe('prioritized');
    expect(await tombstones.batchOf(memoryIds[0]!)).toBe(job.id);
    // Another user's delete of the same id neither finds it nor covers it.
    expect(await service.deleteOne(memoryIds[2]!, { ...caller, userId: 'someone-else' })).toBe(false);
    const covered = await tombstones.deletedAmong(
      memoryIds.map((id) => ({
        id,
        user_id: caller.userId,
        session_id: 's',
        created_at: new Date().toISOString(),
      })),
    );
    expect([...covered]).toEqual([memoryIds[1]]);
    // A repeated delete finds the first one's tombstone.
    expect(await service.deleteOne(memoryIds[1]!, caller)).toBe(false);

    const taken = await take();
    expect(taken.job.id).toBe(job.id);
    await completeAsDropped(taken, [memoryIds[1]!]);
    await tombstones.forgetQueued(
      caller.userId,
      memoryIds.map((id) => ({ id, session_id: 's', created_at: new Date().toISOString() })),
      true,
    );
    expect(await tombstones.batchOf(memoryIds[0]!)).toBeNull();
  });

  it('deletes a batch memory when the batch completes, dropping it, while the delete runs', async () => {
    const { memoryIds } = await service.storeBatch(
      [input('batch raced one'), input('batch raced two')],
      caller,
    );
    const taken = await take();
    tombstones.between = () => completeAsDropped(taken, [memoryIds[0]!]);
    expect(await service.deleteOne(memoryIds[0]!, caller)).toBe(true);
  });
  it("counts a session's memories still queued in its delete, each once, and not once their jobs have finished", async () => {
    const session = `counted-${randomUUID()}`;
    const inSession = (content: string) => validate(MemoryInput, { content, session_id: session });
    /** A memory of the session as the worker writes it, with a vector of its own. */
    const written = (id: string, content: string, axis: number) =>
      toMemoryRecord(
        caller.userId,
        toQueuedMemory(inSession(content), id, new Date()),
        Float32Array.from({ length: 384 }, (_, i) => (i === axis ? 1 : 0)),
        'test',
      );
    // Stored earlier: the store holds it, no job does.
    const [stored] = await store.upsert([written(randomUUID(), 'stored before the delete', 0)]);
    const batch = await service.storeBatch(
      [inSession('queued one'), inSession('queued two'), inSession('queued three')],
      caller,
    );
    const single = await service.storeOne(inSession('queued single'), caller);
    const other = `other-${randomUUID()}`;
    const elsewhere = await service.storeOne(
      validate(MemoryInput, { content: 'queued in another session', session_id: other }),
      caller,
    );
    // The batch's first memory is written already, its job not yet completed: counted once.
    await store.upsert([written(batch.memoryIds[0]!, 'queued one', 1)]);

    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 5, queued: 3 });
    expect(stored!.status).toBe('created');

    // The worker's side: each job completes (the tombstone dropped its memories) and is forgotten.
    const jobs = new Set([batch.job.id, single.job.id, elsewhere.job.id]);
    for (let i = 0; i < jobs.size; i += 1) {
      const taken = await take();
      expect(jobs.has(taken.job.id)).toBe(true);
      await completeAsDropped(taken, []);
      await forgetFinishedJob(tombstones, taken.job);
    }
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 0, queued: 0 });
    // Forgotten for the other session too; the batch's memories no longer lead to its job.
    expect(await service.deleteSession(other, caller)).toEqual({ deleted: 0, queued: 0 });
    expect(await tombstones.batchOf(batch.memoryIds[1]!)).toBeNull();
  });

  it('counts nothing as queued for a retried request whose job had already completed', async () => {
    const session = `retried-${randomUUID()}`;
    const keyed = { ...caller, idempotencyKey: `done-${randomUUID()}` };
    const memory = validate(MemoryInput, {
      content: 'stored, then its request retried',
      session_id: session,
    });
    const first = await service.storeOne(memory, keyed);
    const taken = await take();
    expect(taken.job.id).toBe(first.job.id);
    await completeAsDropped(taken, []);
    await forgetFinishedJob(tombstones, taken.job);
    // The retry answers with the completed job: nothing of it waits in the queue.
    expect((await service.storeOne(memory, keyed)).job.id).toBe(first.job.id);
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 0, queued: 0 });
  });

  it('counts a queued memory once: not again in a later session delete, nor after a delete by id', async () => {
    const session = `once-${randomUUID()}`;
    const inSession = (content: string) => validate(MemoryInput, { content, session_id: session });
    const byId = await service.storeOne(inSession('deleted by id first'), caller);
    const left = await service.storeOne(inSession('left for the session delete'), caller);
    expect(await service.deleteOne(byId.memoryId, caller)).toBe(true);
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 1, queued: 1 });
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 0, queued: 0 });
    for (const job of [byId.job, left.job]) {
      const taken = await take();
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, []);
    }
  });

  it('does not count memories whose job failed for good', async () => {
    const session = `gone-${randomUUID()}`;
    const inSession = (content: string) => validate(MemoryInput, { content, session_id: session });
    const failed = await service.storeBatch([inSession('failed one'), inSession('failed two')], caller);
    const { job, token } = await take();
    expect(job.id).toBe(failed.job.id);
    await job.moveToFailed(new UnrecoverableError('refused for this test'), token, false);
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 0, queued: 0 });
  });

  it("keeps a failed batch's record, so that a delete by id after an operator's retry still wins", async () => {
    const session = `retried-batch-${randomUUID()}`;
    const inSession = (content: string) => validate(MemoryInput, { content, session_id: session });
    const batch = await service.storeBatch([inSession('retried one'), inSession('retried two')], caller);
    const { job, token } = await take();
    await job.moveToFailed(new UnrecoverableError('refused for this test'), token, false);
    // Bull Board's retry: the job waits again, and must still be found from its memories.
    await job.retry('failed');
    expect(await service.deleteOne(batch.memoryIds[0]!, caller)).toBe(true);
    expect(await service.deleteSession(session, caller)).toEqual({ deleted: 1, queued: 1 });
    const again = await take();
    expect(again.job.id).toBe(batch.job.id);
    await completeAsDropped(again, batch.memoryIds);
  });

  describe('a session delete, reviewed again', () => {
    const session = () => `again-${randomUUID()}`;
    const into = (s: string, content: string) => validate(MemoryInput, { content, session_id: s });
    let downStore: PgvectorMemoryStore;
    let down: IngestService;
    beforeAll(() => {
      downStore = new PgvectorMemoryStore(
        { connectionString: 'postgres://memory:memory@127.0.0.1:1/memory', schema: schema.schema },
        logger,
      );
      down = new IngestService(
        { ingest: queue, all: [queue] },
        events,
        connection,
        prefix,
        downStore,
        tombstones,
        logger,
      );
    });
    afterAll(() => downStore.close());

    it('that fails on the store is counted by its retry, what was queued still dropped', async () => {
      const s = session();
      const stored = await service.storeBatch([into(s, 'kept one'), into(s, 'kept two')], caller);
      await expect(down.deleteSession(s, caller)).rejects.toMatchObject({ httpStatus: 503 });
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 2, queued: 2 });
      const candidates = stored.memoryIds.map((id) => ({
        id,
        user_id: caller.userId,
        session_id: s,
        created_at: new Date(Date.now() - 1_000).toISOString(),
      }));
      expect(await tombstones.deletedAmong(candidates)).toEqual(new Set(stored.memoryIds));
      await completeAsDropped(await take(), stored.memoryIds);
    });

    it('counts a memory once between two session deletes that overlap', async () => {
      const s = session();
      const { job } = await service.storeOne(into(s, 'deleted by two at once'), caller);
      let inner: { deleted: number; queued: number } | undefined;
      tombstones.betweenSession = async () => {
        inner = await service.deleteSession(s, caller);
      };
      const outer = await service.deleteSession(s, caller);
      expect(inner!.queued + outer.queued).toBe(1);
      const taken = await take();
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, []);
    });

    it.each(['by id inside the session delete', 'session delete inside the one by id'])(
      'counts a memory once between a delete by id and a session delete that overlap (%s)',
      async (order) => {
        const s = session();
        const { memoryId, job } = await service.storeOne(into(s, `raced ${order}`), caller);
        let byId = false;
        let bySession: { deleted: number; queued: number } = { deleted: 0, queued: 0 };
        if (order.startsWith('by id')) {
          tombstones.betweenSession = async () => {
            byId = await service.deleteOne(memoryId, caller);
          };
          bySession = await service.deleteSession(s, caller);
        } else {
          tombstones.between = async () => {
            bySession = await service.deleteSession(s, caller);
          };
          byId = await service.deleteOne(memoryId, caller);
        }
        expect(Number(byId) + bySession.queued).toBe(1);
        const taken = await take();
        expect(taken.job.id).toBe(job.id);
        await completeAsDropped(taken, [memoryId]);
      },
    );

    it('counts a memory whose failed job an operator retried after an earlier session delete', async () => {
      const s = session();
      const stored = await service.storeOne(into(s, 'failed, deleted, retried'), caller);
      const { job, token } = await take();
      expect(job.id).toBe(stored.job.id);
      await job.moveToFailed(new UnrecoverableError('refused for this test'), token, false);
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 0, queued: 0 });
      await job.retry('failed');
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 1, queued: 1 });
      await completeAsDropped(await take(), [stored.memoryId]);
    });

    it('does not count again a memory whose keyed request was retried after the delete', async () => {
      const s = session();
      const keyed = { ...caller, idempotencyKey: `again-${randomUUID()}` };
      const memory = into(s, 'retried after its session was deleted');
      const first = await service.storeOne(memory, keyed);
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 1, queued: 1 });
      expect((await service.storeOne(memory, keyed)).job.id).toBe(first.job.id);
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 0, queued: 0 });
      await completeAsDropped(await take(), [first.memoryId]);
    });

    it('counts no memory whose job is not in the queue: its request failed, or it was removed', async () => {
      const s = session();
      const neverAdded = { id: randomUUID(), session_id: s, created_at: new Date().toISOString() };
      await tombstones.noteQueued(caller.userId, [neverAdded]);
      const removed = await service.storeOne(into(s, 'its job removed'), caller);
      await removed.job.remove();
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 0, queued: 0 });
      // Nothing claimed them: a store of the same id later is a memory of its own, and deletes count it.
      const again = await service.storeOne(into(session(), 'stored after all'), caller);
      expect(await service.deleteOne(again.memoryId, caller)).toBe(true);
      await completeAsDropped(await take(), [again.memoryId]);
    });

    it('answers 200 for a row it removed, even when a session delete had counted the memory', async () => {
      const s = session();
      const { memoryId, job } = await service.storeOne(into(s, 'counted, then written'), caller);
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 1, queued: 1 });
      const taken = await take();
      const memory = (taken.job.data as { memory: QueuedMemory }).memory;
      // Written by a worker that did not see the tombstone (its check failed over): the row exists.
      await store.upsert([
        toMemoryRecord(
          caller.userId,
          memory,
          Float32Array.from({ length: 384 }, (_, i) => (i === 3 ? 1 : 0)),
          'test',
        ),
      ]);
      expect(await service.deleteOne(memoryId, caller)).toBe(true);
      expect(await store.get(caller.userId, memoryId)).toBeNull();
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, [memoryId]);
    });

    it('counts a memory once when two deletes of it fail on the store and one is retried', async () => {
      const { memoryId, job } = await service.storeOne(
        input('deleted twice while the store was down'),
        caller,
      );
      tombstones.between = () =>
        expect(down.deleteOne(memoryId, caller)).rejects.toMatchObject({ httpStatus: 503 });
      await expect(down.deleteOne(memoryId, caller)).rejects.toMatchObject({ httpStatus: 503 });
      expect(await service.deleteOne(memoryId, caller)).toBe(true);
      expect(await service.deleteOne(memoryId, caller)).toBe(false);
      const taken = await take();
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, [memoryId]);
    });

    it('counts a memory whose row is written, its job still running, once between a session delete and one by id', async () => {
      const s = session();
      const { memoryId, job } = await service.storeOne(into(s, 'written, job running'), caller);
      const taken = await take();
      const [queuedMemory] = (taken.job.data as { memory: QueuedMemory }).memory
        ? [(taken.job.data as { memory: QueuedMemory }).memory]
        : [];
      await store.upsert([
        toMemoryRecord(
          caller.userId,
          queuedMemory!,
          Float32Array.from({ length: 384 }, (_, i) => (i === 2 ? 1 : 0)),
          'test',
        ),
      ]);
      // The delete by id lands between the session delete's read of the queue and its claims.
      let byId = false;
      tombstones.betweenSession = async () => {
        byId = await service.deleteOne(memoryId, caller);
      };
      const bySession = await service.deleteSession(s, caller);
      expect(Number(byId) + bySession.deleted).toBe(1);
      // Two session deletes, one after the other: the second counts nothing.
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 0, queued: 0 });
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, [memoryId]);
    });

    it('answers a delete by id of a queued memory its session delete already dropped as gone', async () => {
      const s = session();
      const { memoryId, job } = await service.storeOne(into(s, 'dropped with its session'), caller);
      expect(await service.deleteSession(s, caller)).toEqual({ deleted: 1, queued: 1 });
      expect(await service.deleteOne(memoryId, caller)).toBe(false);
      const taken = await take();
      expect(taken.job.id).toBe(job.id);
      await completeAsDropped(taken, [memoryId]);
    });
  });

  it('lets the worker tell that a job ran before: after a deferral, and after a retried request runs a failed one again', async () => {
    const { job: queued } = await service.storeOne(input('deferred, then failed, then retried'), caller);
    const first = await take();
    expect(first.job.id).toBe(queued.id);
    expect(first.job.attemptsStarted).toBe(1);
    // A deferral (503) uses no attempt, and BullMQ resets the job's delay when it promotes it.
    await first.job.moveToDelayed(Date.now() + 1, first.token);
    await new Promise((r) => setTimeout(r, 20));
    const second = await take();
    expect(second.job.id).toBe(queued.id);
    expect({ made: second.job.attemptsMade, delay: Number(second.job.delay) }).toEqual({ made: 0, delay: 0 });
    expect(second.job.attemptsStarted).toBeGreaterThan(1);
    await second.job.moveToFailed(new UnrecoverableError('refused for this test'), second.token, false);
    // The client's retry with its Idempotency-Key runs it again, its attempts anew.
    await (await queue.getJob(queued.id!))!.retry('failed', { resetAttemptsMade: true });
    const third = await take();
    expect(third.job.attemptsMade).toBe(0);
    expect(third.job.attemptsStarted).toBeGreaterThan(1);
    await completeAsDropped(third, []);
  });

  describe('an Idempotency-Key retry of a store job that failed', () => {
    /** Takes the next job and fails it for good, as a worker does on a permanent error. */
    async function failNext(): Promise<string> {
      const { job, token } = await take();
      await job.moveToFailed(new UnrecoverableError('lost for this test'), token, false);
      expect(await job.getState()).toBe('failed');
      return job.id!;
    }

    it.each([
      [
        'a single store',
        (key: string) => service.storeOne(input(`retried single ${key}`), { ...caller, idempotencyKey: key }),
      ],
      [
        'a batch',
        (key: string) =>
          service.storeBatch([input(`retried batch a ${key}`), input(`retried batch b ${key}`)], {
            ...caller,
            idempotencyKey: key,
          }),
      ],
    ])('%s runs again, its attempts anew, instead of answering with the failed job', async (_, send) => {
      const key = randomUUID();
      const first = await send(key);
      expect(await failNext()).toBe(first.job.id);

      const retried = await send(key);
      expect(retried.job.id).toBe(first.job.id);
      const job = (await queue.getJob(first.job.id!))!;
      // Queued again where it was: a batch behind single stores (`storeJobPriority`).
      const queued = job.name === 'store-memory' ? 'waiting' : 'prioritized';
      expect(await job.getState()).toBe(queued);
      expect(job.attemptsMade).toBe(0);
      expect(job.failedReason ?? null).toBeNull();
      // Retried again while it waits: the same job, still waiting, once.
      await send(key);
      expect(await (await queue.getJob(first.job.id!))!.getState()).toBe(queued);
      expect((await take()).job.id).toBe(first.job.id);
    });
  });
});
