import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';

/** An integer environment variable with bounds. */
export const intVar = (defaultValue: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(defaultValue);

export const portVar = (defaultValue: number) => intVar(defaultValue, 1, 65535);

export const boolVar = (defaultValue: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(defaultValue ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

const urlVar = (protocols: string[]) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
  );

export const MemoryBackendSetting = z.enum(['auto', 'postgres', 'chroma']);
export type MemoryBackendSetting = z.infer<typeof MemoryBackendSetting>;

/** Variables every service reads: where the servers are and which backend to use. */
export const coreEnvShape = {
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_PRETTY: boolVar(false),
  REDIS_URL: urlVar(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  /** Unset means "no PostgreSQL": `auto` then selects Chroma. */
  DATABASE_URL: urlVar(['postgres:', 'postgresql:']).optional(),
  /**
   * Connections each process's PostgreSQL pool may open (the worker opens up to 4 more, at most this
   * many, while it migrates). Default: 2 per core. On 2 cores shared with PostgreSQL, 8 searches in
   * flight: 4 connections served 100 per second at p99 138 ms, 10 served 103 at p99 165, 1 only 67
   * (BENCHMARKS.md, HNSW settings). With PostgreSQL on a larger machine of its own, raise it.
   */
  DATABASE_POOL_SIZE: intVar(2 * availableParallelism(), 1, 1000),
  CHROMA_URL: urlVar(['http:', 'https:']).default('http://127.0.0.1:8100'),
  CHROMA_COLLECTION: z
    .string()
    .regex(
      /^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$/,
      'must be 3-63 letters, digits, dot, dash or underscore',
    )
    .default('memories'),
  MEMORY_BACKEND: MemoryBackendSetting.default('auto'),
  /** PostgreSQL schema that holds the tables (tests use one per file). */
  DATABASE_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lowercase SQL identifier')
    .default('public'),
  QUEUE_PREFIX: z.string().min(1).default('{memory}'),
  DEFAULT_USER_ID: z.string().min(1).max(128).default('1'),
  /**
   * 400: recall@10 ≥ 0.95 with a user filter (a tenth of the rows) at 1M real embeddings, where 200
   * gave 0.94 (BENCHMARKS.md, section 4); 100 → 200 earlier for the same reason at 100k.
   */
  HNSW_EF_SEARCH: intVar(400, 10, 1000),
  /** HNSW candidates per result, re-ranked by exact distance (the store's `overfetch`, BENCHMARKS.md). */
  HNSW_OVERFETCH: intVar(2, 1, 10),
  /**
   * ef_search in a user's own graph (TENANT_INDEX_MIN_MEMORIES), where no candidate is filtered out:
   * at 1M memories, a user with 100k of them, 200 gave recall@10 0.98 (BENCHMARKS.md, section 4).
   */
  HNSW_TENANT_EF_SEARCH: intVar(200, 10, 1000),
};

/** Variables of the processes that load the embedding model (worker, search service). */
export const embeddingEnvShape = {
  /** A Hugging Face hub id, or a path to a local folder holding the model (tokenizer, config, onnx/). */
  EMBEDDING_MODEL: z.string().min(1).default('Xenova/all-MiniLM-L6-v2'),
  EMBEDDING_DTYPE: z.enum(['q8', 'fp32']).default('q8'),
  /**
   * Texts per model call. Small: on CPU a batch gains little and pads every text to the longest one,
   * so 8 length-sorted texts per call embed about 2.5× faster than 64 (BENCHMARKS.md, section 1).
   */
  EMBEDDING_BATCH_SIZE: intVar(8, 1, 1024),
  /**
   * Whether ONNX runtime's threads spin while they wait for work (its own default). Off: spinning
   * threads burn CPU that PostgreSQL, Redis and the services need on the same machine; alone, the
   * model is as fast either way (BENCHMARKS.md, sections 2 and tuning).
   */
  EMBEDDING_THREAD_SPINNING: boolVar(false),
  /**
   * Model threads, each running its own copy of the model on one core (default: the cores this
   * process may use). On 2 cores they embed about 1.4× the texts per second of one model spread over
   * both by ONNX runtime (BENCHMARKS.md, section 1). 0: the model in the service's own thread, on
   * ONNX runtime's threads (the search service's default: one query at a time, latency first).
   */
  EMBEDDING_THREADS: intVar(availableParallelism(), 0, 64),
  /** Where downloaded hub models are cached. */
  EMBEDDING_CACHE_DIR: z.string().optional(),
};

/** Whether an EMBEDDING_MODEL value names a local folder rather than a hub id. */
export function isLocalModelPath(value: string): boolean {
  return path.isAbsolute(value) || value.startsWith('./') || value.startsWith('../') || value === '.';
}
