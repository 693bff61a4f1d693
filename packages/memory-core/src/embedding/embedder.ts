export interface EmbedderInfo {
  /** Hub id or local folder of the model. */
  model: string;
  dtype: string;
  dimension: number;
}

/** The embedding port: texts in, unit-length vectors out, in the same order. */
export interface Embedder {
  readonly info: EmbedderInfo;
  embed(texts: string[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/** Cosine similarity of two vectors (dot product when both are unit length). */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / (Math.sqrt(na) * Math.sqrt(nb) || 1);
}
