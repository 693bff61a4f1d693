import type { Server } from 'node:http';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import { isAppError, UnavailableError } from '../errors';
import { createLogger, type Logger } from '../logging';
import { DeploymentRegistry, selectBackend } from '../deployment';
import type { BackendChoice } from '../deployment';
import type { MemoryBackendSetting } from '../config/env-fields';
import { createMemoryStore, type StoreSettings } from '../storage/create-memory-store';
import type { MemoryStore } from '../storage/memory-store';
import type { Embedder } from '../embedding/embedder';
import { openEmbedder } from '../embedding/threaded.embedder';

/**
 * A Redis connection. BullMQ workers need `maxRetriesPerRequest: null` (blocking commands wait for
 * Redis to come back instead of failing); producers fail fast so an HTTP request gets a clear 503.
 */
export function createRedis(url: string, role: 'worker' | 'client'): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: role === 'worker' ? null : 2,
    enableOfflineQueue: role === 'worker',
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
}

/**
 * A Redis connection that is ready for commands: at start-up a client without an offline queue would
 * otherwise fail its first commands while it is still connecting.
 */
export async function connectRedis(
  url: string,
  role: 'worker' | 'client',
  timeoutMs = 30_000,
): Promise<Redis> {
  const redis = createRedis(url, role);
  if (redis.status === 'ready') return redis;
  // Without a listener ioredis prints every failed attempt as an unhandled error with its stack; the
  // last one goes into the start-up failure's one line instead.
  let lastError: string | undefined;
  const noteError = (error: Error) => {
    lastError = error.message;
  };
  redis.on('error', noteError);
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  redis.off('error', noteError);
  if (!ready) {
    redis.disconnect();
    const why = lastError ? ` (${lastError})` : '';
    throw new UnavailableError(`Redis at ${new URL(url).host} did not answer within ${timeoutMs} ms${why}`, {
      code: 'redis_unavailable',
    });
  }
  return redis;
}

export interface OpenStoreSettings extends StoreSettings {
  MEMORY_BACKEND: MemoryBackendSetting;
  QUEUE_PREFIX: string;
}

/**
 * Selects (or reads) the deployment's backend, creates its adapter and initializes it. Retries for a
 * while when a server is still starting.
 */
export async function openStore(
  config: OpenStoreSettings,
  registry: DeploymentRegistry,
  logger: Logger,
  { attempts = 30, delayMs = 1_000 } = {},
): Promise<{ store: MemoryStore; choice: BackendChoice }> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const choice = await selectBackend(
        { setting: config.MEMORY_BACKEND, databaseUrl: config.DATABASE_URL },
        registry,
      );
      const store = createMemoryStore(choice, config, logger);
      try {
        await store.initialize();
      } catch (error) {
        await store.close().catch(() => undefined);
        throw error;
      }
      logger.info({ backend: choice.backend, reason: choice.reason }, 'store ready');
      return { store, choice };
    } catch (error) {
      // A dependency still starting (5xx) is worth waiting for; a wrong setting (4xx) is not.
      const permanent = isAppError(error) && error.httpStatus < 500;
      if (permanent || attempt >= attempts) throw error;
      logger.warn({ attempt, err: (error as Error).message }, 'store not ready, retrying');
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

export { DeploymentRegistry };

export interface EmbedderSettings {
  EMBEDDING_MODEL: string;
  EMBEDDING_DTYPE: 'q8' | 'fp32';
  EMBEDDING_BATCH_SIZE: number;
  EMBEDDING_THREAD_SPINNING: boolean;
  EMBEDDING_THREADS: number;
  EMBEDDING_CACHE_DIR?: string | undefined;
}

/**
 * Loads the embedding model and checks it against the one the deployment records, so that a worker
 * and a search service with different models or dtypes never run side by side.
 */
export async function loadEmbedder(
  config: EmbedderSettings,
  registry: DeploymentRegistry,
): Promise<Embedder> {
  const embedder = await openEmbedder({
    model: config.EMBEDDING_MODEL,
    dtype: config.EMBEDDING_DTYPE,
    batchSize: config.EMBEDDING_BATCH_SIZE,
    threadSpinning: config.EMBEDDING_THREAD_SPINNING,
    threads: config.EMBEDDING_THREADS,
    cacheDir: config.EMBEDDING_CACHE_DIR,
  });
  try {
    await registry.checkEmbeddingModel(embedder.info);
  } catch (error) {
    await embedder.close();
    throw error;
  }
  return embedder;
}

/** Starts listening; resolves once the port is bound. */
export function listen(app: Express, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (error?: Error) => (error ? reject(error) : resolve(server)));
  });
}

/** Closes an HTTP server: stops accepting, lets requests in flight finish, drops idle keep-alives. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/**
 * Runs the shutdown steps in order on SIGTERM or SIGINT (once), then exits. A second signal or a
 * step that hangs past `timeoutMs` forces the exit.
 */
export function onShutdown(logger: Logger, steps: (() => Promise<unknown>)[], timeoutMs = 30_000): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown timed out');
      process.exit(1);
    }, timeoutMs).unref();
    void (async () => {
      let code = 0;
      for (const step of steps) {
        try {
          await step();
        } catch (error) {
          code = 1;
          logger.error({ err: error }, 'shutdown step failed');
        }
      }
      logger.info('stopped');
      process.exit(code);
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** Logs a start-up failure on one line and exits non-zero. */
export function exitOnStartupError(logger: Logger, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  logger.fatal({ code: (error as { code?: string }).code }, `start-up failed: ${message}`);
  process.exit(1);
}

/** What every service starts from. */
export interface ServiceBase<C> {
  config: C;
  logger: Logger;
  redis: Redis;
  registry: DeploymentRegistry;
}

/**
 * Starts a service: loads and validates its config (a bad one is reported by a start-up logger), then
 * logs at the configured level, connects Redis and the deployment registry, and runs `start`. The
 * steps `start` returns run in order on SIGTERM or SIGINT, then Redis closes. Any failure before
 * that ends the process with one log line.
 */
export async function startService<
  C extends { LOG_LEVEL: string; LOG_PRETTY: boolean; REDIS_URL: string; QUEUE_PREFIX: string },
>(
  service: string,
  loadConfig: () => C,
  redisRole: 'worker' | 'client',
  start: (base: ServiceBase<C>) => Promise<(() => Promise<unknown>)[]>,
): Promise<void> {
  let logger = createLogger({ service });
  try {
    const config = loadConfig();
    logger = createLogger({ service, level: config.LOG_LEVEL, pretty: config.LOG_PRETTY });
    const redis = await connectRedis(config.REDIS_URL, redisRole);
    const registry = new DeploymentRegistry(redis, config.QUEUE_PREFIX);
    const steps = await start({ config, logger, redis, registry });
    onShutdown(logger, [...steps, () => redis.quit()]);
  } catch (error) {
    exitOnStartupError(logger, error);
  }
}
