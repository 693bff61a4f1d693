import { availableParallelism } from 'node:os';
import { WorkerEnv } from './config';

describe('worker EMBEDDING_THREADS', () => {
  it('runs one model thread per core the worker may use unless told otherwise', () => {
    expect(WorkerEnv.parse({}).EMBEDDING_THREADS).toBe(availableParallelism());
    expect(WorkerEnv.parse({ EMBEDDING_THREADS: '0' }).EMBEDDING_THREADS).toBe(0);
  });
});
