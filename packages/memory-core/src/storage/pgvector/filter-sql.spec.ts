import { ValidationError } from '../../errors';
import { parseWhere, type FilterNode, type MemoryFilter } from '../../memory/filter';
import { filterToSql, SqlParams } from './filter-sql';

const ctx = { alias: 'm', projectsTable: '"s".projects' };

function translate(filter: MemoryFilter): { text: string; values: unknown[] } {
  const params = new SqlParams();
  const text = filterToSql(filter, params, ctx);
  return { text, values: params.values };
}

/** Every `$n` in the text, as numbers. */
function placeholders(text: string): number[] {
  return [...text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
}

describe('filterToSql', () => {
  it('always scopes to the user first, as a bind value', () => {
    expect(translate({ user_id: "o'brien" })).toEqual({ text: 'm.user_id = $1::text', values: ["o'brien"] });
  });

  it('keeps every value and metadata key out of the SQL text and binds each placeholder', () => {
    const evil = "x'); DROP TABLE memories; --";
    const where = parseWhere({
      $or: [
        { session_id: evil },
        { project: { $nin: [evil, 'p2'] } },
        { content_type: { $in: [evil] } },
        { tag: { $ne: evil } },
        { tag: { $in: [evil, 'b'] } },
        { score: { $gte: 1.5, $lt: 10 } },
        { 'my.key-1': true },
      ],
    });
    const { text, values } = translate({ user_id: 'u', where });
    expect(text).not.toContain(evil);
    expect(text).not.toMatch(/DROP|1\.5|my\.key-1|'tag'|"tag"/);
    const used = new Set(placeholders(text));
    expect([...used].sort((a, b) => a - b)).toEqual(values.map((_, i) => i + 1));
    expect(values).toContain('tag');
    expect(values).toContain('{"my.key-1":true}');
    expect(values).toContainEqual([evil]);
  });

  it('passes metadata keys as parameters of the -> operator', () => {
    const { text, values } = translate({ user_id: 'u', where: { field: 'score', op: '$gt', value: 3 } });
    expect(text).toBe(
      `m.user_id = $1::text AND (jsonb_typeof(m.metadata -> $2::text) = 'number' AND m.metadata -> $2::text > $3::jsonb)`,
    );
    expect(values).toEqual(['u', 'score', '3']);
  });

  it('compares metadata as typed jsonb: number 1 and string "1" become different JSON', () => {
    const asNumber = translate({ user_id: 'u', where: parseWhere({ n: 1 }) });
    const asString = translate({ user_id: 'u', where: parseWhere({ n: '1' }) });
    expect(asNumber.text).toBe('m.user_id = $1::text AND m.metadata @> $2::jsonb');
    expect(asNumber.values[1]).toBe('{"n":1}');
    expect(asString.values[1]).toBe('{"n":"1"}');
    expect(
      translate({ user_id: 'u', where: { field: 'n', op: '$in', value: [1, '1', true] } }).values[2],
    ).toEqual(['1', '"1"', 'true']);
  });

  it('makes $ne and $nin false when the key or the column is missing', () => {
    expect(translate({ user_id: 'u', where: parseWhere({ tag: { $ne: 'x' } }) }).text).toMatch(
      /^m\.user_id = \$1::text AND coalesce\(.* <> .*, FALSE\)$/,
    );
    expect(translate({ user_id: 'u', where: parseWhere({ tag: { $nin: ['x'] } }) }).text).toMatch(
      /coalesce\(.* <> ALL\(.*\), FALSE\)$/,
    );
    expect(translate({ user_id: 'u', where: parseWhere({ session_id: { $ne: 's' } }) }).text).toContain(
      '(m.session_id IS NOT NULL AND NOT m.session_id = ANY($2::text[]))',
    );
  });

  it('looks projects up by name within the same user', () => {
    const { text, values } = translate({ user_id: 'u', where: parseWhere({ project: 'alpha' }) });
    expect(text).toBe(
      'm.user_id = $1::text AND m.project_id IN (SELECT id FROM "s".projects WHERE user_id = $1::text AND name = ANY($2::text[]))',
    );
    expect(values).toEqual(['u', ['alpha']]);
  });

  it('follows the reference semantics for odd trees: numbers never equal a scope field, empty $and/$or', () => {
    const numberOnScope: FilterNode = { field: 'session_id', op: '$eq', value: 1 };
    expect(translate({ user_id: 'u', where: numberOnScope }).text).toBe('m.user_id = $1::text AND FALSE');
    expect(translate({ user_id: 'u', where: { field: 'session_id', op: '$ne', value: 1 } }).text).toBe(
      'm.user_id = $1::text AND m.session_id IS NOT NULL',
    );
    expect(translate({ user_id: 'u', where: { and: [] } }).text).toBe('m.user_id = $1::text AND TRUE');
    expect(translate({ user_id: 'u', where: { or: [] } }).text).toBe('m.user_id = $1::text AND FALSE');
  });

  it.each([
    ['a quote', "a'b"],
    ['a parenthesis and comment', 'x) OR 1=1 --'],
    ['a leading digit', '1abc'],
    ['a space', 'a b'],
    ['a reserved key', 'content_hash'],
    ['an over-long key', `k${'x'.repeat(64)}`],
  ])('rejects a metadata key with %s (invalid_filter)', (_label, key) => {
    const where: FilterNode = { field: key, op: '$eq', value: 'v' };
    expect(() => translate({ user_id: 'u', where })).toThrow(ValidationError);
    expect(() => translate({ user_id: 'u', where })).toThrow(
      expect.objectContaining({ code: 'invalid_filter' }),
    );
  });

  it('rejects range operators on non-numbers and lists where one value is expected', () => {
    expect(() => translate({ user_id: 'u', where: { field: 'n', op: '$gt', value: '5' } })).toThrow(
      ValidationError,
    );
    expect(() => translate({ user_id: 'u', where: { field: 'n', op: '$eq', value: [1] } })).toThrow(
      ValidationError,
    );
    expect(() => translate({ user_id: 'u', where: { field: 'n', op: '$in', value: 1 } })).toThrow(
      ValidationError,
    );
    expect(() => translate({ user_id: 'u', where: { field: 'n', op: '$eq', value: Number.NaN } })).toThrow(
      ValidationError,
    );
  });

  it('rejects a filter without a user', () => {
    expect(() => translate({ user_id: '' })).toThrow(ValidationError);
  });
});
