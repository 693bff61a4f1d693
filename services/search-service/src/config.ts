import { z } from 'zod';
import { coreEnvShape, embeddingEnvShape, intVar, loadConfig, portVar } from 'memory-core';

export const SearchServiceEnv = z.object({
  ...coreEnvShape,
  ...embeddingEnvShape,
  SEARCH_SERVICE_PORT: portVar(8010),
  SEARCH_SERVICE_HOST: z.string().default('127.0.0.1'),
  /** Query embeddings kept in the LRU cache. */
  QUERY_CACHE_SIZE: intVar(1_000, 0, 1_000_000),
});
export type SearchServiceConfig = ReturnType<typeof loadSearchServiceConfig>;

export function loadSearchServiceConfig(env: NodeJS.ProcessEnv = process.env) {
  return loadConfig(SearchServiceEnv, env);
}
