import { ValidationError } from '../../errors';
import {
  isScopeField,
  type FilterCondition,
  type FilterNode,
  type MemoryFilter,
  type Scalar,
} from '../../memory/filter';
import { METADATA_KEY_PATTERN, MemoryLimits, RESERVED_METADATA_KEYS } from '../../memory/memory.schemas';

/**
 * Collects bind values, after `values` already bound; `add` returns the `$n::type` placeholder of the
 * value, or `$n` alone without a type (for a value the statement casts more than one way).
 */
export class SqlParams {
  constructor(readonly values: unknown[] = []) {}

  add(value: unknown, type?: string): string {
    this.values.push(value);
    return type ? `$${this.values.length}::${type}` : `$${this.values.length}`;
  }
}

/** Names the filter SQL refers to: the memories alias and the (schema-qualified) projects table. */
export interface FilterSqlContext {
  alias: string;
  projectsTable: string;
}

const MAX_DEPTH = 16;

/** Columns of `memories` that scope fields map to (`project` goes through the projects table). */
const SCOPE_COLUMNS = {
  user_id: 'user_id',
  session_id: 'session_id',
  content_type: 'content_type',
  session_type: 'session_type',
} as const;

function invalid(message: string, details: Record<string, unknown>): never {
  throw new ValidationError(message, details, 'invalid_filter');
}

/** Metadata keys reach SQL only as bind values, but are still held to the whitelist pattern. */
export function assertMetadataKey(key: string): void {
  if (key.length > MemoryLimits.metadataKeyMaxChars || !METADATA_KEY_PATTERN.test(key)) {
    invalid(`"${key}" is not a valid metadata key`, { field: key });
  }
  if (RESERVED_METADATA_KEYS.has(key)) invalid(`"${key}" cannot be filtered on`, { field: key });
}

/**
 * Translates a memory filter to a parameterised SQL condition over `memories` (aliased
 * `ctx.alias`), following the reference semantics of `matchesFilter` in memory/filter.ts:
 * typed values (metadata compared as jsonb, so `"1"` is not `1`), `$gt $gte $lt $lte` on numbers
 * only, and a missing field (absent key, NULL column) matching no condition, `$ne`/`$nin` included.
 * The user id always comes first, so the btree indexes on `(user_id, ...)` apply.
 */
export function filterToSql(filter: MemoryFilter, params: SqlParams, ctx: FilterSqlContext): string {
  if (typeof filter.user_id !== 'string' || filter.user_id.length === 0) {
    invalid('a filter needs a user_id', { field: 'user_id' });
  }
  const userParam = params.add(filter.user_id, 'text');
  const user = `${ctx.alias}.user_id = ${userParam}`;
  if (!filter.where) return user;
  return `${user} AND ${nodeToSql(filter.where, params, ctx, userParam, 0)}`;
}

function nodeToSql(
  node: FilterNode,
  params: SqlParams,
  ctx: FilterSqlContext,
  userParam: string,
  depth: number,
): string {
  if (depth > MAX_DEPTH) invalid(`filters nest at most ${MAX_DEPTH} levels`, {});
  if ('and' in node) {
    if (node.and.length === 0) return 'TRUE';
    return `(${node.and.map((c) => nodeToSql(c, params, ctx, userParam, depth + 1)).join(' AND ')})`;
  }
  if ('or' in node) {
    if (node.or.length === 0) return 'FALSE';
    return `(${node.or.map((c) => nodeToSql(c, params, ctx, userParam, depth + 1)).join(' OR ')})`;
  }
  return isScopeField(node.field)
    ? scopeCondition(node, params, ctx, userParam)
    : metadataCondition(node, params, ctx);
}

function assertOperand(node: FilterCondition): void {
  const list = node.op === '$in' || node.op === '$nin';
  if (list !== Array.isArray(node.value)) {
    invalid(list ? `${node.op} takes an array` : `${node.op} takes a single value`, {
      field: node.field,
      op: node.op,
    });
  }
  const values = Array.isArray(node.value) ? node.value : [node.value];
  for (const v of values) {
    const ok =
      typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
    if (!ok)
      invalid(`${node.op} takes strings, finite numbers or booleans`, { field: node.field, op: node.op });
  }
  if (['$gt', '$gte', '$lt', '$lte'].includes(node.op) && typeof node.value !== 'number') {
    invalid(`${node.op} takes a number`, { field: node.field, op: node.op });
  }
}

const RANGE_SQL = { $gt: '>', $gte: '>=', $lt: '<', $lte: '<=' } as const;

/**
 * Scope fields are text columns (NULL when absent). Only string operands can equal them, as in the
 * reference semantics; a number compares unequal and `$gt..` never matches a string.
 */
function scopeCondition(
  node: FilterCondition,
  params: SqlParams,
  ctx: FilterSqlContext,
  userParam: string,
): string {
  assertOperand(node);
  const strings = (Array.isArray(node.value) ? node.value : [node.value]).filter(
    (v): v is string => typeof v === 'string',
  );
  // `project` holds a name; memories reference projects by id, and projects belong to one user.
  const column =
    node.field === 'project'
      ? `${ctx.alias}.project_id`
      : `${ctx.alias}.${SCOPE_COLUMNS[node.field as keyof typeof SCOPE_COLUMNS]}`;
  const matching = (names: string[]): string =>
    node.field === 'project'
      ? `${column} IN (SELECT id FROM ${ctx.projectsTable} WHERE user_id = ${userParam} AND name = ANY(${params.add(names, 'text[]')}))`
      : `${column} = ANY(${params.add(names, 'text[]')})`;

  switch (node.op) {
    case '$eq':
    case '$in':
      return strings.length === 0 ? 'FALSE' : matching(strings);
    case '$ne':
    case '$nin':
      return strings.length === 0
        ? `${column} IS NOT NULL`
        : `(${column} IS NOT NULL AND NOT ${matching(strings)})`;
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte':
      return 'FALSE';
  }
}

/**
 * Metadata values are compared as jsonb, so types never mix (`"1"` ≠ `1`, `true` ≠ `"true"`) and
 * numbers compare numerically (`1` = `1.0`). The key is a bind value too: `metadata -> $n`.
 */
function metadataCondition(node: FilterCondition, params: SqlParams, ctx: FilterSqlContext): string {
  assertMetadataKey(node.field);
  assertOperand(node);
  const metadata = `${ctx.alias}.metadata`;
  switch (node.op) {
    case '$eq':
      // Containment is what the GIN (jsonb_path_ops) index serves; for flat objects it is equality.
      return `${metadata} @> ${params.add(JSON.stringify({ [node.field]: node.value }), 'jsonb')}`;
    case '$ne': {
      const value = `${metadata} -> ${params.add(node.field, 'text')}`;
      return `coalesce(${value} <> ${params.add(JSON.stringify(node.value), 'jsonb')}, FALSE)`;
    }
    case '$in': {
      const value = `${metadata} -> ${params.add(node.field, 'text')}`;
      return `coalesce(${value} = ANY(${params.add(jsonArray(node.value), 'jsonb[]')}), FALSE)`;
    }
    case '$nin': {
      const value = `${metadata} -> ${params.add(node.field, 'text')}`;
      return `coalesce(${value} <> ALL(${params.add(jsonArray(node.value), 'jsonb[]')}), FALSE)`;
    }
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte': {
      // jsonb orders numbers numerically but also ranks other types against them: check the type first.
      const value = `${metadata} -> ${params.add(node.field, 'text')}`;
      return `(jsonb_typeof(${value}) = 'number' AND ${value} ${RANGE_SQL[node.op]} ${params.add(JSON.stringify(node.value), 'jsonb')})`;
    }
  }
}

function jsonArray(value: Scalar | Scalar[]): string[] {
  return (Array.isArray(value) ? value : [value]).map((v) => JSON.stringify(v));
}
