import { Worker, type Job, type Processor } from 'bullmq';
import type { Logger, Metrics } from 'memory-core';
import type { Redis } from 'ioredis';

/**
 * How often a job may be taken over from a dead worker before it fails for good. Running a job again
 * is harmless (upserts; a migration resumes from its checkpoint), and a worker killed again during
 * that re-run must not fail it (1 did, losing its memories).
 */
const MAX_STALLED_COUNT = 5;

export interface QueueWorkerSettings {
  prefix: string;
  concurrency: number;
  /** A job whose worker died (lock not renewed) goes back to the queue within about this long. */
  lockDurationMs: number;
}

/**
 * A BullMQ worker of one queue. Completed and failed attempts are counted; a failure that will be
 * retried is logged at warn, a final one at error.
 */
export function createQueueWorker(
  queueName: string,
  connection: Redis,
  processor: Processor,
  settings: QueueWorkerSettings,
  metrics: Metrics,
  logger: Logger,
): Worker {
  const worker = new Worker(queueName, processor, {
    connection,
    prefix: settings.prefix,
    concurrency: settings.concurrency,
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.lockDurationMs,
    maxStalledCount: MAX_STALLED_COUNT,
    autorun: false,
  });
  worker.on('completed', (job: Job) => metrics.jobsProcessed.inc({ name: job.name }));
  worker.on('failed', (job: Job | undefined, error: Error) => {
    if (!job) return;
    const final = job.attemptsMade >= (job.opts.attempts ?? 1) || error.name === 'UnrecoverableError';
    metrics.jobsFailed.inc({ name: job.name, retried: String(!final) });
    logger[final ? 'error' : 'warn'](
      {
        queue: queueName,
        jobId: job.id,
        requestId: (job.data as { request_id?: string }).request_id,
        attempt: job.attemptsMade,
        err: error.message,
      },
      final ? 'job failed' : 'job attempt failed, will retry',
    );
  });
  worker.on('error', (error) => logger.error({ queue: queueName, err: error.message }, 'worker error'));
  return worker;
}
