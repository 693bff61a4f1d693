import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/**
 * The Prometheus metrics of one process. Every service creates the same set (each uses the ones
 * that concern it), so dashboards can query them by name across services.
 */
export function createMetrics(service: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route, method and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    jobsProcessed: new Counter({
      name: 'memory_jobs_processed_total',
      help: 'Jobs completed by the worker, by job name',
      labelNames: ['name'] as const,
      registers,
    }),
    jobsFailed: new Counter({
      name: 'memory_jobs_failed_total',
      help: 'Job attempts that failed, by job name and whether they will be retried',
      labelNames: ['name', 'retried'] as const,
      registers,
    }),
    jobsDeferred: new Counter({
      name: 'memory_jobs_deferred_total',
      help: 'Jobs delayed without using an attempt, because the store did not answer',
      labelNames: ['name'] as const,
      registers,
    }),
    memoriesStored: new Counter({
      name: 'memory_memories_written_total',
      help: 'Memories written by the worker, by outcome (created, updated, duplicate, deleted)',
      labelNames: ['status'] as const,
      registers,
    }),
    embeddingBatchSize: new Histogram({
      name: 'embedding_batch_size',
      help: 'Texts per model call',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    }),
    embeddingDuration: new Histogram({
      name: 'embedding_duration_seconds',
      help: 'Time of one model call',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    searchDuration: new Histogram({
      name: 'search_duration_seconds',
      help: 'Similarity search latency: embed the query (or hit the cache) and query the store',
      labelNames: ['backend', 'cached'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    searchStageDuration: new Histogram({
      name: 'search_stage_duration_seconds',
      help: 'One stage of a similarity search: embed (the query, or its cache hit) or store (the query to the backend)',
      labelNames: ['backend', 'stage'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

/** Observes each request's latency under its route pattern (not the raw path, to bound cardinality). */
export function httpMetrics(metrics: Metrics): RequestHandler {
  return (req, res, next) => {
    const end = metrics.httpDuration.startTimer();
    res.on('finish', () => {
      const route = (req.route as { path?: string } | undefined)?.path;
      const base = (res.locals.routeBase as string | undefined) ?? req.baseUrl;
      end({
        method: req.method,
        route: route ? `${base}${route}` : 'unmatched',
        status: String(res.statusCode),
      });
    });
    next();
  };
}

/**
 * First in each mounted router: records where the router is mounted. Express resets `req.baseUrl`
 * when an error leaves the router, so without it `httpMetrics` would label a route's errors
 * `/store` and its successes `/api/memory/store`.
 */
export function routeBase(): RequestHandler {
  return (req, res, next) => {
    res.locals.routeBase = req.baseUrl;
    next();
  };
}

/** `GET /metrics` in Prometheus text format. */
export function metricsRoute(metrics: Metrics): RequestHandler {
  return async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  };
}
