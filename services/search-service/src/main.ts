import { closeServer, createMetrics, listen, loadEmbedder, openStore, startService } from 'memory-core';
import { createApp } from './app';
import { loadSearchServiceConfig } from './config';

void startService(
  'search-service',
  loadSearchServiceConfig,
  'client',
  async ({ config, logger, registry }) => {
    const embedder = await loadEmbedder(config, registry);
    const { store } = await openStore(config, registry, logger);
    const app = createApp({
      store,
      embedder,
      metrics: createMetrics('search-service'),
      logger,
      defaultUserId: config.DEFAULT_USER_ID,
      queryCacheSize: config.QUERY_CACHE_SIZE,
      serverTiming: config.SERVER_TIMING,
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
    return [() => closeServer(server), () => store.close(), () => embedder.close()];
  },
);
