import { UnrecoverableError, type Job } from 'bullmq';
import {
  parseJobPayload,
  isAppError,
  JobName,
  StoreMemoryBatchPayload,
  StoreMemoryPayload,
  type Logger,
  type QueuedMemory,
  type StoreJobResult,
} from 'memory-core';
import type { MicroBatcher } from '../micro-batcher';

/** Memories of a batch job submitted per progress step. */
const PROGRESS_STEP = 100;

function memoriesOf(job: Job): { userId: string; requestId?: string; memories: QueuedMemory[] } {
  if (job.name === JobName.StoreMemory) {
    const data = parseJobPayload(StoreMemoryPayload, job);
    return { userId: data.user_id, requestId: data.request_id, memories: [data.memory] };
  }
  if (job.name === JobName.StoreMemoryBatch) {
    const data = parseJobPayload(StoreMemoryBatchPayload, job);
    return { userId: data.user_id, requestId: data.request_id, memories: data.memories };
  }
  throw new UnrecoverableError(`unknown job name "${job.name}"`);
}

/**
 * Processes store jobs (one memory or a batch): validates the payload again, then hands the memories
 * to the micro-batcher. Writes are upserts keyed by the memory id chosen at enqueue time, so a job
 * that runs twice (a retry, or a stalled job taken over) stores nothing twice.
 */
export function createStoreMemoryProcessor(batcher: MicroBatcher, logger: Logger) {
  return async (job: Job): Promise<StoreJobResult> => {
    const { userId, requestId, memories } = memoriesOf(job);
    const log = logger.child({ jobId: job.id, requestId, attempt: job.attemptsMade + 1 });
    log.info({ count: memories.length }, 'storing memories');
    let done = 0;
    const steps: Promise<StoreJobResult['memories']>[] = [];
    for (let start = 0; start < memories.length; start += PROGRESS_STEP) {
      const step = batcher.submit(userId, memories.slice(start, start + PROGRESS_STEP));
      steps.push(
        step.then(async (outcomes) => {
          done += outcomes.length;
          if (memories.length > 1) await job.updateProgress({ done, total: memories.length });
          return outcomes;
        }),
      );
    }
    let outcomes: StoreJobResult['memories'];
    try {
      outcomes = (await Promise.all(steps)).flat();
    } catch (error) {
      // The store refused what the memory holds: retrying cannot help.
      if (isAppError(error) && error.httpStatus < 500)
        throw new UnrecoverableError(`${error.code}: ${error.message}`);
      throw error;
    }
    log.info(
      { count: outcomes.length, memoryId: memories.length === 1 ? outcomes[0]!.id : undefined },
      'memories stored',
    );
    return { memories: outcomes };
  };
}
