import { existsSync } from 'node:fs';
import path from 'node:path';
import type { PreTrainedModel, PreTrainedTokenizer } from '@huggingface/transformers' with {
  'resolution-mode': 'import',
};
import { UnavailableError } from '../errors';
import { chunks } from '../runtime/chunks';
import { isLocalModelPath } from '../config/env-fields';
import { EMBEDDING_DIMENSION } from '../memory/memory.schemas';
import type { Embedder, EmbedderInfo } from './embedder';
import { meanPoolNormalized } from './pooling';

// The package is ESM-typed but ships a CommonJS build for Node, which is what this require loads.
type Transformers = typeof import('@huggingface/transformers', { with: { 'resolution-mode': 'import' } });
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { AutoModel, AutoTokenizer, env } = require('@huggingface/transformers') as Transformers;

export interface TransformersEmbedderOptions {
  /** Hub id or local folder. @defaultValue `'Xenova/all-MiniLM-L6-v2'` */
  model: string;
  /** @defaultValue `'q8'` */
  dtype: 'q8' | 'fp32';
  /** Texts per model call. @defaultValue 8 (`EMBEDDING_BATCH_SIZE`) */
  batchSize: number;
  /**
   * Whether ONNX runtime's threads spin while waiting for work (its default). Spinning saves a few
   * microseconds per operator when the model has the cores to itself, and burns CPU that PostgreSQL,
   * Redis and Node need when it shares them (`EMBEDDING_THREAD_SPINNING`). @defaultValue true
   */
  threadSpinning?: boolean;
  /**
   * ONNX runtime's threads inside this one model call (`intraOpNumThreads`). Unset: ONNX runtime's
   * default, one per core. `ThreadedEmbedder` sets 1 and runs one such model per core instead.
   */
  intraOpThreads?: number;
  /** Word pieces per text; MiniLM was trained on 256. @defaultValue 256 */
  maxTokens?: number;
  cacheDir?: string;
}

/**
 * all-MiniLM-L6-v2 on @huggingface/transformers (ONNX runtime): tokenise with truncation, run the
 * model, mean-pool over the attention mask and L2-normalise, as sentence-transformers does
 * (`meanPoolNormalized`).
 */
export class TransformersEmbedder implements Embedder {
  readonly info: EmbedderInfo;

  private constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly model: PreTrainedModel,
    private readonly options: TransformersEmbedderOptions,
  ) {
    // A local folder is recorded by its absolute path, so services started from other folders agree.
    const modelName = isLocalModelPath(options.model) ? path.resolve(options.model) : options.model;
    this.info = { model: modelName, dtype: options.dtype, dimension: EMBEDDING_DIMENSION };
  }

  /** Loads tokenizer and weights once; fails with one line naming the setting to change. */
  static async load(options: TransformersEmbedderOptions): Promise<TransformersEmbedder> {
    let modelId = options.model;
    if (isLocalModelPath(options.model)) {
      const folder = path.resolve(options.model);
      const weights = path.join(
        folder,
        'onnx',
        options.dtype === 'q8' ? 'model_quantized.onnx' : 'model.onnx',
      );
      if (!existsSync(weights)) {
        throw new UnavailableError(
          `EMBEDDING_MODEL folder ${folder} has no ${path.relative(folder, weights)}: point EMBEDDING_MODEL at a folder holding the model`,
          { code: 'embedding_model_unavailable' },
        );
      }
      env.localModelPath = path.dirname(folder) + path.sep;
      env.allowLocalModels = true;
      env.allowRemoteModels = false;
      modelId = path.basename(folder);
    } else {
      env.allowRemoteModels = true;
      if (options.cacheDir) env.cacheDir = options.cacheDir;
    }
    try {
      const tokenizer = await AutoTokenizer.from_pretrained(modelId);
      const spin = options.threadSpinning === false ? '0' : '1';
      const model = await AutoModel.from_pretrained(modelId, {
        dtype: options.dtype,
        session_options: {
          ...(options.intraOpThreads === undefined ? {} : { intraOpNumThreads: options.intraOpThreads }),
          // Flattened by onnxruntime-node into the session config keys `session.intra_op.allow_spinning`…
          extra: { session: { intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
        },
      });
      return new TransformersEmbedder(tokenizer, model, options);
    } catch (cause) {
      const where = isLocalModelPath(options.model)
        ? `folder ${path.resolve(options.model)}`
        : 'the Hugging Face hub';
      throw new UnavailableError(
        `cannot load embedding model "${options.model}" from ${where}; set EMBEDDING_MODEL to a local folder holding the model (see README "Embedding model")`,
        { cause, code: 'embedding_model_unavailable' },
      );
    }
  }

  /**
   * Embeds texts in batches of similar length (less padding), returning vectors in input order.
   */
  async embed(texts: string[]): Promise<Float32Array[]> {
    const out = new Array<Float32Array>(texts.length);
    for (const batch of lengthSortedBatches(texts, this.options.batchSize)) {
      const vectors = await this.embedBatch(batch.map((i) => texts[i]!));
      batch.forEach((index, i) => (out[index] = vectors[i]!));
    }
    return out;
  }

  /** One model call: the texts padded to the longest of them. */
  async embedBatch(texts: string[]): Promise<Float32Array[]> {
    const inputs = this.tokenizer(texts, {
      padding: true,
      truncation: true,
      max_length: this.options.maxTokens ?? 256,
    });
    const { last_hidden_state } = await this.model(inputs);
    return meanPoolNormalized(
      last_hidden_state.data as Float32Array,
      last_hidden_state.dims,
      inputs.attention_mask.data as BigInt64Array,
    );
  }

  async close(): Promise<void> {
    await this.model.dispose();
  }
}

/**
 * The positions of `texts` sorted by length and cut into model batches of `batchSize`: each batch
 * pads its texts to a similar length.
 */
export function lengthSortedBatches(texts: string[], batchSize: number): number[][] {
  const order = texts.map((_, index) => index).sort((a, b) => texts[a]!.length - texts[b]!.length);
  return chunks(order, batchSize);
}
