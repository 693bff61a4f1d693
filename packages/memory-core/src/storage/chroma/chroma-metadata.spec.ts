import { fromChroma, needsExactCopy, toChromaMetadata } from './chroma-metadata';
import type { MemoryRecord } from '../../memory/memory.schemas';

const record = (metadata: MemoryRecord['metadata']): MemoryRecord => ({
  id: '00000000-0000-4000-8000-000000000001',
  user_id: 'u1',
  session_id: null,
  session_type: null,
  project: null,
  content: 'c',
  content_type: 'note',
  metadata,
  content_hash: 'h',
  embedding_model: 'm',
  created_at: '2025-01-01T00:00:00.000Z',
  updated_at: '2025-01-01T00:00:00.000Z',
  embedding: new Float32Array(384),
});

/** The next double above `x` (x > 0): one unit in the last place, as Chroma's parser may round. */
const nextUp = (x: number) => {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) + 1n);
  return view.getFloat64(0);
};

describe('Chroma metadata layout: exact numbers', () => {
  it('writes the text of each number a parser may round beside it, and of nothing else', () => {
    const stored = toChromaMetadata(
      record({
        ratio: 0.1234567890123456,
        big: 2 ** 64,
        tiny: 1e-300,
        short: 0.25,
        n: 42,
        neg: -7,
        s: '0.5',
        b: true,
        session_type: 0.30000000000000004,
      }),
      '2025-01-01T00:00:00.000Z',
    );
    expect(Object.entries(stored).filter(([k]) => k.startsWith('num:'))).toEqual([
      ['num:ratio', '0.1234567890123456'],
      ['num:big', '18446744073709552000'],
      ['num:tiny', '1e-300'],
      ['num:meta:session_type', '0.30000000000000004'],
    ]);
  });

  it.each([
    [0.25, false],
    [-1.5e-7, false],
    [123456.789, false],
    [1e22, false],
    [6.715559110264e19, true],
    [1e21, false],
    [1e23, true],
    [123456789012345.6, true],
    [0.1 + 0.2, true],
    [2 ** 53 + 2, true],
    [1.5e-23, true],
    [5e-324, true],
    [-4096393.1009173393, true],
  ])('whether %p needs an exact copy: %p', (value, expected) => {
    expect(needsExactCopy(value)).toBe(expected);
  });

  it('reads the number written when the stored one is a unit in the last place off', () => {
    const written = 0.1234567890123456;
    const memory = fromChroma('id', 'c', { user_id: 'u1', x: nextUp(written), 'num:x': String(written) });
    expect(memory.metadata).toEqual({ x: written });
  });

  it('keeps the stored number when the text is of another number, not a number, or not text', () => {
    const cases: [unknown, number][] = [
      ['0.5', 0.25],
      ['', 0],
      ['abc', 3.5],
      [0.1, 0.25],
      ['Infinity', 1e308],
    ];
    for (const [text, stored] of cases) {
      const memory = fromChroma('id', 'c', { user_id: 'u1', x: stored, 'num:x': text as string });
      expect(memory.metadata).toEqual({ x: stored });
    }
  });

  it('never shows the exact copies as metadata keys, and leaves text values alone', () => {
    const memory = fromChroma('id', 'c', { user_id: 'u1', s: 'text', 'num:s': '1.5', 'num:gone': '2.5' });
    expect(memory.metadata).toEqual({ s: 'text' });
  });
});

describe('Chroma metadata layout: rows written by other tools', () => {
  it('reads a row whose created_at_ms is beyond what a date can hold, as of the epoch', () => {
    const memory = fromChroma('id', 'c', { user_id: 'u1', created_at_ms: 1e17 });
    expect(memory.created_at).toBe('1970-01-01T00:00:00.000Z');
  });
});
