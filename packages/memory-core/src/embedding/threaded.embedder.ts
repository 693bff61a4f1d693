import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AppError, UnavailableError } from '../errors';
import type { Embedder, EmbedderInfo } from './embedder';
import {
  lengthSortedBatches,
  TransformersEmbedder,
  type TransformersEmbedderOptions,
} from './transformers.embedder';

export type EmbedderOptions = TransformersEmbedderOptions & {
  /**
   * Model threads (`EMBEDDING_THREADS`): each its own ONNX session with one intra-op thread. 0: the
   * model runs in the caller's thread, on ONNX runtime's own threads (one per core).
   */
  threads: number;
};

/** The embedder for `options.threads`: a `ThreadedEmbedder`, or with 0 a `TransformersEmbedder`. */
export function openEmbedder(options: EmbedderOptions): Promise<Embedder> {
  return options.threads === 0 ? TransformersEmbedder.load(options) : ThreadedEmbedder.load(options);
}

/** From a `ThreadedEmbedder` to one of its model threads. */
export type ThreadRequest = { type: 'embed'; id: number; texts: string[] } | { type: 'close' };

/** From a model thread to its `ThreadedEmbedder`. */
export type ThreadReply =
  | { type: 'ready'; info: EmbedderInfo }
  | { type: 'failed'; error: ThreadError }
  | { type: 'vectors'; id: number; vectors: Float32Array[] }
  | { type: 'error'; id: number; error: ThreadError };

interface ThreadError {
  message: string;
  code?: string;
}

interface Task {
  id: number;
  texts: string[];
  resolve(vectors: Float32Array[]): void;
  reject(error: Error): void;
}

interface ModelThread {
  worker: Worker;
  /** The model batch it is running. */
  task?: Task;
}

/**
 * The embedder as the worker runs it: `threads` model threads (Node worker threads), each with its
 * own ONNX session of one intra-op thread, sharing out the length-sorted model batches of each call.
 * For one text at a time (the search service's queries) the hop to a thread costs about 0.5 ms, and
 * the model in the caller's thread (`TransformersEmbedder`) answers sooner.
 *
 * Why not one session with ONNX runtime's threads: for batches of 8 short texts, splitting every
 * operator across cores costs more in synchronisation than it gains. On 2 cores, one model per core
 * embeds about 1.4× the texts per second of one model on both, and a model thread that PostgreSQL
 * pre-empts delays only its own batch instead of every operator of the other (BENCHMARKS.md,
 * section 1). The service's own thread stays free for HTTP, Redis and PostgreSQL meanwhile.
 *
 * A model thread that dies fails its batch (the caller sees an `UnavailableError`; a worker's job is
 * retried) and is replaced. A thread is only ever terminated from outside while idle: onnxruntime-node
 * aborts the whole process when a thread is stopped inside a model run.
 */
export class ThreadedEmbedder implements Embedder {
  private readonly threads = new Set<ModelThread>();
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closing = false;
  /** Replacements of dead threads still loading: calls wait for them rather than fail. */
  private replacing = 0;

  private constructor(
    readonly info: EmbedderInfo,
    private readonly options: EmbedderOptions,
  ) {}

  /** Starts `threads` model threads; fails as `TransformersEmbedder.load` does if one cannot load. */
  static async load(options: EmbedderOptions): Promise<ThreadedEmbedder> {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`threads must be a positive integer, not ${options.threads}`);
    }
    const started = await Promise.allSettled(
      Array.from({ length: options.threads }, () => startThread(options)),
    );
    const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await Promise.all(workers.map((w) => w.worker.terminate()));
      throw failed.reason;
    }
    const embedder = new ThreadedEmbedder(workers[0]!.info, options);
    for (const { worker } of workers) embedder.adopt(worker);
    return embedder;
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    const out = new Array<Float32Array>(texts.length);
    // Longest batches first: the call ends on short ones, so no thread waits long for the last.
    // Short ones last kept 1.9 cores busy on 2 against 1.7, 1.17× the texts per second.
    await Promise.all(
      lengthSortedBatches(texts, this.options.batchSize)
        .reverse()
        .map(async (batch) => {
          const vectors = await this.run(batch.map((i) => texts[i]!));
          batch.forEach((index, i) => (out[index] = vectors[i]!));
        }),
    );
    return out;
  }

  /** Lets the batches being run finish, then stops every model thread. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const task of this.queue.splice(0)) task.reject(closedError());
    await Promise.all(
      [...this.threads].map(async (thread) => {
        const exited = new Promise((resolve) => thread.worker.once('exit', resolve));
        if (thread.task) {
          await Promise.race([new Promise((resolve) => thread.worker.once('message', resolve)), exited]);
        }
        thread.worker.postMessage({ type: 'close' } satisfies ThreadRequest);
        const timer = setTimeout(() => void thread.worker.terminate(), 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private run(texts: string[]): Promise<Float32Array[]> {
    if (this.closing) return Promise.reject(closedError());
    if (this.threads.size === 0 && this.replacing === 0) {
      return Promise.reject(
        new UnavailableError('no embedding model thread is running', { code: 'embedding_model_unavailable' }),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, texts, resolve, reject });
      this.dispatch();
    });
  }

  /** Gives queued batches to idle threads, one batch per thread at a time. */
  private dispatch(): void {
    for (const thread of this.threads) {
      if (this.queue.length === 0) return;
      if (thread.task) continue;
      const task = this.queue.shift()!;
      thread.task = task;
      thread.worker.postMessage({ type: 'embed', id: task.id, texts: task.texts } satisfies ThreadRequest);
    }
  }

  private adopt(worker: Worker): void {
    const thread: ModelThread = { worker };
    this.threads.add(thread);
    worker.on('message', (reply: ThreadReply) => {
      const task = thread.task;
      if (!task || !('id' in reply) || reply.id !== task.id) return;
      thread.task = undefined;
      if (reply.type === 'vectors') task.resolve(reply.vectors);
      else task.reject(new Error(`embedding failed: ${reply.error.message}`));
      this.dispatch();
    });
    // An uncaught error in the thread ends it: 'exit' follows, and handles it.
    worker.on('error', () => undefined);
    worker.on('exit', (exitCode) => {
      this.threads.delete(thread);
      thread.task?.reject(
        new UnavailableError(`an embedding model thread stopped (exit code ${exitCode})`, {
          code: 'embedding_model_unavailable',
        }),
      );
      if (!this.closing) this.replace();
    });
  }

  /** Starts a thread in place of one that died; if none can start, what is queued fails. */
  private replace(): void {
    this.replacing += 1;
    startThread(this.options).then(
      ({ worker }) => {
        this.replacing -= 1;
        if (this.closing) return void worker.terminate();
        this.adopt(worker);
        this.dispatch();
      },
      (error: Error) => {
        this.replacing -= 1;
        if (this.threads.size > 0 || this.replacing > 0) return;
        for (const task of this.queue.splice(0)) task.reject(error);
      },
    );
  }
}

function closedError(): UnavailableError {
  return new UnavailableError('the embedder is closed', { code: 'embedding_model_unavailable' });
}

/** Starts one model thread and waits until its model is loaded. */
function startThread(options: TransformersEmbedderOptions): Promise<{ worker: Worker; info: EmbedderInfo }> {
  const worker = new Worker(threadScript(), {
    workerData: { ...options, intraOpThreads: 1 } satisfies TransformersEmbedderOptions,
  });
  return new Promise((resolve, reject) => {
    // Only these listeners: Worker keeps its own on itself, which track whether it holds the process open.
    const settle = () => {
      worker.off('message', onMessage);
      worker.off('error', fail);
      worker.off('exit', onExit);
    };
    function fail(error: Error) {
      settle();
      void worker.terminate();
      reject(error);
    }
    function onMessage(reply: ThreadReply) {
      if (reply.type === 'ready') {
        settle();
        resolve({ worker, info: reply.info });
      } else if (reply.type === 'failed') fail(toError(reply.error));
      else fail(new Error(`embedding model thread sent ${reply.type} before it was ready`));
    }
    function onExit(code: number) {
      fail(new Error(`embedding model thread exited (code ${code}) while loading`));
    }
    worker.on('message', onMessage);
    worker.on('error', fail);
    worker.on('exit', onExit);
  });
}

/** An error from a thread, as the `UnavailableError` it was when it carried a code. */
function toError(error: ThreadError): Error {
  return error.code ? new UnavailableError(error.message, { code: error.code }) : new Error(error.message);
}

/**
 * The compiled thread script. Run from the TypeScript sources (the tests map memory-core to them),
 * this file has no compiled neighbour: the build's copy is used, which `npm test` builds first.
 */
function threadScript(): string {
  const beside = path.join(__dirname, 'embedding.thread.js');
  if (existsSync(beside)) return beside;
  const built = path.resolve(__dirname, '../../dist/embedding/embedding.thread.js');
  if (existsSync(built)) return built;
  throw new AppError('embedder_not_built', `no ${built}: build memory-core first (npx tsc -b)`);
}
