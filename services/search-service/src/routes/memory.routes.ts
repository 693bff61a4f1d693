import { Router, type Request } from 'express';
import {
  MemoryIdParam,
  NotFoundError,
  PageQuery,
  ProjectParam,
  SearchRequest,
  SessionIdParam,
  scopeConditions,
  searchRequestFilter,
  toMemoryView,
  toSearchResultView,
  validate,
  type Metrics,
  type MemoryStore,
  routeBase,
} from 'memory-core';
import type { QueryEmbeddingCache } from '../query-embedding-cache';

export interface MemoryRoutesDeps {
  store: MemoryStore;
  queries: QueryEmbeddingCache;
  metrics: Metrics;
  defaultUserId: string;
  /** Whether search answers carry a `Server-Timing` header (SERVER_TIMING). */
  serverTiming: boolean;
}

const msSince = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** The read side: search, get, list and stats, always scoped to the caller's user id. */
export function memoryRoutes({
  store,
  queries,
  metrics,
  defaultUserId,
  serverTiming,
}: MemoryRoutesDeps): Router {
  const router = Router();
  router.use(routeBase());
  const userOf = (req: Request) => req.get('x-user-id') ?? defaultUserId;

  router.post('/search', async (req, res) => {
    const request = validate(SearchRequest, req.body, 'search request');
    const filter = searchRequestFilter(userOf(req), request);
    const started = process.hrtime.bigint();
    const { vector, cached } = await queries.embed(request.query);
    const embedMs = msSince(started);
    const searched = process.hrtime.bigint();
    const hits = await store.search(vector, request.n_results, filter);
    const storeMs = msSince(searched);
    const { backend } = store;
    metrics.searchDuration.observe({ backend, cached: String(cached) }, msSince(started) / 1000);
    metrics.searchStageDuration.observe({ backend, stage: 'embed' }, embedMs / 1000);
    metrics.searchStageDuration.observe({ backend, stage: 'store' }, storeMs / 1000);
    if (serverTiming) {
      res.set('Server-Timing', `embed;dur=${embedMs.toFixed(3)}, store;dur=${storeMs.toFixed(3)}`);
    }
    res.json({ results: hits.map(toSearchResultView), backend });
  });

  router.get('/stats', async (req, res) => {
    res.json({ ...(await store.stats({ user_id: userOf(req) })), backend: store.backend });
  });

  router.get('/session/:sessionId', async (req, res) => {
    const sessionId = validate(SessionIdParam, req.params.sessionId, 'session id');
    const page = validate(PageQuery, req.query, 'page');
    const where = scopeConditions({ session_id: sessionId });
    const result = await store.list({ user_id: userOf(req), where }, page);
    res.json({
      session_id: sessionId,
      memories: result.items.map(toMemoryView),
      total: result.total,
      ...page,
    });
  });

  router.get('/project/:project', async (req, res) => {
    const project = validate(ProjectParam, req.params.project, 'project');
    const page = validate(PageQuery, req.query, 'page');
    const where = scopeConditions({ project });
    const result = await store.list({ user_id: userOf(req), where }, page);
    res.json({ project, memories: result.items.map(toMemoryView), total: result.total, ...page });
  });

  router.get('/:id', async (req, res) => {
    const id = validate(MemoryIdParam, req.params.id, 'memory id');
    const memory = await store.get(userOf(req), id);
    if (!memory) throw new NotFoundError(`memory ${id} not found`, undefined, 'memory_not_found');
    res.json(toMemoryView(memory));
  });

  return router;
}
