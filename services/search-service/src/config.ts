import { z } from 'zod';
import { boolVar, coreEnvShape, embeddingEnvShape, intVar, loadConfig, portVar } from 'memory-core';

export const SearchServiceEnv = z.object({
  ...coreEnvShape,
  ...embeddingEnvShape,
  SEARCH_SERVICE_PORT: portVar(8010),
  SEARCH_SERVICE_HOST: z.string().default('127.0.0.1'),
  /**
   * The search service embeds one query per request, where latency counts: by default the model runs
   * in the service's own thread, as a hop to a model thread costs about 0.5 ms per query on 2 cores
   * (BENCHMARKS.md, tuning). Set it to run queries from concurrent requests in parallel.
   */
  EMBEDDING_THREADS: intVar(0, 0, 64),
  /** Query embeddings kept in the LRU cache. */
  QUERY_CACHE_SIZE: intVar(1_000, 0, 1_000_000),
  /**
   * Adds `Server-Timing: embed;dur=…, store;dur=…` (ms) to search answers, for seeing where a slow
   * search spent its time. Off by default: the query cache is shared by all users, so an embed stage
   * of ~0 ms would tell a caller that someone asked the same text recently.
   */
  SERVER_TIMING: boolVar(false),
});
export type SearchServiceConfig = ReturnType<typeof loadSearchServiceConfig>;

export function loadSearchServiceConfig(env: NodeJS.ProcessEnv = process.env) {
  return loadConfig(SearchServiceEnv, env);
}
