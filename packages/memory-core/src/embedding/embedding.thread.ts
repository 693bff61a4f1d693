/**
 * One model thread of a `ThreadedEmbedder`: loads its own tokenizer and ONNX session with one
 * intra-op thread, then runs the model batches its parent sends, one at a time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AppError } from '../errors';
import { TransformersEmbedder, type TransformersEmbedderOptions } from './transformers.embedder';
import type { ThreadReply, ThreadRequest } from './threaded.embedder';

const port = parentPort!;

/** An error as it crosses to the parent: its message, and the code of an `AppError`. */
function describe(error: unknown): { message: string; code?: string } {
  if (error instanceof AppError) return { message: error.message, code: error.code };
  return { message: error instanceof Error ? error.message : String(error) };
}

async function main(): Promise<void> {
  let embedder: TransformersEmbedder;
  try {
    embedder = await TransformersEmbedder.load(workerData as TransformersEmbedderOptions);
  } catch (error) {
    port.postMessage({ type: 'failed', error: describe(error) } satisfies ThreadReply);
    return;
  }
  port.on('message', (request: ThreadRequest) => {
    if (request.type === 'close') {
      void embedder.close().finally(() => port.close());
      return;
    }
    // A request this thread does not know is a bug in its parent: stop (the parent replaces it).
    if (request.type !== 'embed') throw new Error(`unknown request ${(request as { type: string }).type}`);
    embedder.embedBatch(request.texts).then(
      (vectors) => {
        const reply: ThreadReply = { type: 'vectors', id: request.id, vectors };
        // Moved, not copied: each vector owns its buffer (see `meanPoolNormalized`).
        port.postMessage(
          reply,
          vectors.map((v) => v.buffer as ArrayBuffer),
        );
      },
      (error: unknown) => {
        port.postMessage({ type: 'error', id: request.id, error: describe(error) } satisfies ThreadReply);
      },
    );
  });
  port.postMessage({ type: 'ready', info: embedder.info } satisfies ThreadReply);
}

void main();
