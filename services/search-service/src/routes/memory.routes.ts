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
} from 'memory-core';
import type { QueryEmbeddingCache } from '../query-embedding-cache';

export interface MemoryRoutesDeps {
  store: MemoryStore;
  queries: QueryEmbeddingCache;
  metrics: Metrics;
  defaultUserId: string;
}

/** The read side: search, get, list and stats, always scoped to the caller's user id. */
export function memoryRoutes({ store, queries, metrics, defaultUserId }: MemoryRoutesDeps): Router {
  const router = Router();
  const userOf = (req: Request) => req.get('x-user-id') ?? defaultUserId;

  router.post('/search', async (req, res) => {
    const request = validate(SearchRequest, req.body, 'search request');
    const filter = searchRequestFilter(userOf(req), request);
    const started = process.hrtime.bigint();
    const { vector, cached } = await queries.embed(request.query);
    const hits = await store.search(vector, request.n_results, filter);
    metrics.searchDuration.observe(
      { backend: store.backend, cached: String(cached) },
      Number(process.hrtime.bigint() - started) / 1e9,
    );
    res.json({ results: hits.map(toSearchResultView), backend: store.backend });
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
