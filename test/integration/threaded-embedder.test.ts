import type { Worker } from 'node:worker_threads';
import {
  cosineSimilarity,
  openEmbedder,
  ThreadedEmbedder,
  TransformersEmbedder,
  UnavailableError,
} from 'memory-core';
import { seededRandom, testModel } from '../setup/servers';

/** Texts of mixed lengths, so that the length-sorted batches differ from the input order. */
function mixedTexts(n: number, seed: number): string[] {
  const random = seededRandom(seed);
  const words = ['memory', 'wisdom', 'search', 'vector', 'agent', 'matters', 'truly', 'the', 'a', 'of'];
  return Array.from({ length: n }, (_, i) => {
    const length = 1 + Math.floor(random() * 40);
    return `${i} ` + Array.from({ length }, () => words[Math.floor(random() * words.length)]).join(' ');
  });
}

/** The worker threads of a ThreadedEmbedder, to stop one as a crash would. */
function modelThreads(embedder: ThreadedEmbedder): Worker[] {
  const threads = (embedder as unknown as { threads: Set<{ worker: Worker }> }).threads;
  return [...threads].map((t) => t.worker);
}

describe('ThreadedEmbedder (model threads, real transformers.js pipeline)', () => {
  let threaded: ThreadedEmbedder;
  let inProcess: TransformersEmbedder;

  beforeAll(async () => {
    [threaded, inProcess] = await Promise.all([
      ThreadedEmbedder.load({ model: testModel.model, dtype: 'q8', batchSize: 4, threads: 2 }),
      TransformersEmbedder.load({ model: testModel.model, dtype: 'q8', batchSize: 4 }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([threaded.close(), inProcess.close()]);
  });

  it('reports the same model as the in-process embedder', () => {
    expect(threaded.info).toEqual(inProcess.info);
  });

  it('gives the vectors of the in-process embedder, in input order, for batches shared out among threads', async () => {
    const texts = mixedTexts(37, 1);
    const [a, b] = await Promise.all([threaded.embed(texts), inProcess.embed(texts)]);
    expect(a).toHaveLength(texts.length);
    for (const [i, v] of a.entries()) {
      expect(v).toHaveLength(384);
      expect(cosineSimilarity(v, b[i]!)).toBeGreaterThanOrEqual(0.99999);
    }
  });

  it('keeps concurrent calls apart: each call gets the vectors of its own texts', async () => {
    const calls = [0, 1, 2, 3, 4].map((k) => mixedTexts(5 + k * 3, 10 + k));
    const results = await Promise.all(calls.map((texts) => threaded.embed(texts)));
    for (const [k, texts] of calls.entries()) {
      const expected = await inProcess.embed(texts);
      for (const [i, v] of results[k]!.entries()) {
        expect(cosineSimilarity(v, expected[i]!)).toBeGreaterThanOrEqual(0.99999);
      }
    }
  });

  it('returns nothing for no texts', async () => {
    await expect(threaded.embed([])).resolves.toEqual([]);
  });

  it('fails the batch of a model thread that dies with a 503, then replaces the thread', async () => {
    const texts = mixedTexts(64, 2);
    const before = modelThreads(threaded).map((w) => w.threadId);
    const call = threaded.embed(texts).catch((e: unknown) => e);
    // A request a thread does not know makes it throw and stop, between two of its batches' steps.
    // (Not worker.terminate(): stopping a thread inside ONNX runtime's run aborts the process.)
    for (const worker of modelThreads(threaded)) worker.postMessage({ type: 'unknown' });
    const error = await call;
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as UnavailableError).code).toBe('embedding_model_unavailable');
    // Replacements load in the background; a call made meanwhile waits for them and is served.
    const [again, expected] = await Promise.all([threaded.embed(texts), inProcess.embed(texts)]);
    const after = modelThreads(threaded).map((w) => w.threadId);
    expect(after).toHaveLength(2);
    for (const id of after) expect(before).not.toContain(id);
    for (const [i, v] of again.entries()) {
      expect(cosineSimilarity(v, expected[i]!)).toBeGreaterThanOrEqual(0.99999);
    }
  });
});

describe('ThreadedEmbedder loading and closing', () => {
  it('fails with the in-process embedder’s one line naming EMBEDDING_MODEL when the folder has no model', async () => {
    const error = await ThreadedEmbedder.load({
      model: '/nonexistent/model',
      dtype: 'q8',
      batchSize: 4,
      threads: 2,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as UnavailableError).code).toBe('embedding_model_unavailable');
    expect((error as Error).message).toMatch(/EMBEDDING_MODEL folder \/nonexistent\/model/);
    expect((error as Error).message).not.toMatch(/\n/);
  });

  it('refuses a thread count below 1', async () => {
    await expect(
      ThreadedEmbedder.load({ model: testModel.model, dtype: 'q8', batchSize: 4, threads: 0 }),
    ).rejects.toThrow(/threads must be a positive integer/);
  });

  it('on close, fails the queued batches, stops its threads, and refuses new calls', async () => {
    const embedder = await ThreadedEmbedder.load({ ...testModel, batchSize: 2, threads: 1 });
    await embedder.embed(['before close']);
    // 20 batches for one thread: the first is running when close comes, the others wait.
    const pending = embedder.embed(mixedTexts(40, 3)).catch((e: unknown) => e);
    await embedder.close();
    expect(await pending).toBeInstanceOf(UnavailableError);
    expect(modelThreads(embedder)).toHaveLength(0);
    await expect(embedder.embed(['after close'])).rejects.toThrow(/closed/);
  });

  it('EMBEDDING_THREADS=0 runs the model in the caller’s thread; 1 or more in model threads', async () => {
    const options = { ...testModel, batchSize: 8 };
    const [none, two] = await Promise.all([
      openEmbedder({ ...options, threads: 0 }),
      openEmbedder({ ...options, threads: 2 }),
    ]);
    try {
      expect(none).toBeInstanceOf(TransformersEmbedder);
      expect(two).toBeInstanceOf(ThreadedEmbedder);
      expect(modelThreads(two as ThreadedEmbedder)).toHaveLength(2);
    } finally {
      await Promise.all([none.close(), two.close()]);
    }
  });
});
