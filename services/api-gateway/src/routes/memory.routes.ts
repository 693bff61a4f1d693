import { Router, type Request, type Response } from 'express';
import {
  MemoryIdParam,
  NotFoundError,
  ProjectParam,
  SearchRequest,
  SessionIdParam,
  StoreBatchRequest,
  StoreRequest,
  searchRequestFilter,
  toMemoryView,
  validate,
  routeBase,
  methodNotAllowed,
} from 'memory-core';
import { z } from 'zod';
import type { Caller, IngestService } from '../ingest.service';
import { operatorRefusal, type OperatorAccess } from '../operator-access';
import type { SearchClient } from '../search-client';
import type { StatusService } from '../status.service';

export interface MemoryRoutesDeps {
  ingest: IngestService;
  search: SearchClient;
  status: StatusService;
  userId: string;
  operator: OperatorAccess;
  storeWaitTimeoutMs: number;
}

const JobIdParam = z.string().regex(/^[A-Za-z0-9:_-]{1,200}$/, 'not a job id');
const WaitQuery = z.object({ wait: z.enum(['true', 'false', '1', '0']).optional() }).loose();

/**
 * The public API under /api/memory, with the seed's field names. Writes are queued; reads and
 * searches go to the search service, after the gateway has validated them.
 */
export function memoryRoutes(deps: MemoryRoutesDeps): Router {
  const router = Router();
  router.use(routeBase());
  const caller = (req: Request, res: Response): Caller => ({
    userId: deps.userId,
    requestId: String(res.locals.requestId),
    idempotencyKey: req.get('idempotency-key'),
  });
  const forward = async (
    req: Request,
    res: Response,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ) => {
    const answer = await deps.search.forward(method, path, caller(req, res), body);
    if (answer.serverTiming) res.set('Server-Timing', answer.serverTiming);
    res.status(answer.status).json(answer.body);
  };
  const query = (req: Request) => new URLSearchParams(req.query as Record<string, string>).toString();

  router.post('/initialize', async (_req, res) => {
    res.json(await deps.status.initialize());
  });

  router.get('/status', async (_req, res) => {
    res.json(await deps.status.status());
  });

  router.post('/store', async (req, res) => {
    const input = validate(StoreRequest, req.body, 'memory');
    const wait = ['true', '1'].includes(validate(WaitQuery, req.query).wait ?? '');
    const who = caller(req, res);
    const { memoryId, job } = await deps.ingest.storeOne(input, who);
    if (wait) {
      const memory = await deps.ingest.waitForStored(job, who.userId, deps.storeWaitTimeoutMs);
      if (memory) {
        res
          .status(201)
          .json({ ...toMemoryView(memory), memory_id: memory.id, job_id: job.id, status: 'stored' });
        return;
      }
    }
    res.status(202).json({ memory_id: memoryId, job_id: job.id, status: 'queued' });
  });

  router.post('/store/batch', async (req, res) => {
    const { memories } = validate(StoreBatchRequest, req.body, 'batch');
    const { memoryIds, job } = await deps.ingest.storeBatch(memories, caller(req, res));
    res.status(202).json({ job_id: job.id, memory_ids: memoryIds, status: 'queued' });
  });

  router.get('/jobs/:id', async (req, res) => {
    const id = validate(JobIdParam, req.params.id, 'job id');
    const operator = operatorRefusal(deps.operator, req) === undefined;
    res.json(await deps.ingest.job(id, { userId: deps.userId, operator }));
  });

  router.post('/search', async (req, res) => {
    // Validated here too, so that bad filters never cost a model call.
    searchRequestFilter(deps.userId, validate(SearchRequest, req.body, 'search request'));
    await forward(req, res, 'POST', '/api/memory/search', req.body);
  });

  router.get('/stats', (req, res) => forward(req, res, 'GET', '/api/memory/stats'));

  router.get('/session/:sessionId', async (req, res) => {
    const sessionId = validate(SessionIdParam, req.params.sessionId, 'session id');
    await forward(req, res, 'GET', `/api/memory/session/${encodeURIComponent(sessionId)}?${query(req)}`);
  });

  router.delete('/session/:sessionId', async (req, res) => {
    const sessionId = validate(SessionIdParam, req.params.sessionId, 'session id');
    const { deleted, queued } = await deps.ingest.deleteSession(sessionId, caller(req, res));
    res.json({ session_id: sessionId, deleted, queued });
  });

  router.get('/project/:project', async (req, res) => {
    const project = validate(ProjectParam, req.params.project, 'project');
    await forward(req, res, 'GET', `/api/memory/project/${encodeURIComponent(project)}?${query(req)}`);
  });

  // A fixed path asked with another method is a 405, not a memory id that is not a UUID.
  const fixed: [string, string[]][] = [
    ['/initialize', ['POST']],
    ['/status', ['GET']],
    ['/store', ['POST']],
    ['/store/batch', ['POST']],
    ['/search', ['POST']],
    ['/stats', ['GET']],
    ['/jobs/:id', ['GET']],
    ['/session/:sessionId', ['GET', 'DELETE']],
  ];
  for (const [path, allowed] of fixed) router.all(path, methodNotAllowed(allowed));

  router.get('/:id', async (req, res) => {
    const id = validate(MemoryIdParam, req.params.id, 'memory id');
    await forward(req, res, 'GET', `/api/memory/${id}`);
  });

  router.delete('/:id', async (req, res) => {
    const id = validate(MemoryIdParam, req.params.id, 'memory id');
    if (!(await deps.ingest.deleteOne(id, caller(req, res)))) {
      throw new NotFoundError(`memory ${id} not found`, undefined, 'memory_not_found');
    }
    res.json({ id, deleted: true });
  });
  router.all('/:id', methodNotAllowed(['GET', 'DELETE']));

  return router;
}
