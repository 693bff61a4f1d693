import { availableParallelism } from 'node:os';
import { DEFAULT_EXACT_SCAN_THRESHOLD } from 'memory-core';
import { WorkerEnv } from './config';

describe('worker EMBEDDING_THREADS', () => {
  it('runs one model thread per core the worker may use unless told otherwise', () => {
    expect(WorkerEnv.parse({}).EMBEDDING_THREADS).toBe(availableParallelism());
    expect(WorkerEnv.parse({ EMBEDDING_THREADS: '0' }).EMBEDDING_THREADS).toBe(0);
  });
});

describe("worker's policy for users' own graphs", () => {
  it('gives a graph to every user too large for an exact scan, up to 100 graphs, unless told otherwise', () => {
    expect(WorkerEnv.parse({})).toMatchObject({
      TENANT_INDEX_MIN_MEMORIES: DEFAULT_EXACT_SCAN_THRESHOLD,
      TENANT_INDEX_MAX_GRAPHS: 100,
    });
    expect(WorkerEnv.parse({ TENANT_INDEX_MAX_GRAPHS: '300' }).TENANT_INDEX_MAX_GRAPHS).toBe(300);
  });

  it('refuses a cap of no graphs (TENANT_INDEX_MIN_MEMORIES=0 turns them off)', () => {
    expect(WorkerEnv.safeParse({ TENANT_INDEX_MAX_GRAPHS: '0' }).success).toBe(false);
  });
});
