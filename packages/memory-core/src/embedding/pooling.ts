/**
 * Mean of each text's token vectors over its attention mask, scaled to unit length: the
 * sentence-transformers pooling of all-MiniLM-L6-v2, one Float32Array per text.
 *
 * The same arithmetic as transformers.js `mean_pooling(...).normalize(2, -1)`, in one pass that reads
 * the model's output row by row and each mask entry once. The library's loop walks the output column
 * by column and converts a BigInt mask entry for every dimension of every token; in the worker that
 * was 10% of the model's own time (BENCHMARKS.md, "Tuning: before and after").
 *
 * `hidden`: the model's last hidden state, `[texts, tokens, dimension]` row-major; `mask`: `[texts,
 * tokens]`, 1 for a real token and 0 for padding.
 */
export function meanPoolNormalized(
  hidden: Float32Array,
  dims: readonly number[],
  mask: ArrayLike<bigint | number>,
): Float32Array[] {
  const [texts, tokens, dimension] = dims as [number, number, number];
  if (dims.length !== 3 || hidden.length !== texts * tokens * dimension || mask.length !== texts * tokens) {
    throw new RangeError(`hidden state [${dims.join(', ')}] and mask of ${mask.length} do not match`);
  }
  const sum = new Float64Array(dimension);
  const vectors: Float32Array[] = [];
  for (let t = 0; t < texts; t += 1) {
    sum.fill(0);
    let count = 0;
    for (let j = 0; j < tokens; j += 1) {
      const weight = Number(mask[t * tokens + j]);
      if (weight === 0) continue;
      count += weight;
      const row = (t * tokens + j) * dimension;
      for (let k = 0; k < dimension; k += 1) sum[k]! += hidden[row + k]! * weight;
    }
    if (count === 0) throw new RangeError(`text ${t} has no tokens in its attention mask`);
    const vector = new Float32Array(dimension);
    let squares = 0;
    for (let k = 0; k < dimension; k += 1) {
      vector[k] = sum[k]! / count;
      squares += vector[k]! * vector[k]!;
    }
    const length = Math.sqrt(squares);
    if (length > 0) for (let k = 0; k < dimension; k += 1) vector[k] = vector[k]! / length;
    vectors.push(vector);
  }
  return vectors;
}
