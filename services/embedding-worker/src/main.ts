import express from 'express';
import {
  closeServer,
  createMetrics,
  exitOnStartupError,
  listen,
  loadEmbedder,
  metricsRoute,
  openStore,
  PgvectorMemoryStore,
  QueueName,
  startService,
  Tombstones,
} from 'memory-core';
import { loadWorkerConfig } from './config';
import { MicroBatcher } from './micro-batcher';
import { createMigration } from './processors/migrate-chroma.processor';
import { createStoreMemoryProcessor, forgetFinishedJob } from './processors/store-memory.processor';
import { TenantIndexMaintainer } from './tenant-indexes';
import { createQueueWorker } from './worker';

void startService(
  'embedding-worker',
  loadWorkerConfig,
  'worker',
  async ({ config, logger, redis, registry }) => {
    const metrics = createMetrics('embedding-worker');
    const embedder = await loadEmbedder(config, registry);
    const { store } = await openStore(config, registry, logger);
    const tombstones = new Tombstones(redis, config.QUEUE_PREFIX);
    const batcher = new MicroBatcher(
      embedder,
      store,
      tombstones,
      metrics,
      logger.child({ module: 'micro-batcher' }),
      { maxBatch: config.MICRO_BATCH_SIZE, waitMs: config.MICRO_BATCH_WAIT_MS },
    );
    const worker = createQueueWorker(
      QueueName.Ingest,
      redis,
      createStoreMemoryProcessor(batcher, logger.child({ module: 'store-processor' }), {
        metrics,
      }),
      {
        prefix: config.QUEUE_PREFIX,
        concurrency: config.WORKER_CONCURRENCY,
        lockDurationMs: config.WORKER_LOCK_DURATION_MS,
      },
      metrics,
      logger,
    );
    // Once a store job has completed, deletes no longer need to know its memories were queued. A job
    // that failed for good keeps its record: an operator's or a client's retry queues it again.
    worker.on('completed', (job) => {
      forgetFinishedJob(tombstones, job).catch((error: unknown) =>
        logger.warn({ jobId: job.id, err: (error as Error).message }, 'queued memories not forgotten'),
      );
    });
    // Aborted on shutdown: a running migration pauses at its next batch and resumes later.
    const stopping = new AbortController();
    const migration = createMigration(
      redis,
      embedder,
      config,
      logger.child({ module: 'migration' }),
      stopping.signal,
    );
    // One migration at a time per worker (two runs of one collection must not interleave); one that
    // stalled may be taken over a few times, since it resumes from its checkpoint.
    const migrationWorker = createQueueWorker(
      QueueName.Migration,
      redis,
      migration.processor,
      {
        prefix: config.QUEUE_PREFIX,
        concurrency: 1,
        lockDurationMs: config.WORKER_LOCK_DURATION_MS,
      },
      metrics,
      logger,
    );

    const tenantIndexes =
      store instanceof PgvectorMemoryStore && config.TENANT_INDEX_MIN_MEMORIES > 0
        ? new TenantIndexMaintainer(
            store,
            { minMemories: config.TENANT_INDEX_MIN_MEMORIES, maxGraphs: config.TENANT_INDEX_MAX_GRAPHS },
            config.TENANT_INDEX_INTERVAL_S * 1000,
            logger.child({ module: 'tenant-indexes' }),
          )
        : undefined;
    // A migration may bring users large enough for a graph of their own.
    migrationWorker.on('completed', () => tenantIndexes?.runSoon());

    const app = express();
    app.get('/healthz', (_req, res) => void res.json({ status: 'ok', running: worker.isRunning() }));
    app.get('/metrics', metricsRoute(metrics));
    const server = await listen(app, config.WORKER_METRICS_PORT, config.WORKER_HOST);

    for (const w of [worker, migrationWorker])
      w.run().catch((error: unknown) => exitOnStartupError(logger, error));
    tenantIndexes?.start();
    logger.info(
      {
        concurrency: config.WORKER_CONCURRENCY,
        backend: store.backend,
        model: embedder.info.model,
        dtype: embedder.info.dtype,
      },
      'embedding worker running',
    );
    // worker.close() waits for the jobs in flight, which wait for their micro-batches to be written.
    return [
      async () => {
        stopping.abort();
        await Promise.all([worker.close(), migrationWorker.close(), tenantIndexes?.stop()]);
      },
      () => batcher.flush(),
      () => migration.close(),
      () => closeServer(server),
      () => store.close(),
      () => embedder.close(),
    ];
  },
);
