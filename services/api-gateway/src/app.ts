import path from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import express from 'express';
import {
  errorHandler,
  httpMetrics,
  metricsRoute,
  notFoundRoute,
  requestId,
  requireJson,
  type Logger,
  type Metrics,
} from 'memory-core';
import type { IngestService } from './ingest.service';
import { openApiDocument } from './openapi';
import { memoryRoutes } from './routes/memory.routes';
import { operatorOnly, type OperatorAccess } from './operator-access';
import { migrationRoutes } from './routes/migration.routes';
import type { SearchClient } from './search-client';
import type { StatusService } from './status.service';

export interface GatewayAppDeps {
  ingest: IngestService;
  search: SearchClient;
  status: StatusService;
  queues: Queue[];
  metrics: Metrics;
  logger: Logger;
  /** Answers whether Redis, the store and the search service are up. */
  ready: () => Promise<Record<string, boolean>>;
  userId: string;
  /** Who may use Bull Board and migrations. */
  operator: OperatorAccess;
  bodyLimit: string;
  storeWaitTimeoutMs: number;
}

const swaggerUiDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const docsPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Memory service API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({ url: '/api/openapi.json', dom_id: '#ui' });</script></body></html>`;

/** The gateway's HTTP app. No I/O happens here: `main.ts` passes connected components in. */
export function createApp(deps: GatewayAppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestId(), httpMetrics(deps.metrics));

  const board = new ExpressAdapter();
  board.setBasePath('/admin/queues');
  // Without operator credentials the board only shows: retrying, adding or removing jobs needs them.
  const readOnlyMode = deps.operator.password === undefined;
  createBullBoard({
    queues: deps.queues.map((q) => new BullMQAdapter(q, { readOnlyMode })),
    serverAdapter: board,
  });
  app.use('/admin/queues', operatorOnly(deps.operator), board.getRouter());

  const document = openApiDocument();
  app.get('/api/openapi.json', (_req, res) => void res.json(document));
  app.use('/docs/assets', express.static(swaggerUiDir, { index: false }));
  app.get('/docs', (_req, res) => void res.type('html').send(docsPage));
  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    const checks = await deps.ready();
    const ok = Object.values(checks).every(Boolean);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'unavailable', checks });
  });
  app.get('/metrics', metricsRoute(deps.metrics));

  app.use(
    '/api/memory',
    requireJson(),
    express.json({ limit: deps.bodyLimit }),
    migrationRoutes(deps),
    memoryRoutes(deps),
  );

  app.use(notFoundRoute());
  app.use(errorHandler(deps.logger.child({ module: 'http' })));
  return app;
}
