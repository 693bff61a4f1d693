import { TransformersEmbedder, type Embedder } from 'memory-core';
import { meanLength, textsFrom } from '../lib/corpus';
import { CorpusOffsets, type BenchContext } from '../lib/context';
import { benchModel } from '../lib/paths';
import { median, nowMs } from '../lib/stats';
import { openWorkerEmbedder, WORKER_EMBEDDING } from '../lib/worker-embedder';

export interface EmbeddingRow {
  dtype: 'q8' | 'fp32';
  batchSize: number;
  texts: number;
  /** Texts per second, median over runs, with the slowest and fastest run. */
  rate: number;
  min: number;
  max: number;
  runs: number;
}

export interface EmbeddingResults {
  meanChars: { q8: number; fp32: number };
  rows: EmbeddingRow[];
  /**
   * Calls of `callSize` texts (a worker micro-batch) that the embedder sorts by length and runs in
   * model batches of `batchSize` (EMBEDDING_BATCH_SIZE): less padding than one model call.
   */
  subBatched: (EmbeddingRow & { callSize: number })[];
  /**
   * Calls of `callSize` texts in model batches of the default EMBEDDING_BATCH_SIZE, by EMBEDDING_THREADS:
   * 0 is one model on ONNX runtime's threads (one per core), n ≥ 1 is n model threads of one ONNX
   * thread each. `cpuMsPerText`: this process's CPU time (every thread) per text, median over runs.
   */
  threaded?: (EmbeddingRow & { callSize: number; threads: number; cpuMsPerText: number })[];
}

/**
 * The raw transformers.js pipeline (tokenise, ONNX model, mean pooling, normalise) in this process, on
 * the same texts for every batch size; batch sizes are interleaved within each run.
 */
export async function runEmbedding(ctx: BenchContext): Promise<EmbeddingResults> {
  const { options, corpus, progress } = ctx;
  const rows: EmbeddingRow[] = [];
  const subBatched: EmbeddingResults['subBatched'] = [];
  const threaded: NonNullable<EmbeddingResults['threaded']> = [];
  const meanChars = { q8: 0, fp32: 0 };
  for (const dtype of ['q8', 'fp32'] as const) {
    const n = dtype === 'q8' ? options.embedding.q8Texts : options.embedding.fp32Texts;
    const texts = textsFrom(corpus, n, CorpusOffsets.embedding);
    meanChars[dtype] = meanLength(texts);
    // One call per chunk: each call is one model run of `batchSize` texts, as the worker makes.
    const embedder = await TransformersEmbedder.load({ model: benchModel, dtype, batchSize: 4096 });
    try {
      await embedder.embed(texts.slice(0, 32)); // warm-up: first run allocates
      const rates = new Map<number, number[]>();
      for (let run = 0; run < options.runs; run += 1) {
        for (const batchSize of options.embedding.batchSizes) {
          progress(`embedding ${dtype} batch ${batchSize}, run ${run + 1}/${options.runs}`);
          const t0 = nowMs();
          for (let i = 0; i < texts.length; i += batchSize)
            await embedder.embed(texts.slice(i, i + batchSize));
          const rate = (texts.length / (nowMs() - t0)) * 1000;
          rates.set(batchSize, [...(rates.get(batchSize) ?? []), rate]);
        }
      }
      for (const [batchSize, r] of rates) {
        rows.push({
          dtype,
          batchSize,
          texts: texts.length,
          rate: median(r),
          min: Math.min(...r),
          max: Math.max(...r),
          runs: r.length,
        });
      }
    } finally {
      await embedder.close();
    }
    const callSize = options.embedding.callSize;
    const embedders = new Map<number, TransformersEmbedder>();
    try {
      for (const batchSize of options.embedding.subBatchSizes) {
        embedders.set(batchSize, await TransformersEmbedder.load({ model: benchModel, dtype, batchSize }));
      }
      const rates = new Map<number, number[]>();
      for (let run = 0; run < options.runs; run += 1) {
        for (const [batchSize, e] of embedders) {
          progress(
            `embedding ${dtype} calls of ${callSize}, model batch ${batchSize}, run ${run + 1}/${options.runs}`,
          );
          const t0 = nowMs();
          for (let i = 0; i < texts.length; i += callSize) await e.embed(texts.slice(i, i + callSize));
          const rate = (texts.length / (nowMs() - t0)) * 1000;
          rates.set(batchSize, [...(rates.get(batchSize) ?? []), rate]);
        }
      }
      for (const [batchSize, r] of rates) {
        subBatched.push({
          dtype,
          callSize,
          batchSize,
          texts: texts.length,
          rate: median(r),
          min: Math.min(...r),
          max: Math.max(...r),
          runs: r.length,
        });
      }
    } finally {
      for (const e of embedders.values()) await e.close();
    }
    threaded.push(...(await byThreads(ctx, dtype, texts)));
  }
  return { meanChars, rows, subBatched, threaded };
}

/** The same calls through the embedder as the services open it, by EMBEDDING_THREADS, interleaved. */
async function byThreads(
  ctx: BenchContext,
  dtype: 'q8' | 'fp32',
  texts: string[],
): Promise<NonNullable<EmbeddingResults['threaded']>> {
  const { options, progress } = ctx;
  const callSize = options.embedding.callSize;
  const embedders = new Map<number, Embedder>();
  try {
    for (const threads of options.embedding.threads) {
      const embedder = await openWorkerEmbedder({ dtype, threads });
      embedders.set(threads, embedder);
      await embedder.embed(texts.slice(0, callSize)); // warm-up
    }
    const samples = new Map<number, { rate: number; cpuMs: number }[]>();
    for (let run = 0; run < options.runs; run += 1) {
      for (const [threads, e] of embedders) {
        progress(`embedding ${dtype} EMBEDDING_THREADS=${threads}, run ${run + 1}/${options.runs}`);
        const cpu0 = process.cpuUsage();
        const t0 = nowMs();
        for (let i = 0; i < texts.length; i += callSize) await e.embed(texts.slice(i, i + callSize));
        const rate = (texts.length / (nowMs() - t0)) * 1000;
        const cpu = process.cpuUsage(cpu0);
        const cpuMs = (cpu.user + cpu.system) / 1000 / texts.length;
        samples.set(threads, [...(samples.get(threads) ?? []), { rate, cpuMs }]);
      }
    }
    return [...samples].map(([threads, s]) => {
      const rates = s.map((x) => x.rate);
      return {
        dtype,
        callSize,
        batchSize: WORKER_EMBEDDING.batchSize,
        threads,
        texts: texts.length,
        rate: median(rates),
        min: Math.min(...rates),
        max: Math.max(...rates),
        runs: rates.length,
        cpuMsPerText: median(s.map((x) => x.cpuMs)),
      };
    });
  } finally {
    for (const e of embedders.values()) await e.close();
  }
}
