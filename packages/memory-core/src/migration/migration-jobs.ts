import { randomBytes } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import { orUnavailable, RedisDown } from '../errors';
import { validate, type IssueKind } from '../http/validate';
import {
  JobName,
  MigrateChromaPayload,
  RollbackMigrationPayload,
  jobIds,
  migrationJobOptions,
  type MigrateChromaRequest,
} from '../jobs/job-catalogue';

/** A new migration id: sortable by start time, e.g. `mig-m3k2x9pq-4f1a9c0e`. */
export function newMigrationId(now = new Date()): string {
  return `mig-${now.getTime().toString(36)}-${randomBytes(4).toString('hex')}`;
}

function add(queue: Queue, name: string, data: unknown, jobId: string): Promise<Job> {
  return orUnavailable(() => queue.add(name, data, { ...migrationJobOptions, jobId }), RedisDown.queue);
}

/** A migration request's problem: in its `mapping`, `invalid_mapping`; elsewhere `validation_failed`. */
export const migrationIssue: IssueKind = (path) =>
  path[0] === 'mapping'
    ? { what: 'mapping', code: 'invalid_mapping' }
    : { what: 'migration request', code: 'validation_failed' };

/**
 * Validates a migration request and queues it on the migration queue under a job id derived from the
 * migration id, so that queuing the same migration twice is one job.
 */
export async function enqueueMigration(
  queue: Queue,
  request: MigrateChromaRequest,
  options: { migrationId?: string; requestId?: string } = {},
): Promise<{ job: Job; migrationId: string }> {
  const migrationId = options.migrationId ?? newMigrationId();
  const payload = validate(
    MigrateChromaPayload,
    { ...request, migration_id: migrationId, request_id: options.requestId },
    migrationIssue,
  );
  const job = await add(queue, JobName.MigrateChroma, payload, jobIds.migration(migrationId));
  return { job, migrationId };
}

/** Queues the rollback of a migration (it stops the migration first if it is still running). */
export async function enqueueRollback(
  queue: Queue,
  migrationId: string,
  options: { requestId?: string } = {},
): Promise<Job> {
  const payload = validate(
    RollbackMigrationPayload,
    { migration_id: migrationId, request_id: options.requestId },
    'rollback request',
  );
  return add(queue, JobName.RollbackMigration, payload, jobIds.rollback(migrationId));
}
