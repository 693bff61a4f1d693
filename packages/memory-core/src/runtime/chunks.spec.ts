import { chunks } from './chunks';

describe('chunks', () => {
  it('cuts items into consecutive parts of at most the size, the last one shorter', () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunks([1, 2, 3, 4], 2)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    expect(chunks([1, 2], 5)).toEqual([[1, 2]]);
  });

  it('gives no part for no items', () => {
    expect(chunks([], 3)).toEqual([]);
  });

  it('refuses a size that would never advance or not cut at all', () => {
    for (const size of [0, -1, 1.5, Number.NaN]) expect(() => chunks([1], size)).toThrow(RangeError);
  });
});
