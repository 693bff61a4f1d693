import {
  closeServer,
  createLogger,
  createMetrics,
  connectRedis,
  DeploymentRegistry,
  exitOnStartupError,
  listen,
  loadEmbedder,
  onShutdown,
  openStore,
} from 'memory-core';
import { createApp } from './app';
import { loadSearchServiceConfig } from './config';

async function main(): Promise<void> {
  let logger = createLogger({ service: 'search-service' });
  try {
    const config = loadSearchServiceConfig();
    logger = createLogger({ service: 'search-service', level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
    const redis = await connectRedis(config.REDIS_URL, 'client');
    const registry = new DeploymentRegistry(redis, config.QUEUE_PREFIX);
    const embedder = await loadEmbedder(config, registry);
    const { store } = await openStore(config, registry, logger);
    const app = createApp({
      store,
      embedder,
      metrics: createMetrics('search-service'),
      logger,
      defaultUserId: config.DEFAULT_USER_ID,
      queryCacheSize: config.QUERY_CACHE_SIZE,
    });
    const server = await listen(app, config.SEARCH_SERVICE_PORT, config.SEARCH_SERVICE_HOST);
    logger.info(
      {
        port: config.SEARCH_SERVICE_PORT,
        backend: store.backend,
        model: embedder.info.model,
        dtype: embedder.info.dtype,
      },
      'search service listening',
    );
    onShutdown(logger, [
      () => closeServer(server),
      () => store.close(),
      () => embedder.close(),
      () => redis.quit(),
    ]);
  } catch (error) {
    exitOnStartupError(logger, error);
  }
}

void main();
