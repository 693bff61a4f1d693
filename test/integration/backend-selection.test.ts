import { Redis } from 'ioredis';
import pino from 'pino';
import {
  ChromaMemoryStore,
  ConflictError,
  connectRedis,
  DeploymentRegistry,
  openStore,
  PgvectorMemoryStore,
  probePgvector,
  selectBackend,
  UnavailableError,
  type MemoryStore,
} from 'memory-core';
import { createTestSchema, dropTestCollections, servers, uniqueName } from '../setup/servers';
import { TcpProxy } from '../setup/tcp-proxy';

const CLOSED_PORT_URL = 'postgres://memory:memory@127.0.0.1:1/memory';
const logger = pino({ level: 'silent' });

describe('backend selection (real Redis, PostgreSQL, Chroma)', () => {
  let redis: Redis;
  const registry = () => new DeploymentRegistry(redis, `{${uniqueName('sel')}}`);

  beforeAll(() => {
    redis = new Redis(servers.redisUrl);
  });
  afterAll(() => redis.quit());

  it('auto picks PostgreSQL when DATABASE_URL answers with pgvector, and says why', async () => {
    const choice = await selectBackend({ setting: 'auto', databaseUrl: servers.databaseUrl }, registry());
    expect(choice.backend).toBe('postgres');
    expect(choice.reason).toMatch(
      /MEMORY_BACKEND=auto: PostgreSQL at 127\.0\.0\.1:5432\/memory answers with pgvector \d+\.\d+/,
    );
    expect(choice.reason).not.toMatch(/memory:memory/); // no password in the reason
  });

  it('auto falls back to Chroma when DATABASE_URL is unset', async () => {
    const choice = await selectBackend({ setting: 'auto', databaseUrl: undefined }, registry());
    expect(choice).toMatchObject({
      backend: 'chroma',
      reason: 'MEMORY_BACKEND=auto: DATABASE_URL unset → chroma',
    });
  });

  it('auto falls back to Chroma when PostgreSQL does not answer', async () => {
    const probes: number[] = [];
    const counting = async (url: string) => {
      probes.push(Date.now());
      return probePgvector(url);
    };
    const choice = await selectBackend(
      { setting: 'auto', databaseUrl: CLOSED_PORT_URL, probeAttempts: 3, probeDelayMs: 20 },
      registry(),
      counting,
    );
    // It gave a restarting server a few chances before settling on Chroma.
    expect(probes).toHaveLength(3);
    expect(choice.backend).toBe('chroma');
    expect(choice.reason).toMatch(/does not answer.*→ chroma/);
  });

  it('chroma forces the fallback even when PostgreSQL answers', async () => {
    const choice = await selectBackend({ setting: 'chroma', databaseUrl: servers.databaseUrl }, registry());
    expect(choice).toMatchObject({ backend: 'chroma', reason: 'MEMORY_BACKEND=chroma → chroma' });
  });

  it('postgres refuses to start when PostgreSQL does not answer, instead of falling back', async () => {
    const error = await selectBackend(
      { setting: 'postgres', databaseUrl: CLOSED_PORT_URL },
      registry(),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as UnavailableError).code).toBe('backend_unavailable');
  });

  it('a missing DATABASE_URL is a setting to fix: refused at once, never waited for', async () => {
    const settings = (setting: 'postgres' | 'auto') => ({
      MEMORY_BACKEND: setting,
      DATABASE_URL: undefined,
      DATABASE_SCHEMA: 'public',
      DATABASE_POOL_SIZE: 2,
      HNSW_EF_SEARCH: 40,
      HNSW_OVERFETCH: 1,
      HNSW_TENANT_EF_SEARCH: 40,
      CHROMA_URL: servers.chromaUrl,
      CHROMA_COLLECTION: uniqueName('nourl'),
      QUEUE_PREFIX: 'unused',
    });
    const warnings: string[] = [];
    const watching = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    // Forced postgres without a URL; then auto on a deployment already recorded as postgres.
    const recorded = registry();
    await recorded.recordBackend({
      backend: 'postgres',
      reason: 'chosen earlier',
      decided_at: new Date().toISOString(),
    });
    for (const [setting, shared, message] of [
      ['postgres', registry(), /MEMORY_BACKEND=postgres but DATABASE_URL is unset/],
      ['auto', recorded, /this deployment uses postgres \(chosen earlier\) but DATABASE_URL is unset/],
    ] as const) {
      const error = await openStore(settings(setting), shared, watching, {
        attempts: 5,
        delayMs: 2_000,
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({
        code: 'invalid_config',
        httpStatus: 400,
        message: expect.stringMatching(message),
      });
    }
    expect(warnings).toEqual([]);
  });

  it('Redis that does not answer at start-up fails in one error that says why, without unhandled errors', async () => {
    const printed = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const started = Date.now();
    const error = await connectRedis('redis://127.0.0.1:1', 'client', 1_500).catch((e: unknown) => e);
    printed.mockRestore();
    expect(printed).not.toHaveBeenCalled();
    expect(error).toMatchObject({
      code: 'redis_unavailable',
      message: expect.stringMatching(
        /^Redis at 127\.0\.0\.1:1 did not answer within 1500 ms \(.*ECONNREFUSED.*\)$/,
      ),
    });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('records the first choice so every later service uses it, whatever it would decide alone', async () => {
    const shared = registry();
    const first = await selectBackend({ setting: 'auto', databaseUrl: servers.databaseUrl }, shared);
    // A second service started without DATABASE_URL would pick Chroma alone; it must not disagree.
    const second = await selectBackend({ setting: 'auto', databaseUrl: undefined }, shared);
    expect(second).toEqual(first);
    const forced = await selectBackend({ setting: 'chroma', databaseUrl: undefined }, shared).catch(
      (e: unknown) => e,
    );
    expect(forced).toBeInstanceOf(ConflictError);
    expect((forced as ConflictError).code).toBe('backend_mismatch');
    expect((forced as Error).message).toMatch(/npm run backend -- use chroma/);
  });

  it('changes only through the explicit switch', async () => {
    const shared = registry();
    await selectBackend({ setting: 'chroma' }, shared);
    await shared.switchBackend({
      backend: 'postgres',
      reason: 'switched after migration',
      decided_at: new Date().toISOString(),
    });
    const after = await selectBackend({ setting: 'auto', databaseUrl: undefined }, shared);
    expect(after).toMatchObject({ backend: 'postgres', reason: 'switched after migration' });
  });

  it('refuses a service whose embedding model differs from the deployment’s', async () => {
    const shared = registry();
    await shared.checkEmbeddingModel({ model: 'Xenova/all-MiniLM-L6-v2', dtype: 'q8', dimension: 384 });
    await expect(
      shared.checkEmbeddingModel({ model: 'Xenova/all-MiniLM-L6-v2', dtype: 'q8', dimension: 384 }),
    ).resolves.toBeUndefined();
    await expect(
      shared.checkEmbeddingModel({ model: 'Xenova/all-MiniLM-L6-v2', dtype: 'fp32', dimension: 384 }),
    ).rejects.toMatchObject({
      code: 'embedding_model_mismatch',
    });
  });
});

describe('DATABASE_POOL_SIZE (PostgreSQL behind a counting proxy)', () => {
  const proxy = new TcpProxy(15_434, { host: '127.0.0.1', port: 5432 });
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(servers.redisUrl);
    await proxy.up();
  });
  afterAll(async () => {
    await proxy.down();
    await redis.quit();
  });

  it.each([1, 3])(
    'a service store opens at most %i connection(s), however many calls are in flight',
    async (size) => {
      const { schema, drop } = await createTestSchema('poolsize');
      const prefix = `{${uniqueName('pool')}}`;
      const { store, choice } = await openStore(
        {
          MEMORY_BACKEND: 'postgres',
          DATABASE_URL: `postgres://memory:memory@127.0.0.1:${proxy.port}/memory`,
          DATABASE_SCHEMA: schema,
          DATABASE_POOL_SIZE: size,
          HNSW_EF_SEARCH: 40,
          HNSW_OVERFETCH: 2,
          HNSW_TENANT_EF_SEARCH: 40,
          CHROMA_URL: servers.chromaUrl,
          CHROMA_COLLECTION: 'unused',
          QUEUE_PREFIX: prefix,
        },
        new DeploymentRegistry(redis, prefix),
        logger,
        { attempts: 1 },
      );
      try {
        expect(choice.backend).toBe('postgres');
        const vector = Array.from({ length: 384 }, (_, i) => (i === 7 ? 1 : 0));
        proxy.resetPeak();
        // 12 calls at once: each waits for one of the pool's connections rather than opening its own.
        const results = await Promise.all(
          Array.from({ length: 12 }, () => store.search(vector, 3, { user_id: 'pool' })),
        );
        expect(results.every((hits) => hits.length === 0)).toBe(true);
        expect(proxy.peak).toBe(size);
      } finally {
        await store.close();
        await drop();
      }
    },
  );
});

describe.each(['postgres', 'chroma'] as const)(
  '%s store outage and recovery (server behind a proxy)',
  (backend) => {
    const proxy = new TcpProxy(
      backend === 'postgres' ? 15_433 : 18_101,
      backend === 'postgres'
        ? { host: '127.0.0.1', port: 5432 }
        : { host: '127.0.0.1', port: Number(new URL(servers.chromaUrl).port) },
    );
    let store: MemoryStore;
    let drop: (() => Promise<void>) | undefined;
    const vector = Array.from({ length: 384 }, (_, i) => (i === 3 ? 1 : 0));
    const now = new Date().toISOString();
    const record = {
      id: '5b0d3c1e-0000-4000-8000-000000000001',
      user_id: 'outage',
      session_id: null,
      session_type: null,
      project: null,
      content: 'survives an outage',
      content_type: 'note',
      metadata: {},
      content_hash: 'h-outage',
      embedding_model: 'test',
      created_at: now,
      updated_at: now,
      embedding: vector,
    };

    beforeAll(async () => {
      await proxy.up();
      if (backend === 'postgres') {
        const schema = await createTestSchema('outage');
        drop = schema.drop;
        store = new PgvectorMemoryStore(
          {
            connectionString: `postgres://memory:memory@127.0.0.1:${proxy.port}/memory`,
            schema: schema.schema,
          },
          logger,
        );
      } else {
        const collection = uniqueName('outage');
        store = new ChromaMemoryStore({ url: `http://127.0.0.1:${proxy.port}`, collection }, logger);
        drop = () => dropTestCollections(collection);
      }
      await store.initialize();
      await store.upsert([record]);
    });

    afterAll(async () => {
      await proxy.up();
      await store?.close();
      await drop?.();
      await proxy.down();
    });

    it('fails calls with a clear unavailable error while the server is down, and recovers after', async () => {
      await proxy.down();
      const error = await store.search(vector, 1, { user_id: 'outage' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect((error as UnavailableError).code).toBe('backend_unavailable');
      expect((error as UnavailableError).httpStatus).toBe(503);
      const status = await store.status();
      expect(status).toMatchObject({ backend, reachable: false });

      await proxy.up();
      const hits = await store.search(vector, 1, { user_id: 'outage' });
      expect(hits.map((h) => h.id)).toEqual([record.id]);
      expect((await store.status()).reachable).toBe(true);
    });
  },
);
