import { DelayedError, Queue, UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  parseJobPayload,
  ChromaCollectionSource,
  ChromaMigration,
  isTransientMigrationError,
  jobIds,
  JobName,
  MigrateChromaPayload,
  MigrationCancelledError,
  MigrationPausedError,
  PgvectorMemoryStore,
  QueueName,
  RedisMigrationCheckpoints,
  RollbackMigrationPayload,
  type Embedder,
  type Logger,
  type MigrationResult,
  type RollbackResult,
} from 'memory-core';

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

export interface MigrationSettings {
  DATABASE_URL?: string | undefined;
  DATABASE_SCHEMA: string;
  DATABASE_POOL_SIZE: number;
  HNSW_EF_SEARCH: number;
  HNSW_OVERFETCH: number;
  HNSW_TENANT_EF_SEARCH: number;
  CHROMA_URL: string;
  CHROMA_COLLECTION: string;
  DEFAULT_USER_ID: string;
  QUEUE_PREFIX: string;
}

/**
 * What the worker needs to run migrations: the engine (reading Chroma, writing PostgreSQL whatever the
 * live backend is), and the processor of the migration queue.
 */
export function createMigration(
  redis: Redis,
  embedder: Embedder,
  settings: MigrationSettings,
  logger: Logger,
  shutdown?: AbortSignal,
) {
  const target = settings.DATABASE_URL
    ? new PgvectorMemoryStore(
        {
          connectionString: settings.DATABASE_URL,
          schema: settings.DATABASE_SCHEMA,
          efSearch: settings.HNSW_EF_SEARCH,
          overfetch: settings.HNSW_OVERFETCH,
          tenantEfSearch: settings.HNSW_TENANT_EF_SEARCH,
          // Its own pool: a migration writes one page while it reads the next.
          poolSize: Math.min(4, settings.DATABASE_POOL_SIZE),
        },
        logger.child({ module: 'migration-target' }),
      )
    : undefined;
  const checkpoints = new RedisMigrationCheckpoints(redis, settings.QUEUE_PREFIX);
  const engine = target
    ? new ChromaMigration({
        source: new ChromaCollectionSource(settings.CHROMA_URL),
        target,
        checkpoints,
        embedder,
        logger,
        defaults: { collection: settings.CHROMA_COLLECTION, userId: settings.DEFAULT_USER_ID },
      })
    : undefined;
  const queue = new Queue(QueueName.Migration, { connection: redis, prefix: settings.QUEUE_PREFIX });
  return {
    processor: createMigrateChromaProcessor(engine, checkpoints, queue, logger, shutdown),
    close: async () => {
      await queue.close();
      await target?.close();
    },
  };
}

/**
 * Processes the migration queue: `migrate-chroma` runs (or resumes) a migration and reports progress;
 * a failure that cannot be retried, or the last attempt, rolls the migration back. `rollback-migration`
 * stops a running migration at its next batch, then removes its rows.
 */
export function createMigrateChromaProcessor(
  engine: ChromaMigration | undefined,
  checkpoints: RedisMigrationCheckpoints,
  queue: Queue,
  logger: Logger,
  shutdown?: AbortSignal,
) {
  const requireEngine = (): ChromaMigration => {
    if (engine) return engine;
    throw new UnrecoverableError(
      'DATABASE_URL is not set on the worker: there is no PostgreSQL to migrate to',
    );
  };

  const migrate = async (job: Job, token?: string): Promise<MigrationResult> => {
    const data = parseJobPayload(MigrateChromaPayload, job);
    const migration = requireEngine();
    const log = logger.child({
      jobId: job.id,
      migrationId: data.migration_id,
      requestId: data.request_id,
      attempt: job.attemptsMade + 1,
    });
    try {
      return await migration.run(data, {
        onProgress: (progress) => job.updateProgress({ ...progress }),
        signal: shutdown,
      });
    } catch (error) {
      if (error instanceof MigrationCancelledError) throw new UnrecoverableError(error.message);
      if (error instanceof MigrationPausedError) {
        // The worker is shutting down: back to the queue, to resume from the checkpoint at once.
        log.info('migration paused for shutdown, resumes from its checkpoint');
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      const final = !isTransientMigrationError(error) || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (!final) {
        log.warn({ err: message(error) }, 'migration attempt failed, resumes from its checkpoint on retry');
        throw error;
      }
      if (data.dry_run) throw new UnrecoverableError(message(error));
      let outcome: string;
      try {
        const { removed } = await migration.rollback(data.migration_id);
        outcome = `rolled back: ${removed} rows removed`;
      } catch (rollbackError) {
        outcome = `rollback failed (${message(rollbackError)}): run "npm run migrate -- --rollback ${data.migration_id}"`;
      }
      log.error({ err: message(error), outcome }, 'migration failed for good');
      throw new UnrecoverableError(`${message(error)}; ${outcome}`);
    }
  };

  const rollback = async (job: Job): Promise<RollbackResult> => {
    const data = parseJobPayload(RollbackMigrationPayload, job);
    const migration = requireEngine();
    await checkpoints.requestCancel(data.migration_id);
    const running = await queue.getJob(jobIds.migration(data.migration_id));
    const state = running ? await running.getState() : 'unknown';
    // Rows written after the delete would survive it: wait (by retrying) until the migration has stopped.
    if (state === 'active') {
      throw new Error(`migration ${data.migration_id} is still running; it stops at its next batch`);
    }
    if (running && ['waiting', 'delayed', 'prioritized', 'paused'].includes(state)) await running.remove();
    const result = await migration.rollback(data.migration_id);
    logger.info({ jobId: job.id, migrationId: data.migration_id, removed: result.removed }, 'rollback done');
    return result;
  };

  return async (job: Job, token?: string): Promise<MigrationResult | RollbackResult> => {
    if (job.name === JobName.MigrateChroma) return migrate(job, token);
    if (job.name === JobName.RollbackMigration) return rollback(job);
    throw new UnrecoverableError(`unknown job name "${job.name}"`);
  };
}
