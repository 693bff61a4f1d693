import { Worker, type Job, type Processor } from 'bullmq';
import { QueueName, type Logger, type Metrics } from 'memory-core';
import type { Redis } from 'ioredis';

export interface WorkerSettings {
  prefix: string;
  concurrency: number;
  lockDurationMs: number;
}

/**
 * The BullMQ worker of the ingest queue. Completed and failed attempts are counted; a failure that
 * will be retried is logged at warn, a final one at error.
 */
export function createIngestWorker(
  connection: Redis,
  processor: Processor,
  settings: WorkerSettings,
  metrics: Metrics,
  logger: Logger,
): Worker {
  const worker = new Worker(QueueName.Ingest, processor, {
    connection,
    prefix: settings.prefix,
    concurrency: settings.concurrency,
    // A job whose worker died (lock not renewed) goes back to the queue within about this long.
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.lockDurationMs,
    autorun: false,
  });
  worker.on('completed', (job: Job) => metrics.jobsProcessed.inc({ name: job.name }));
  worker.on('failed', (job: Job | undefined, error: Error) => {
    if (!job) return;
    const final = job.attemptsMade >= (job.opts.attempts ?? 1) || error.name === 'UnrecoverableError';
    metrics.jobsFailed.inc({ name: job.name, retried: String(!final) });
    logger[final ? 'error' : 'warn'](
      {
        jobId: job.id,
        requestId: (job.data as { request_id?: string }).request_id,
        attempt: job.attemptsMade,
        err: error.message,
      },
      final ? 'job failed' : 'job attempt failed, will retry',
    );
  });
  worker.on('error', (error) => logger.error({ err: error.message }, 'worker error'));
  return worker;
}
