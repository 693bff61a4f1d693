import { checkVector, encodeVector, encodeVectorArray, toVectorSql } from './vector-sql';

describe('vector parameters', () => {
  it('encodes vectors as a binary vector[]: array header, then per element its length, dimension and big-endian floats', () => {
    const buffer = encodeVectorArray([Float32Array.of(1.5, -2), [0.25, 3]], 16_385);
    expect(buffer.length).toBe(20 + 2 * (4 + 4 + 2 * 4));
    expect([0, 4, 8, 12, 16].map((at) => buffer.readInt32BE(at))).toEqual([1, 0, 16_385, 2, 1]);
    const element = (i: number) => 20 + i * 16;
    expect(buffer.readInt32BE(element(0))).toBe(12);
    expect(buffer.readInt16BE(element(0) + 4)).toBe(2);
    expect(buffer.readInt16BE(element(0) + 6)).toBe(0);
    expect([buffer.readFloatBE(element(0) + 8), buffer.readFloatBE(element(0) + 12)]).toEqual([1.5, -2]);
    expect([buffer.readFloatBE(element(1) + 8), buffer.readFloatBE(element(1) + 12)]).toEqual([0.25, 3]);
  });

  it('encodes one vector as pgvector binary: dimension, unused, big-endian floats, as an array element has them', () => {
    const buffer = encodeVector(Float32Array.of(1.5, -2, 0.1));
    expect(buffer.length).toBe(4 + 3 * 4);
    expect([buffer.readInt16BE(0), buffer.readInt16BE(2)]).toEqual([3, 0]);
    expect([0, 1, 2].map((i) => buffer.readFloatBE(4 + 4 * i))).toEqual([1.5, -2, Math.fround(0.1)]);
    // The same bytes as the element of a one-vector array, after its length.
    expect(encodeVectorArray([Float32Array.of(1.5, -2, 0.1)], 1).subarray(24)).toEqual(buffer);
  });

  it('refuses vectors of different dimensions in one array', () => {
    expect(() => encodeVectorArray([[1, 2], [1]], 1)).toThrow(/one dimension/);
  });

  it('checks dimension and finiteness before anything is sent', () => {
    expect(() => checkVector([1, 2], 3)).toThrow(/3 dimensions, got 2/);
    expect(() => checkVector([1, Number.NaN, 3], 3)).toThrow(/finite/);
    expect(() => checkVector([1, Number.POSITIVE_INFINITY, 3], 3)).toThrow(/finite/);
    expect(() => checkVector([1, 2, 3], 3)).not.toThrow();
    expect(toVectorSql([1, 0.5, -2], 3)).toBe('[1,0.5,-2]');
  });
});
