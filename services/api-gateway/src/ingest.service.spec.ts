import pino from 'pino';
import type { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { MemoryStore, Tombstones } from 'memory-core';
import { IngestService } from './ingest.service';

/**
 * A queue whose job completes between two reads: the first read sees it active without a result,
 * every later read sees it completed with its result (as BullMQ stores both in one step).
 */
function completingQueue(): Queue {
  let reads = 0;
  const world = () => (reads++ === 0 ? 'active' : 'completed');
  const job = (state: string) => ({
    name: 'store-memory-batch',
    data: { user_id: 'u1' },
    progress: state === 'completed' ? { done: 2, total: 2 } : { done: 1, total: 2 },
    attemptsMade: 0,
    returnvalue: state === 'completed' ? { memories: [] } : null,
    failedReason: undefined,
    timestamp: Date.now(),
    finishedOn: state === 'completed' ? Date.now() : undefined,
    getState: async () => world(),
  });
  return {
    name: 'memory-ingest',
    getJobState: async () => world(),
    getJob: async () => job(world()),
  } as unknown as Queue;
}

describe('IngestService.job', () => {
  it('never reports a completed job without its result, whatever the timing of the reads', async () => {
    const queue = completingQueue();
    const service = new IngestService(
      { ingest: queue, all: [queue] },
      {} as QueueEvents,
      {} as Redis,
      '{test}',
      {} as MemoryStore,
      {} as Tombstones,
      pino({ level: 'silent' }),
    );
    const view = await service.job('job-1', { userId: 'u1', operator: false });
    if (view.state === 'completed') expect(view.result).not.toBeNull();
    // The job moved on between the reads: the view was read after the state, so it holds the result.
    expect(view.result).toEqual({ memories: [] });
  });
});

describe("IngestService.job: a store job is its user's", () => {
  const storeJob = {
    name: 'store-memory',
    data: { user_id: 'owner' },
    progress: 0,
    attemptsMade: 0,
    returnvalue: null,
    failedReason: undefined,
    timestamp: Date.now(),
    finishedOn: undefined,
  };
  const queue = {
    name: 'memory-ingest',
    getJobState: async () => 'waiting',
    getJob: async () => storeJob,
  } as unknown as Queue;
  const service = new IngestService(
    { ingest: queue, all: [queue] },
    {} as QueueEvents,
    {} as Redis,
    '{test}',
    {} as MemoryStore,
    {} as Tombstones,
    pino({ level: 'silent' }),
  );

  it('shows it to its user and to nobody else', async () => {
    expect((await service.job('store-1', { userId: 'owner', operator: false })).state).toBe('waiting');
    await expect(service.job('store-1', { userId: 'someone-else', operator: true })).rejects.toMatchObject({
      code: 'job_not_found',
    });
  });
});

describe("IngestService.job: a migration job is an operator's", () => {
  const migrationJob = {
    name: 'migrate-chroma',
    // The migration's user filter, not who asked for it.
    data: { migration_id: 'm-1', user_id: 'viewer' },
    progress: 0,
    attemptsMade: 0,
    returnvalue: null,
    failedReason: undefined,
    timestamp: Date.now(),
    finishedOn: undefined,
  };
  const queue = {
    name: 'memory-migration',
    getJobState: async () => 'active',
    getJob: async () => migrationJob,
  } as unknown as Queue;
  const service = new IngestService(
    { ingest: queue, all: [queue] },
    {} as QueueEvents,
    {} as Redis,
    '{test}',
    {} as MemoryStore,
    {} as Tombstones,
    pino({ level: 'silent' }),
  );

  it('shows it to an operator, and to no app user, even the one it migrates', async () => {
    expect((await service.job('migrate-m-1', { userId: 'someone', operator: true })).state).toBe('active');
    await expect(service.job('migrate-m-1', { userId: 'viewer', operator: false })).rejects.toMatchObject({
      code: 'job_not_found',
    });
  });
});
