import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { ConfigError, loadConfig } from './load-config';
import { coreEnvShape, embeddingEnvShape } from './env-fields';

const schema = z.object({ ...coreEnvShape, ...embeddingEnvShape });

describe('loadConfig', () => {
  it('applies defaults and freezes the result', () => {
    const config = loadConfig(schema, {});
    expect(config).toMatchObject({
      MEMORY_BACKEND: 'auto',
      REDIS_URL: 'redis://127.0.0.1:6379',
      EMBEDDING_DTYPE: 'q8',
    });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('lists every problem, one line per variable', () => {
    let error: unknown;
    try {
      loadConfig(schema, {
        MEMORY_BACKEND: 'mysql',
        REDIS_URL: 'localhost:6379',
        EMBEDDING_DTYPE: 'fp16',
        HNSW_EF_SEARCH: '0',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toMatch(/MEMORY_BACKEND/);
    expect(problems.join('\n')).toMatch(/REDIS_URL: must be a URL starting with redis:\/\//);
    expect(problems.join('\n')).toMatch(/EMBEDDING_DTYPE/);
    expect(problems.join('\n')).toMatch(/HNSW_EF_SEARCH/);
  });

  it('runs one model thread per core the process may use unless EMBEDDING_THREADS says otherwise', () => {
    expect(loadConfig(schema, {}).EMBEDDING_THREADS).toBe(availableParallelism());
    expect(loadConfig(schema, { EMBEDDING_THREADS: '0' }).EMBEDDING_THREADS).toBe(0);
    expect(() => loadConfig(schema, { EMBEDDING_THREADS: '-1' })).toThrow(/EMBEDDING_THREADS/);
    expect(() => loadConfig(schema, { EMBEDDING_THREADS: 'two' })).toThrow(/EMBEDDING_THREADS/);
  });

  it('sizes the PostgreSQL pool from DATABASE_POOL_SIZE (2 per core unless set), 1 to 1000', () => {
    expect(loadConfig(schema, {}).DATABASE_POOL_SIZE).toBe(2 * availableParallelism());
    expect(loadConfig(schema, { DATABASE_POOL_SIZE: '2' }).DATABASE_POOL_SIZE).toBe(2);
    for (const bad of ['0', '1001', '2.5', 'ten']) {
      expect(() => loadConfig(schema, { DATABASE_POOL_SIZE: bad })).toThrow(/DATABASE_POOL_SIZE/);
    }
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig(schema, { DATABASE_URL: '' }).DATABASE_URL).toBeUndefined();
  });
});
