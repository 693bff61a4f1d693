import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import {
  chunks,
  isAppError,
  jobDeferral,
  JobName,
  storeJobContents,
  type Logger,
  type Metrics,
  type StoreJobResult,
  type Tombstones,
} from 'memory-core';
import type { MicroBatcher } from '../micro-batcher';

/** Memories of a batch job submitted per progress step. */
const PROGRESS_STEP = 100;

/**
 * Once a store job has completed, what the gateway noted of its memories while they were queued is
 * forgotten: a delete by id no longer needs to find their batch job, and a session delete no longer
 * counts them as queued.
 */
export async function forgetFinishedJob(tombstones: Tombstones, job: Job): Promise<void> {
  let queued: ReturnType<typeof storeJobContents>;
  try {
    queued = storeJobContents(job);
  } catch {
    return; // not a payload the gateway queued: it noted nothing
  }
  await tombstones.forgetQueued(queued.userId, queued.memories, job.name === JobName.StoreMemoryBatch);
}

/**
 * How long a store job is delayed while the store does not answer: doubling from `minMs` with each
 * wait that ran out with the store still down, up to `maxMs`; back to `minMs` once a job is stored.
 * The jobs of one failed micro-batch fail together: they share the wait already running instead of
 * each doubling it (a blip of a second would otherwise delay them by the longest wait).
 */
export class StoreOutageBackoff {
  private failures = 0;
  private holdUntil = 0;

  constructor(
    readonly minMs = 1_000,
    readonly maxMs = 10_000,
    private readonly clock: () => number = Date.now,
  ) {}

  next(): number {
    const now = this.clock();
    if (now < this.holdUntil) return this.holdUntil - now;
    this.failures += 1;
    const waitMs = Math.min(this.minMs * 2 ** (this.failures - 1), this.maxMs);
    this.holdUntil = now + waitMs;
    return waitMs;
  }

  reset(): void {
    this.failures = 0;
    this.holdUntil = 0;
  }
}

export interface StoreProcessorOptions {
  metrics: Pick<Metrics, 'jobsDeferred'>;
  backoff?: StoreOutageBackoff;
}

/**
 * Processes store jobs (one memory or a batch): validates the payload again, then hands the memories
 * to the micro-batcher. Writes are upserts keyed by the memory id chosen at enqueue time, so a job
 * that runs twice (a retry, or a stalled job taken over) stores nothing twice.
 *
 * While the store does not answer (503), a job is delayed without using one of its attempts (1 s,
 * doubling up to 10 s; BullMQ's `moveToDelayed` + `DelayedError`): an outage of any length loses nothing,
 * where attempts with backoff would have run out after about 2 minutes and failed every job accepted
 * meanwhile. Attempts are left for failures a retry may fix otherwise.
 */
export function createStoreMemoryProcessor(
  batcher: MicroBatcher,
  logger: Logger,
  options: StoreProcessorOptions,
) {
  const backoff = options.backoff ?? new StoreOutageBackoff();
  return async (job: Job, token?: string): Promise<StoreJobResult> => {
    const { userId, requestId, memories } = storeJobContents(job);
    const log = logger.child({ jobId: job.id, requestId, attempt: job.attemptsMade + 1 });
    log.info({ count: memories.length }, 'storing memories');
    // Ran before: retried after a failure, taken over after a stall, back from a deferral (which uses
    // no attempt, and whose delay BullMQ resets when it promotes the job), or run again by a retried
    // request: BullMQ counts every start (the gateway's retry keeps that count).
    const retried = job.attemptsStarted > 1 || job.attemptsMade > 0 || job.stalledCounter > 0;
    let done = 0;
    const steps = chunks(memories, PROGRESS_STEP).map((part) =>
      batcher.submit(userId, part, { retried, priority: job.opts.priority ?? 0 }).then(async (outcomes) => {
        done += outcomes.length;
        if (memories.length > 1) await job.updateProgress({ done, total: memories.length });
        return outcomes;
      }),
    );
    let outcomes: StoreJobResult['memories'];
    try {
      outcomes = (await Promise.all(steps)).flat();
    } catch (error) {
      // The store refused what the memory holds: retrying cannot help.
      if (isAppError(error) && error.httpStatus < 500)
        throw new UnrecoverableError(`${error.code}: ${error.message}`);
      if (isAppError(error) && error.httpStatus === 503) {
        const waitMs = backoff.next();
        log.warn({ err: error.message, waitMs }, 'store unavailable: job delayed, no attempt used');
        // A delayed job keeps its lock until it moves; a queue-wide rate limit (tried first) lost locks
        // of jobs held longer than the lock duration.
        const until = Date.now() + waitMs;
        // The job's log says why it waits, for its view and Bull Board (store jobs keep a few lines);
        // best effort: a log line that cannot be written must not cost the job an attempt.
        await job
          .log(jobDeferral.format({ reason: error.code, retry_at: new Date(until).toISOString() }))
          .catch(() => undefined);
        await job.moveToDelayed(until, token);
        options.metrics.jobsDeferred.inc({ name: job.name });
        throw new DelayedError();
      }
      throw error;
    }
    backoff.reset();
    log.info(
      { count: outcomes.length, memoryId: memories.length === 1 ? outcomes[0]!.id : undefined },
      'memories stored',
    );
    return { memories: outcomes };
  };
}
