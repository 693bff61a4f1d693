import { z } from 'zod';
import {
  coreEnvShape,
  DEFAULT_TENANT_INDEX_POLICY,
  embeddingEnvShape,
  intVar,
  loadConfig,
  portVar,
} from 'memory-core';

export const WorkerEnv = z.object({
  ...coreEnvShape,
  ...embeddingEnvShape,
  /** Store jobs processed at once; their texts share model calls through the micro-batcher. */
  WORKER_CONCURRENCY: intVar(32, 1, 1_000),
  /** Most texts in one model call and one write. */
  MICRO_BATCH_SIZE: intVar(64, 1, 1_024),
  /**
   * How long the first text of a micro-batch waits for others to join it while the worker is busy.
   * An idle worker sends a lone text at once (a `wait=true` store does not pay the wait).
   */
  MICRO_BATCH_WAIT_MS: intVar(5, 0, 1_000),
  /** How long a job's lock lasts without renewal; a worker that died is detected after about this long. */
  WORKER_LOCK_DURATION_MS: intVar(30_000, 1_000, 600_000),
  /**
   * A user with at least this many memories, and at most half of all of them, gets an HNSW graph of
   * their own on PostgreSQL (searches scoped to them stop filtering a shared graph). 0 turns it off.
   */
  TENANT_INDEX_MIN_MEMORIES: intVar(DEFAULT_TENANT_INDEX_POLICY.minMemories, 0, 1_000_000_000),
  /** Graphs of users' own on the table at most: each costs every statement on it a little (BENCHMARKS.md). */
  TENANT_INDEX_MAX_GRAPHS: intVar(DEFAULT_TENANT_INDEX_POLICY.maxGraphs, 1, 10_000),
  /** How often the worker checks which users need (or no longer need) a graph of their own. */
  TENANT_INDEX_INTERVAL_S: intVar(600, 5, 86_400),
  /** Serves /metrics and /healthz. */
  WORKER_METRICS_PORT: portVar(8020),
  WORKER_HOST: z.string().default('127.0.0.1'),
});
export type WorkerConfig = ReturnType<typeof loadWorkerConfig>;

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env) {
  return loadConfig(WorkerEnv, env);
}
