import { ValidationError } from '../errors';
import {
  isStorableText,
  METADATA_KEY_PATTERN,
  MemoryLimits,
  RESERVED_METADATA_KEYS,
  SCOPE_FIELDS,
  type ScopeField,
  unstorableText,
} from './memory.schemas';

/**
 * One filter language for both stores, with Chroma's `where` operators. A filter is parsed once into
 * this tree; each store translates the tree (SQL for pgvector, a `where` object for Chroma).
 *
 * Semantics, identical on both backends:
 * - a field is a scope field (`user_id`, `session_id`, `project`, `content_type`, `session_type`) or a
 *   metadata key;
 * - values are typed: the string `"1"` does not equal the number `1` in metadata (scope fields are
 *   always strings, and numbers given for them are turned into strings);
 * - `$gt $gte $lt $lte` compare numbers only;
 * - a memory that lacks the field (no such metadata key, or a null scope field) matches no condition
 *   on it, whatever the operator (`$ne` and `$nin` included).
 * One exception: Chroma refuses numbers from 2^63 up to 2^64 in a filter (see `chroma-where.ts`).
 */
export type Scalar = string | number | boolean;
export const COMPARISON_OPERATORS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin'] as const;
export type ComparisonOperator = (typeof COMPARISON_OPERATORS)[number];

export interface FilterCondition {
  field: string;
  op: ComparisonOperator;
  value: Scalar | Scalar[];
}
export type FilterNode = FilterCondition | { and: FilterNode[] } | { or: FilterNode[] };

/** What a store searches, lists, counts or deletes within: always one user, optionally narrowed. */
export interface MemoryFilter {
  user_id: string;
  where?: FilterNode;
}

export function isScopeField(field: string): field is ScopeField {
  return (SCOPE_FIELDS as readonly string[]).includes(field);
}

const MAX_DEPTH = 8;
const MAX_CONDITIONS = 64;

function invalid(message: string, path: string): never {
  throw new ValidationError(message, { path }, 'invalid_filter');
}

function isScalar(value: unknown): value is Scalar {
  return (
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    (typeof value === 'number' && Number.isFinite(value))
  );
}

function parseField(field: string, path: string): string {
  if (isScopeField(field)) return field;
  if (field.length > MemoryLimits.metadataKeyMaxChars || !METADATA_KEY_PATTERN.test(field)) {
    invalid(`"${field}" is not a valid field name`, path);
  }
  if (RESERVED_METADATA_KEYS.has(field)) invalid(`"${field}" cannot be filtered on`, path);
  return field;
}

function parseValue(field: string, op: ComparisonOperator, value: unknown, path: string): Scalar | Scalar[] {
  const scope = isScopeField(field);
  const one = (v: unknown): Scalar => {
    if (!isScalar(v)) invalid(`${op} takes a string, number or boolean`, path);
    if (typeof v === 'string' && !isStorableText(v)) invalid(unstorableText('filter values'), path);
    if (scope) {
      if (typeof v === 'boolean') invalid(`${field} is a string field`, path);
      return String(v);
    }
    return v;
  };
  if (op === '$in' || op === '$nin') {
    if (!Array.isArray(value) || value.length === 0) invalid(`${op} takes a non-empty array`, path);
    if (value.length > 1000) invalid(`${op} takes at most 1000 values`, path);
    const values = value.map(one);
    if (new Set(values.map((v) => typeof v)).size > 1) invalid(`${op} values must all have one type`, path);
    return values;
  }
  if (op === '$gt' || op === '$gte' || op === '$lt' || op === '$lte') {
    if (scope) invalid(`${op} compares numbers; ${field} is a string field`, path);
    if (typeof value !== 'number' || !Number.isFinite(value)) invalid(`${op} takes a number`, path);
    return value;
  }
  return one(value);
}

/**
 * Parses a Chroma-style `where` object into a filter tree, with clear errors (code `invalid_filter`)
 * for unknown operators, bad values and over-deep nesting.
 */
export function parseWhere(input: unknown, path = 'where'): FilterNode {
  let conditions = 0;
  const walk = (node: unknown, at: string, depth: number): FilterNode => {
    if (depth > MAX_DEPTH) invalid(`filters nest at most ${MAX_DEPTH} levels`, at);
    if (node === null || typeof node !== 'object' || Array.isArray(node))
      invalid('a filter is an object', at);
    const entries = Object.entries(node);
    if (entries.length === 0) invalid('a filter object must not be empty', at);
    const parts: FilterNode[] = [];
    for (const [key, value] of entries) {
      const here = `${at}.${key}`;
      if (key === '$and' || key === '$or') {
        if (!Array.isArray(value) || value.length === 0)
          invalid(`${key} takes a non-empty array of filters`, here);
        const children = value.map((child, i) => walk(child, `${here}[${i}]`, depth + 1));
        parts.push(key === '$and' ? { and: children } : { or: children });
        continue;
      }
      if (key.startsWith('$')) invalid(`unknown operator "${key}"`, here);
      const field = parseField(key, here);
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        const ops = Object.entries(value);
        if (ops.length === 0) invalid('an operator object must not be empty', here);
        for (const [op, operand] of ops) {
          if (!(COMPARISON_OPERATORS as readonly string[]).includes(op))
            invalid(`unknown operator "${op}"`, `${here}.${op}`);
          const typedOp = op as ComparisonOperator;
          parts.push({ field, op: typedOp, value: parseValue(field, typedOp, operand, `${here}.${op}`) });
          conditions += 1;
        }
      } else {
        parts.push({ field, op: '$eq', value: parseValue(field, '$eq', value, here) });
        conditions += 1;
      }
      if (conditions > MAX_CONDITIONS) invalid(`a filter has at most ${MAX_CONDITIONS} conditions`, at);
    }
    return parts.length === 1 ? parts[0]! : { and: parts };
  };
  return walk(input, path, 0);
}

/** ANDs the given parts, dropping empty ones; `undefined` when nothing is left. */
export function andFilters(...parts: (FilterNode | undefined)[]): FilterNode | undefined {
  const present = parts.filter((p): p is FilterNode => p !== undefined);
  if (present.length === 0) return undefined;
  return present.length === 1 ? present[0] : { and: present };
}

/** Scope fields given as plain values (`{session_id: 1}`) become `$eq` conditions. */
export function scopeConditions(
  scope: Partial<Record<Exclude<ScopeField, 'user_id'>, string | undefined>>,
): FilterNode | undefined {
  const parts: FilterNode[] = Object.entries(scope)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([field, value]) => ({ field, op: '$eq' as const, value }));
  return andFilters(...parts);
}

/** Evaluates a filter against a memory in memory: the reference semantics that both stores follow. */
export function matchesFilter(
  memory: { metadata: Record<string, Scalar> } & Partial<Record<ScopeField, string | null>>,
  node: FilterNode | undefined,
): boolean {
  if (!node) return true;
  if ('and' in node) return node.and.every((child) => matchesFilter(memory, child));
  if ('or' in node) return node.or.some((child) => matchesFilter(memory, child));
  const actual = isScopeField(node.field) ? (memory[node.field] ?? undefined) : memory.metadata[node.field];
  if (actual === undefined || actual === null) return false;
  const same = (v: Scalar) => typeof v === typeof actual && v === actual;
  switch (node.op) {
    case '$eq':
      return same(node.value as Scalar);
    case '$ne':
      return !same(node.value as Scalar);
    case '$in':
      return (node.value as Scalar[]).some(same);
    case '$nin':
      return !(node.value as Scalar[]).some(same);
    case '$gt':
      return typeof actual === 'number' && actual > (node.value as number);
    case '$gte':
      return typeof actual === 'number' && actual >= (node.value as number);
    case '$lt':
      return typeof actual === 'number' && actual < (node.value as number);
    case '$lte':
      return typeof actual === 'number' && actual <= (node.value as number);
  }
}
