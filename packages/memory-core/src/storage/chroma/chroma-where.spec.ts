import { parseWhere } from '../../memory/filter';
import { toChromaWhere } from './chroma-where';

const where = (input: unknown) => toChromaWhere({ user_id: 'u1', where: parseWhere(input) });

describe('toChromaWhere', () => {
  it('scopes to the user alone without wrapping it in $and', () => {
    expect(toChromaWhere({ user_id: 'u1' })).toEqual({ user_id: { $eq: 'u1' } });
  });

  it('ANDs the user with one condition, flattening nested $and', () => {
    expect(where({ tag: 'a' })).toEqual({ $and: [{ user_id: { $eq: 'u1' } }, { tag: { $eq: 'a' } }] });
    expect(where({ tag: 'a', n: { $gt: 2 } })).toEqual({
      $and: [{ user_id: { $eq: 'u1' } }, { tag: { $eq: 'a' } }, { n: { $gt: 2 } }],
    });
  });

  it('guards $ne and $nin with the presence marker, except on fields every memory has', () => {
    expect(where({ tag: { $ne: 'a' } })).toEqual({
      $and: [{ user_id: { $eq: 'u1' } }, { 'has:tag': true }, { tag: { $ne: 'a' } }],
    });
    expect(where({ content_type: { $nin: ['note', 'insight'] } })).toEqual({
      $and: [{ user_id: { $eq: 'u1' } }, { content_type: { $nin: ['note', 'insight'] } }],
    });
  });

  it('keeps integers exact and rewrites fractional operands around the integer cast', () => {
    expect(where({ n: 1.5 })).toEqual({
      $and: [{ user_id: { $eq: 'u1' } }, { n: { $eq: 1.5 } }, { n: { $nin: [1, 2] } }],
    });
    expect(where({ n: { $lt: -0.5 } })).toEqual({
      $and: [
        { user_id: { $eq: 'u1' } },
        { $or: [{ $and: [{ n: { $lt: -0.5 } }, { n: { $nin: [-1, 0] } }] }, { n: { $lte: -1 } }] },
      ],
    });
  });

  it('never emits a one-element $and or $or', () => {
    const json = JSON.stringify(where({ $or: [{ $and: [{ a: 1 }] }, { b: { $in: [2.5] } }] }));
    expect(json).not.toMatch(/"\$(and|or)":\[\{[^[\]]*\}\]/);
  });
});
