import type { Queue } from 'bullmq';
import { Router } from 'express';
import {
  enqueueMigration,
  methodNotAllowed,
  MigrateChromaRequest,
  migrationIssue,
  QueueName,
  routeBase,
  validate,
  type Logger,
} from 'memory-core';
import { operatorOnly, type OperatorAccess } from '../operator-access';

export interface MigrationRoutesDeps {
  queues: Queue[];
  logger: Logger;
  operator: OperatorAccess;
}

/**
 * `POST /api/memory/migrate`: queues a Chroma → PostgreSQL migration for the worker and answers
 * `202 {job_id, migration_id}`; progress and result come from `GET /api/memory/jobs/{job_id}`.
 */
export function migrationRoutes(deps: MigrationRoutesDeps): Router {
  const router = Router();
  router.use(routeBase());
  const queue = deps.queues.find((q) => q.name === QueueName.Migration);
  if (!queue) throw new Error(`migrationRoutes needs the ${QueueName.Migration} queue`);
  const log = deps.logger.child({ module: 'migration-routes' });

  // A migration reads every user's memories in the collection: an operator's action.
  router.post('/migrate', operatorOnly(deps.operator), async (req, res) => {
    const request = validate(MigrateChromaRequest, req.body ?? {}, migrationIssue);
    const requestId = String(res.locals.requestId);
    const { job, migrationId } = await enqueueMigration(queue, request, { requestId });
    log.info({ requestId, jobId: job.id, migrationId, dryRun: request.dry_run }, 'migration queued');
    res.status(202).json({ job_id: job.id, migration_id: migrationId, status: 'queued' });
  });
  router.all('/migrate', methodNotAllowed(['POST']));

  return router;
}
