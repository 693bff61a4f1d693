import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import pino from 'pino';
import { jobDeferral, UnavailableError, ValidationError } from 'memory-core';
import type { MicroBatcher } from '../micro-batcher';
import { createStoreMemoryProcessor, StoreOutageBackoff } from './store-memory.processor';

/** Delays asked of the job: how long from now, as `moveToDelayed` got them (with the lock token). */
const delays: { ms: number; token: string | undefined }[] = [];
/** The job's log lines. */
const logged: string[] = [];
let now = 0;
const job = {
  id: 'store-1',
  name: 'store-memory',
  attemptsMade: 0,
  opts: {},
  data: {
    user_id: 'u1',
    memory: {
      id: '00000000-0000-4000-8000-000000000001',
      content: 'kept through an outage',
      session_id: null,
      session_type: null,
      project: null,
      content_type: 'note',
      metadata: {},
      created_at: '2025-01-01T00:00:00.000Z',
    },
  },
  updateProgress: async () => undefined,
  log: async (line: string) => logged.push(line),
  moveToDelayed: async (timestamp: number, token?: string) =>
    void delays.push({ ms: timestamp - Date.now(), token }),
} as unknown as Job;

/** A micro-batcher whose store answers each call as `outcomes` says, in turn. */
function batcherAnswering(outcomes: (Error | 'stored')[]): MicroBatcher {
  return {
    submit: async () => {
      const next = outcomes.shift();
      if (next instanceof Error) throw next;
      return [{ requested_id: job.data.memory.id, id: job.data.memory.id, status: 'created' }];
    },
  } as unknown as MicroBatcher;
}

describe('store processor while the store does not answer', () => {
  afterEach(() => jest.restoreAllMocks());

  const down = () =>
    new UnavailableError('PostgreSQL is unavailable (upsert)', { code: 'backend_unavailable' });

  it('delays the job without an attempt, for a doubling, capped wait, back to the shortest after a success', async () => {
    delays.length = 0;
    logged.length = 0;
    // Frozen, so that the delay the job got (its timestamp less now) is the wait exactly.
    jest.spyOn(Date, 'now').mockReturnValue(1_700_000_000_000);
    const deferred: string[] = [];
    const process = createStoreMemoryProcessor(
      batcherAnswering([down(), down(), down(), 'stored', down()]),
      pino({ level: 'silent' }),
      {
        metrics: { jobsDeferred: { inc: ({ name }: { name: string }) => void deferred.push(name) } } as never,
        backoff: new StoreOutageBackoff(1_000, 3_000, () => now),
      },
    );
    const run = async () => {
      const outcome = await process(job, 'lock-token').catch((e: unknown) => e);
      // The job comes back once its delay has run out.
      if (outcome instanceof DelayedError) now += delays.at(-1)!.ms;
      return outcome;
    };
    for (let i = 0; i < 3; i += 1) expect(await run()).toBeInstanceOf(DelayedError);
    expect(await run()).toEqual({
      memories: [{ requested_id: job.data.memory.id, id: job.data.memory.id, status: 'created' }],
    });
    expect(await run()).toBeInstanceOf(DelayedError);
    expect(delays.map((d) => d.ms)).toEqual([1_000, 2_000, 3_000, 1_000]);
    expect(delays.every((d) => d.token === 'lock-token')).toBe(true);
    expect(deferred).toEqual(Array(4).fill('store-memory'));
    // Each wait is in the job's log, with the store's error and the time the job comes back.
    expect(logged.map((line) => jobDeferral.parse(line))).toEqual(
      [1_000, 2_000, 3_000, 1_000].map((ms) => ({
        reason: 'backend_unavailable',
        retry_at: new Date(1_700_000_000_000 + ms).toISOString(),
      })),
    );
  });

  it('lets the jobs of one failed micro-batch share the wait already running instead of doubling it', () => {
    let now = 0;
    const backoff = new StoreOutageBackoff(1_000, 30_000, () => now);
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([1_000, 1_000, 1_000]);
    now = 400;
    expect(backoff.next()).toBe(600);
    now = 1_000;
    expect(backoff.next()).toBe(2_000);
  });

  it.each([
    ['a first run', {}, false],
    ['a retry after a failed attempt', { attemptsMade: 1, attemptsStarted: 2 }, true],
    ['a run back from a deferral, or of a failed job run again', { attemptsStarted: 2 }, true],
    ['a take-over after a stall', { stalledCounter: 1, attemptsStarted: 2 }, true],
  ])('tells the micro-batcher whether the job ran before: %s', async (_, counters, retried) => {
    const submitted: unknown[] = [];
    const batcher = {
      submit: async (_userId: string, memories: { id: string }[], options: unknown) => {
        submitted.push(options);
        return memories.map((m) => ({ requested_id: m.id, id: m.id, status: 'created' }));
      },
    } as unknown as MicroBatcher;
    const process = createStoreMemoryProcessor(batcher, pino({ level: 'silent' }), {
      metrics: { jobsDeferred: { inc: () => undefined } } as never,
    });
    await process({ ...job, attemptsMade: 0, attemptsStarted: 1, stalledCounter: 0, ...counters } as Job);
    expect(submitted).toEqual([{ retried, priority: 0 }]);
  });

  it("gives the micro-batcher the job's queue priority, so that it takes smaller jobs' memories first", async () => {
    const submitted: unknown[] = [];
    const batcher = {
      submit: async (_userId: string, memories: { id: string }[], options: unknown) => {
        submitted.push(options);
        return memories.map((m) => ({ requested_id: m.id, id: m.id, status: 'created' }));
      },
    } as unknown as MicroBatcher;
    const process = createStoreMemoryProcessor(batcher, pino({ level: 'silent' }), {
      metrics: { jobsDeferred: { inc: () => undefined } } as never,
    });
    await process({ ...job, attemptsStarted: 1, stalledCounter: 0, opts: { priority: 100 } } as Job);
    expect(submitted).toEqual([{ retried: false, priority: 100 }]);
  });

  it('fails for good on what the store refuses, and retries (an attempt) other errors', async () => {
    delays.length = 0;
    const process = createStoreMemoryProcessor(
      batcherAnswering([new ValidationError('metadata key "x:y" is reserved'), new Error('model crashed')]),
      pino({ level: 'silent' }),
      { metrics: { jobsDeferred: { inc: () => undefined } } as never },
    );
    await expect(process(job)).rejects.toBeInstanceOf(UnrecoverableError);
    const other = await process(job).catch((e: unknown) => e);
    expect(other).toBeInstanceOf(Error);
    expect(other).not.toBeInstanceOf(DelayedError);
    expect(delays).toEqual([]);
  });
});
