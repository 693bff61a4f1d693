import { Queue, QueueEvents } from 'bullmq';
import {
  closeServer,
  createMetrics,
  createRedis,
  defaultJobOptions,
  listen,
  openStore,
  QueueName,
  startService,
  Tombstones,
} from 'memory-core';
import { createApp } from './app';
import { loadGatewayConfig } from './config';
import { IngestService } from './ingest.service';
import { SearchClient } from './search-client';
import { StatusService } from './status.service';

void startService('api-gateway', loadGatewayConfig, 'client', async ({ config, logger, redis, registry }) => {
  const { store, choice } = await openStore(config, registry, logger);

  const queueOptions = { connection: redis, prefix: config.QUEUE_PREFIX, defaultJobOptions };
  const ingestQueue = new Queue(QueueName.Ingest, queueOptions);
  const migrationQueue = new Queue(QueueName.Migration, queueOptions);
  const queues = [ingestQueue, migrationQueue];
  // QueueEvents blocks on its connection, so it gets one of its own.
  const eventsRedis = createRedis(config.REDIS_URL, 'worker');
  const queueEvents = new QueueEvents(QueueName.Ingest, {
    connection: eventsRedis,
    prefix: config.QUEUE_PREFIX,
  });
  const search = new SearchClient(config.SEARCH_SERVICE_URL, config.SEARCH_TIMEOUT_MS);
  const tombstones = new Tombstones(redis, config.QUEUE_PREFIX);
  const ingest = new IngestService(
    { ingest: ingestQueue, all: queues },
    queueEvents,
    redis,
    config.QUEUE_PREFIX,
    store,
    tombstones,
    logger.child({ module: 'ingest' }),
  );
  const app = createApp({
    ingest,
    search,
    status: new StatusService(store, choice, registry, queues, search),
    queues,
    metrics: createMetrics('api-gateway'),
    logger,
    ready: async () => ({
      redis: await redis.ping().then(
        () => true,
        () => false,
      ),
      store: (await store.status()).reachable,
      search_service: (await search.info()).reachable,
    }),
    userId: config.DEFAULT_USER_ID,
    operator: { user: config.ADMIN_USER, password: config.ADMIN_PASSWORD },
    bodyLimit: config.BODY_LIMIT,
    storeWaitTimeoutMs: config.STORE_WAIT_TIMEOUT_MS,
  });
  const server = await listen(app, config.GATEWAY_PORT, config.GATEWAY_HOST);
  logger.info({ port: config.GATEWAY_PORT, backend: choice.backend }, 'api gateway listening');
  return [
    () => closeServer(server),
    () => queueEvents.close(),
    ...queues.map((q) => () => q.close()),
    () => store.close(),
    () => eventsRedis.quit(),
  ];
});
