import type { Where } from 'chromadb';
import { ValidationError } from '../../errors';
import type { FilterCondition, FilterNode, MemoryFilter, Scalar } from '../../memory/filter';

/**
 * Chroma key of the marker that says "this memory has field `field`". Chroma 1.0 lets `$ne` and
 * `$nin` match records that lack the key, and has no `$exists` (nor string ranges, which could stand
 * in for one), so the store writes `has:<field>: true` beside every optional field and the
 * negative operators are ANDed with it. User metadata keys never contain `:`
 * (`METADATA_KEY_PATTERN`), so markers cannot collide with them.
 */
export function presenceKey(field: string): string {
  return `has:${field}`;
}

/** Fields every stored memory has: no presence guard needed. */
const ALWAYS_PRESENT = new Set(['user_id', 'content_type']);

function all(parts: Where[]): Where {
  // Chroma rejects `$and`/`$or` with fewer than two elements.
  return parts.length === 1
    ? parts[0]!
    : { $and: parts.flatMap((p) => ('$and' in p ? (p.$and as Where[]) : [p])) };
}

function any(parts: Where[]): Where {
  return parts.length === 1
    ? parts[0]!
    : { $or: parts.flatMap((p) => ('$or' in p ? (p.$or as Where[]) : [p])) };
}

/**
 * Chroma reads a JSON integer from 2^63 up to 2^64 as an unsigned 64-bit integer, which no `where`
 * accepts ("Invalid where"), and JavaScript writes every number there as such an integer: no
 * rewrite can stand in for it (lower ones are signed integers, higher ones floats, both fine).
 */
function comparable(value: Scalar): Scalar {
  if (typeof value === 'number' && value >= 2 ** 63 && value < 2 ** 64) {
    throw new ValidationError(
      `Chroma cannot compare with ${value}: numbers from 2^63 up to 2^64 are refused in its filters`,
      { value },
      'unsupported_filter',
    );
  }
  return value;
}

function cmp(key: string, op: string, value: Scalar | Scalar[]): Where {
  return { [key]: { [op]: Array.isArray(value) ? value.map(comparable) : comparable(value) } } as Where;
}

function isFraction(value: Scalar): value is number {
  return typeof value === 'number' && !Number.isInteger(value);
}

/** The integers either side of each fraction: the ones Chroma may wrongly match (see `numberCondition`). */
function neighbours(fractions: number[]): number[] {
  // `|| 0` turns -0 (Math.ceil(-0.5)) into 0.
  return [...new Set(fractions.flatMap((f) => [Math.floor(f), Math.ceil(f) || 0]))];
}

/**
 * Chroma 1.0 stores integers and floats apart and compares an integer value with a fractional
 * operand after casting the operand to an integer (1.5 becomes 1, -1.5 becomes -1), so
 * `{n: {$eq: 1.5}}` matches `n = 1` and `{n: {$lt: 1.5}}` misses it. Comparisons with an integer
 * operand are exact for both kinds. A fractional operand `f` is therefore rewritten so that
 * - the fractional comparison only ever decides for values other than `floor(f)` and `ceil(f)`
 *   (for those integers it is the cast that goes wrong; for every other integer the cast does
 *   not change the outcome), and
 * - integers are decided by an integer comparison (`x > f` is `x >= ceil(f)` for an integer).
 */
function numberCondition(key: string, op: '$gt' | '$gte' | '$lt' | '$lte' | '$eq', f: number): Where {
  const safe = all([cmp(key, op, f), cmp(key, '$nin', neighbours([f]))]);
  if (op === '$eq') return safe;
  const integers =
    op === '$gt' || op === '$gte' ? cmp(key, '$gte', Math.ceil(f) || 0) : cmp(key, '$lte', Math.floor(f));
  return any([safe, integers]);
}

/** `$in` with the documented semantics: exact members, typed, fractions handled as in `numberCondition`. */
function inCondition(key: string, values: Scalar[]): Where {
  const fractions = values.filter(isFraction);
  const others = values.filter((v) => !isFraction(v));
  const parts: Where[] = [];
  if (others.length > 0)
    parts.push(others.length === 1 ? cmp(key, '$eq', others[0]!) : cmp(key, '$in', others));
  if (fractions.length > 0)
    parts.push(all([cmp(key, '$in', fractions), cmp(key, '$nin', neighbours(fractions))]));
  return any(parts);
}

/** The complement of `inCondition` among memories that have the field. */
function notInCondition(key: string, values: Scalar[]): Where {
  const fractions = values.filter(isFraction);
  const others = values.filter((v) => !isFraction(v));
  const parts: Where[] = [];
  if (others.length > 0)
    parts.push(others.length === 1 ? cmp(key, '$ne', others[0]!) : cmp(key, '$nin', others));
  if (fractions.length > 0)
    parts.push(any([cmp(key, '$nin', fractions), cmp(key, '$in', neighbours(fractions))]));
  return all(parts);
}

function present(key: string, condition: Where): Where {
  return ALWAYS_PRESENT.has(key) ? condition : all([{ [presenceKey(key)]: true }, condition]);
}

function condition(node: FilterCondition): Where {
  const key = node.field;
  const value = node.value;
  switch (node.op) {
    case '$eq':
      return isFraction(value as Scalar)
        ? numberCondition(key, '$eq', value as number)
        : cmp(key, '$eq', value);
    case '$ne':
      return present(key, notInCondition(key, [value as Scalar]));
    case '$in':
      return inCondition(key, value as Scalar[]);
    case '$nin':
      return present(key, notInCondition(key, value as Scalar[]));
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte':
      return isFraction(value as Scalar)
        ? numberCondition(key, node.op, value as number)
        : cmp(key, node.op, value);
  }
}

function translate(node: FilterNode): Where {
  if ('and' in node || 'or' in node) {
    const children = 'and' in node ? node.and : node.or;
    if (children.length === 0)
      throw new ValidationError('a filter group must not be empty', undefined, 'invalid_filter');
    const parts = children.map(translate);
    return 'and' in node ? all(parts) : any(parts);
  }
  return condition(node);
}

/**
 * Translates a filter into a Chroma `where` with the semantics documented in `memory/filter.ts`
 * (the same results as PostgreSQL), always ANDed with the user.
 */
export function toChromaWhere(filter: MemoryFilter): Where {
  const user = cmp('user_id', '$eq', filter.user_id);
  return filter.where ? all([user, translate(filter.where)]) : user;
}
