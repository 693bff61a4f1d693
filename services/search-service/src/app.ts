import express from 'express';
import {
  errorHandler,
  httpMetrics,
  metricsRoute,
  notFoundRoute,
  requestId,
  requireJson,
  type Embedder,
  type Logger,
  type MemoryStore,
  type Metrics,
} from 'memory-core';
import { QueryEmbeddingCache } from './query-embedding-cache';
import { memoryRoutes } from './routes/memory.routes';

export interface SearchAppDeps {
  store: MemoryStore;
  embedder: Embedder;
  metrics: Metrics;
  logger: Logger;
  defaultUserId: string;
  queryCacheSize: number;
  /** Search answers carry a `Server-Timing` header. */
  serverTiming?: boolean;
}

/** The search service's HTTP app. No I/O happens here: `main.ts` passes connected components in. */
export function createApp(deps: SearchAppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestId(), httpMetrics(deps.metrics), requireJson(), express.json({ limit: '5mb' }));

  const queries = new QueryEmbeddingCache(deps.embedder, deps.queryCacheSize);
  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    const status = await deps.store.status();
    res
      .status(status.reachable ? 200 : 503)
      .json({ status: status.reachable ? 'ready' : 'unavailable', store: status });
  });
  app.get(
    '/info',
    (_req, res) => void res.json({ embedding: deps.embedder.info, backend: deps.store.backend }),
  );
  app.get('/metrics', metricsRoute(deps.metrics));
  app.use('/api/memory', memoryRoutes({ ...deps, queries, serverTiming: deps.serverTiming ?? false }));

  app.use(notFoundRoute());
  app.use(errorHandler(deps.logger.child({ module: 'http' })));
  return app;
}
