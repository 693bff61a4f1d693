import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TransformersEmbedder } from 'memory-core';
import {
  DEFAULT_LAYOUT,
  recordId,
  sessionOf,
  userOf,
  type DatasetLayout,
  type SyntheticRecord,
} from './dataset';
import { CorpusOffsets, type BenchContext } from './context';
import { textsFrom } from './corpus';
import { benchModel, repoRoot } from './paths';
import { nowMs, seededRandom } from './stats';

/** Bump when the texts a record gets change, so that cached vectors are not reused for other texts. */
const GENERATOR_VERSION = 1;
const CHUNK = 10_000;
const DIMENSION = 384;
const EPOCH = Date.parse('2025-01-01T00:00:00.000Z');

export const EMBEDDED_MODEL_NAME = 'bench-embedded (minilm-l6, corpus variations)';

const MAX_MISSES_IN_A_ROW = 1_000_000;

/**
 * `n` real texts: the pool itself first, then variations made by splicing the first half (in words)
 * of one pool text to the second half of another, as a person's notes reuse each other's phrases.
 * Deterministic (seeded) and free of repeats, so that every record is a distinct memory.
 */
export function variationTexts(pool: string[], n: number): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const random = seededRandom(0x9e3779b9);
  const words = pool.map((t) => t.split(' '));
  const firstHalf = (w: string[]) => w.slice(0, Math.ceil(w.length / 2)).join(' ');
  const secondHalf = (w: string[]) => w.slice(Math.floor(w.length / 2)).join(' ');
  // At most every first half joined to every second half: past that the draws below never end.
  const capacity =
    new Set(pool).size + new Set(words.map(firstHalf)).size * new Set(words.map(secondHalf)).size;
  if (n > capacity) {
    throw new Error(
      `${pool.length} corpus texts make at most ${capacity} distinct texts, ${n} asked: start from more texts`,
    );
  }
  for (const text of pool) {
    if (out.length >= n) break;
    if (!seen.has(text)) {
      seen.add(text);
      out.push(text);
    }
  }
  let misses = 0;
  while (out.length < n) {
    const a = words[Math.floor(random() * words.length)]!;
    const b = words[Math.floor(random() * words.length)]!;
    const text = `${firstHalf(a)} ${secondHalf(b)}`;
    if (seen.has(text)) {
      // Two pairs can still join to one text: a bound on misses in a row keeps a near-full pool finite.
      misses += 1;
      if (misses > MAX_MISSES_IN_A_ROW) {
        throw new Error(
          `${pool.length} corpus texts made only ${out.length} distinct texts, ${n} asked: start from more texts`,
        );
      }
      continue;
    }
    misses = 0;
    seen.add(text);
    out.push(text);
  }
  return out;
}

/**
 * The search data set made of real embeddings: every record's vector is the model's embedding of
 * its own content (a corpus text or a variation of two), not a mixture with noise. Embedding a
 * million texts takes ~20 minutes on 2 cores, so vectors are cached on disk in chunks of 10,000
 * under `.data/bench/embeddings/<key>/`, the key naming the model, dtype and texts; a cut-off run
 * resumes at the first missing chunk.
 */
export class EmbeddedDataset {
  private constructor(
    private readonly texts: string[],
    private readonly vectors: Float32Array[],
    readonly layout: DatasetLayout,
    readonly embedSeconds: number,
    readonly cachedChunks: number,
  ) {}

  get size(): number {
    return this.texts.length;
  }

  get meanChars(): number {
    return this.texts.reduce((a, t) => a + t.length, 0) / (this.texts.length || 1);
  }

  static async prepare(options: {
    pool: string[];
    size: number;
    model: string;
    progress: (message: string) => void;
    layout?: DatasetLayout;
  }): Promise<EmbeddedDataset> {
    const texts = variationTexts(options.pool, options.size);
    const key = createHash('sha256')
      .update(JSON.stringify({ v: GENERATOR_VERSION, model: options.model, dtype: 'q8', dim: DIMENSION }))
      .update(options.pool.join('\n'))
      .digest('hex')
      .slice(0, 16);
    const dir = path.join(repoRoot, '.data/bench/embeddings', key);
    mkdirSync(dir, { recursive: true });
    const vectors: Float32Array[] = [];
    let embedder: TransformersEmbedder | undefined;
    let embedMs = 0;
    let cached = 0;
    try {
      for (let start = 0; start < texts.length; start += CHUNK) {
        const chunkTexts = texts.slice(start, start + CHUNK);
        const file = path.join(dir, `${start / CHUNK}.f32`);
        let buffer: Float32Array | undefined;
        if (existsSync(file)) {
          const bytes = readFileSync(file);
          buffer = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
          // A shorter chunk was cached by a smaller run: embed it whole.
          if (buffer.length < chunkTexts.length * DIMENSION) buffer = undefined;
          else cached += 1;
        }
        if (!buffer) {
          embedder ??= await TransformersEmbedder.load({ model: options.model, dtype: 'q8', batchSize: 8 });
          const t0 = nowMs();
          const fresh = new Float32Array(chunkTexts.length * DIMENSION);
          for (let i = 0; i < chunkTexts.length; i += 1_000) {
            const embedded = await embedder.embed(chunkTexts.slice(i, i + 1_000));
            embedded.forEach((v, k) => fresh.set(v, (i + k) * DIMENSION));
          }
          buffer = fresh;
          embedMs += nowMs() - t0;
          const tmp = `${file}.tmp`;
          writeFileSync(tmp, Buffer.from(fresh.buffer));
          renameSync(tmp, file);
          options.progress(
            `search data set: embedded ${Math.min(start + CHUNK, texts.length)} of ${texts.length} texts`,
          );
        }
        for (let k = 0; k < chunkTexts.length; k += 1)
          vectors.push(buffer.subarray(k * DIMENSION, (k + 1) * DIMENSION));
      }
    } finally {
      await embedder?.close();
    }
    return new EmbeddedDataset(texts, vectors, options.layout ?? DEFAULT_LAYOUT, embedMs / 1000, cached);
  }

  record(i: number): SyntheticRecord {
    const content = this.texts[i]!;
    return {
      id: recordId(i),
      user: userOf(i, this.layout),
      session: sessionOf(i, this.layout),
      content,
      hash: createHash('sha256').update(content, 'utf8').digest('hex'),
      vector: this.vectors[i]!,
      createdAt: new Date(EPOCH + i * 1000).toISOString(),
    };
  }

  records(from: number, to: number): SyntheticRecord[] {
    const out: SyntheticRecord[] = [];
    for (let i = from; i < Math.min(to, this.size); i += 1) out.push(this.record(i));
    return out;
  }
}

/**
 * The search section's data set at `size`: variations of the corpus texts it starts from, embedded
 * (or read from the cache). The sections that reuse it (HNSW settings, the preloaded ingestion, the
 * migration) load the same vectors the search section measures.
 */
export function searchDataset(ctx: BenchContext, size: number): Promise<EmbeddedDataset> {
  const { options, corpus, progress } = ctx;
  return EmbeddedDataset.prepare({
    pool: textsFrom(corpus, options.search.baseTexts, CorpusOffsets.searchBase),
    size,
    model: benchModel,
    progress,
    layout: DEFAULT_LAYOUT,
  });
}

/** The search queries: corpus texts that no data set holds, embedded (q8). */
export async function searchQueries(ctx: BenchContext): Promise<{ text: string; vector: Float32Array }[]> {
  const texts = textsFrom(ctx.corpus, ctx.options.search.queries, CorpusOffsets.queries);
  const embedder = await TransformersEmbedder.load({ model: benchModel, dtype: 'q8', batchSize: 8 });
  try {
    return (await embedder.embed(texts)).map((vector, i) => ({ text: texts[i]!, vector }));
  } finally {
    await embedder.close();
  }
}
