import { embeddingEnvShape, openEmbedder, type Embedder, type EmbedderOptions } from 'memory-core';
import { benchModel } from './paths';

/** The embedding settings the worker runs with unless its environment says otherwise. */
export const WORKER_EMBEDDING = {
  batchSize: embeddingEnvShape.EMBEDDING_BATCH_SIZE.parse(undefined),
  threads: embeddingEnvShape.EMBEDDING_THREADS.parse(undefined),
  threadSpinning: embeddingEnvShape.EMBEDDING_THREAD_SPINNING.parse(undefined),
};

/** The bench's model (q8) opened as the worker opens it, with `overrides` on its defaults. */
export function openWorkerEmbedder(overrides: Partial<EmbedderOptions> = {}): Promise<Embedder> {
  return openEmbedder({ model: benchModel, dtype: 'q8', ...WORKER_EMBEDDING, ...overrides });
}
