import { ValidationError } from '../errors';
import { andFilters, matchesFilter, parseWhere } from './filter';
import { searchRequestFilter, SearchRequest } from './api.schemas';

const memory = (
  metadata: Record<string, string | number | boolean>,
  scope: Record<string, string | null> = {},
) => ({
  metadata,
  user_id: '1',
  session_id: null,
  project: null,
  content_type: 'note',
  session_type: null,
  ...scope,
});

describe('parseWhere', () => {
  it('turns plain values into $eq and several keys into $and', () => {
    expect(parseWhere({ mood: 'happy', score: 3 })).toEqual({
      and: [
        { field: 'mood', op: '$eq', value: 'happy' },
        { field: 'score', op: '$eq', value: 3 },
      ],
    });
  });

  it('turns numbers given for scope fields into strings (session_id: 1 is session "1")', () => {
    expect(parseWhere({ session_id: 1 })).toEqual({ field: 'session_id', op: '$eq', value: '1' });
    expect(parseWhere({ session_id: { $in: [1, 2] } })).toEqual({
      field: 'session_id',
      op: '$in',
      value: ['1', '2'],
    });
  });

  it.each([
    [{ mood: { $regex: 'x' } }, /unknown operator "\$regex"/],
    [{ $not: { mood: 'x' } }, /unknown operator "\$not"/],
    [{ score: { $gt: '3' } }, /\$gt takes a number/],
    [{ project: { $lt: 3 } }, /compares numbers; project is a string field/],
    [{ mood: { $in: [] } }, /non-empty array/],
    [{ mood: { $in: ['a', 1] } }, /one type/],
    [{ $and: [] }, /non-empty array of filters/],
    [{ "a'b": 1 }, /not a valid field name/],
    [{ content_hash: 'x' }, /cannot be filtered on/],
    [{ mood: null }, /string, number or boolean/],
    [{ mood: { a: { b: 1 } } }, /unknown operator "a"/],
    [{}, /must not be empty/],
    [{ mood: 'lone \ud800' }, /unpaired UTF-16 surrogate/],
    [{ mood: { $in: ['ok', '\udc00'] } }, /unpaired UTF-16 surrogate/],
    [JSON.parse('{"$or":[{"__proto__":"v"},{"k":1}]}'), /"__proto__" is not a valid field name/],
  ])('rejects %j', (where, message) => {
    let error: unknown;
    try {
      parseWhere(where);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).code).toBe('invalid_filter');
    expect((error as Error).message).toMatch(message);
  });

  it('bounds nesting depth', () => {
    let where: object = { a: 1 };
    for (let i = 0; i < 10; i += 1) where = { $and: [where] };
    expect(() => parseWhere(where)).toThrow(/nest at most/);
  });
});

describe('matchesFilter (the reference semantics)', () => {
  it('compares values with their type: "1" is not 1', () => {
    expect(matchesFilter(memory({ n: 1 }), parseWhere({ n: '1' }))).toBe(false);
    expect(matchesFilter(memory({ n: 1 }), parseWhere({ n: 1 }))).toBe(true);
    expect(matchesFilter(memory({ n: 1 }), parseWhere({ n: { $ne: '1' } }))).toBe(true);
  });

  it('matches no condition on a missing field, $ne and $nin included', () => {
    const m = memory({ other: 'x' });
    expect(matchesFilter(m, parseWhere({ mood: { $ne: 'happy' } }))).toBe(false);
    expect(matchesFilter(m, parseWhere({ mood: { $nin: ['happy'] } }))).toBe(false);
    expect(matchesFilter(m, parseWhere({ project: { $ne: 'p' } }))).toBe(false);
  });

  it('compares ranges on numbers only', () => {
    expect(matchesFilter(memory({ n: 5 }), parseWhere({ n: { $gte: 5, $lt: 6 } }))).toBe(true);
    expect(matchesFilter(memory({ n: 'five' }), parseWhere({ n: { $gt: 1 } }))).toBe(false);
  });

  it('combines with $and and $or', () => {
    const filter = parseWhere({ $or: [{ a: 1 }, { $and: [{ b: true }, { c: { $in: ['x', 'y'] } }] }] });
    expect(matchesFilter(memory({ a: 2, b: true, c: 'y' }), filter)).toBe(true);
    expect(matchesFilter(memory({ a: 2, b: true, c: 'z' }), filter)).toBe(false);
  });
});

describe('searchRequestFilter', () => {
  it('scopes to the user and ANDs scope fields, metadata_filter and where', () => {
    const request = SearchRequest.parse({
      query: 'q',
      session_id: 1,
      metadata_filter: { mood: 'happy' },
      where: { score: { $gt: 2 } },
    });
    expect(searchRequestFilter('7', request)).toEqual({
      user_id: '7',
      where: andFilters(
        { field: 'session_id', op: '$eq', value: '1' },
        { field: 'mood', op: '$eq', value: 'happy' },
        { field: 'score', op: '$gt', value: 2 },
      ),
    });
  });

  it('has no where when the request has no filter', () => {
    expect(searchRequestFilter('1', SearchRequest.parse({ query: 'q' }))).toEqual({
      user_id: '1',
      where: undefined,
    });
  });
});
