import { lengthSortedBatches } from './transformers.embedder';

describe('lengthSortedBatches', () => {
  const texts = ['ccc', 'a', 'eeeee', 'bb', 'dddd', '', 'ffffff'];

  it('puts every text in exactly one batch of at most batchSize', () => {
    const batches = lengthSortedBatches(texts, 3);
    expect(batches.map((b) => b.length)).toEqual([3, 3, 1]);
    expect(batches.flat().sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('orders the texts by length, so that each batch pads to a similar length', () => {
    const lengths = lengthSortedBatches(texts, 2)
      .flat()
      .map((i) => texts[i]!.length);
    expect(lengths).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('returns no batch for no texts', () => {
    expect(lengthSortedBatches([], 8)).toEqual([]);
  });
});
