import { seededRandom } from '../../../../bench/lib/stats';
import { meanPoolNormalized } from './pooling';

type Transformers = typeof import('@huggingface/transformers', { with: { 'resolution-mode': 'import' } });
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Tensor, mean_pooling } = require('@huggingface/transformers') as Transformers;

/** A batch as the tokenizer pads it: each text's real tokens first, then padding up to the longest. */
function batch(lengths: number[], tokens: number, dimension: number, seed: number) {
  const next = seededRandom(seed);
  const hidden = Float32Array.from({ length: lengths.length * tokens * dimension }, () => (next() - 0.5) * 4);
  const mask = BigInt64Array.from(
    lengths.flatMap((length) => Array.from({ length: tokens }, (_, j) => BigInt(j < length ? 1 : 0))),
  );
  return { hidden, mask, dims: [lengths.length, tokens, dimension] };
}

/** transformers.js's own pooling and normalisation, which the embedder used before. */
function library({ hidden, mask, dims }: ReturnType<typeof batch>): Float32Array[] {
  const pooled = mean_pooling(
    new Tensor('float32', hidden, dims),
    new Tensor('int64', mask, [dims[0]!, dims[1]!]),
  ).normalize(2, -1);
  const data = pooled.data as Float32Array;
  return Array.from({ length: dims[0]! }, (_, i) => data.slice(i * dims[2]!, (i + 1) * dims[2]!));
}

describe('meanPoolNormalized', () => {
  it.each([
    ['one text, no padding', [7], 7],
    ['texts of mixed lengths, padded', [3, 12, 1, 12, 5], 12],
    ['a batch of 8 at 256 word pieces', [256, 2, 100, 255, 17, 64, 3, 200], 256],
  ])('gives transformers.js mean_pooling + normalize(2, -1) to float precision: %s', (_, lengths, tokens) => {
    const input = batch(lengths, tokens, 384, lengths.length + tokens);
    const ours = meanPoolNormalized(input.hidden, input.dims, input.mask);
    const theirs = library(input);
    expect(ours).toHaveLength(lengths.length);
    for (const [i, vector] of ours.entries()) {
      expect(vector).toHaveLength(384);
      const worst = vector.reduce((m, x, k) => Math.max(m, Math.abs(x - theirs[i]![k]!)), 0);
      expect(worst).toBeLessThan(1e-6);
    }
  });

  it('ignores what the model returns for padding', () => {
    const input = batch([2, 5], 5, 4, 1);
    const before = meanPoolNormalized(input.hidden, input.dims, input.mask);
    input.hidden.fill(1000, 2 * 4, 5 * 4); // the first text's padded positions
    const after = meanPoolNormalized(input.hidden, input.dims, input.mask);
    expect(after[0]).toEqual(before[0]);
    expect(after[1]).toEqual(before[1]);
  });

  it('rejects a hidden state and mask of different shapes, and a text with no tokens', () => {
    const input = batch([2, 3], 3, 4, 2);
    expect(() => meanPoolNormalized(input.hidden, [2, 4, 4], input.mask)).toThrow(RangeError);
    expect(() => meanPoolNormalized(input.hidden, input.dims, input.mask.slice(1))).toThrow(RangeError);
    expect(() =>
      meanPoolNormalized(input.hidden, input.dims, BigInt64Array.from([1n, 1n, 0n, 0n, 0n, 0n])),
    ).toThrow(/text 1 has no tokens/);
  });
});
