import type { Metadata as ChromaMetadata } from 'chromadb';
import { ValidationError } from '../../errors';
import {
  EMBEDDING_DIMENSION,
  METADATA_KEY_PATTERN,
  RESERVED_METADATA_KEYS,
  type Memory,
  type MemoryRecord,
  type Metadata,
} from '../../memory/memory.schemas';
import { presenceKey } from './chroma-where';

/**
 * How a memory is laid out in Chroma: id = memory id, document = content, and one flat metadata
 * object holding
 * - the user's metadata keys as they are, except `session_type` (also a scope field), kept as
 *   `meta:session_type`;
 * - the scope fields `user_id`, `session_id`, `session_type`, `project`, `content_type` (null ones
 *   left out), `created_at`, `updated_at` (ISO 8601), `created_at_ms` (epoch ms, for ordering),
 *   `content_hash`, `embedding_model` and, for migrated rows, `migration_id`;
 * - a presence marker `has:<field>: true` for each optional scope field and metadata key that is
 *   set (see `presenceKey`);
 * - `num:<key>`: the decimal text of each metadata number that Chroma's server may not parse
 *   exactly (see `needsExactCopy`). It parses some numbers of 16-17 significant digits to a
 *   neighbouring double, so the number itself can come back one unit in the last place off; the
 *   text is read back instead. Filters still compare the number (an operand is rounded as the stored
 *   value was, so `$eq` on the value written finds it).
 *
 * The reserved names are in `RESERVED_METADATA_KEYS`; user keys cannot contain `:`, so the
 * `has:`, `meta:` and `num:` prefixes never collide with them either.
 */
const OPTIONAL_SCOPE_FIELDS = ['session_id', 'session_type', 'project'] as const;
const ESCAPED_PREFIX = 'meta:';
const EXACT_PREFIX = 'num:';
const INTERNAL_KEYS = new Set<string>([
  'user_id',
  'session_id',
  'session_type',
  'project',
  'content_type',
  'created_at',
  'updated_at',
  'created_at_ms',
  'content_hash',
  'embedding_model',
  'migration_id',
]);

/** The Chroma key of a user metadata key. */
function userKeyToChroma(key: string): string {
  return INTERNAL_KEYS.has(key) ? `${ESCAPED_PREFIX}${key}` : key;
}

/** Rejects what would break the layout above, even if a caller skipped the zod schemas. */
export function assertStorable(record: MemoryRecord): void {
  const at = { id: record.id };
  for (const key of Object.keys(record.metadata)) {
    if (RESERVED_METADATA_KEYS.has(key) || !METADATA_KEY_PATTERN.test(key)) {
      throw new ValidationError(`metadata key "${key}" is reserved or not allowed`, at);
    }
  }
  if (record.embedding.length !== EMBEDDING_DIMENSION) {
    throw new ValidationError(
      `embedding has ${record.embedding.length} dimensions, ${EMBEDDING_DIMENSION} expected`,
      at,
    );
  }
  for (const value of record.embedding) {
    if (!Number.isFinite(value)) throw new ValidationError('embedding values must be finite numbers', at);
  }
  if (Number.isNaN(Date.parse(record.created_at)) || Number.isNaN(Date.parse(record.updated_at))) {
    throw new ValidationError('created_at and updated_at must be ISO 8601 timestamps', at);
  }
}

/** Timestamps are stored as `Date#toISOString()` (millisecond precision, UTC), as PostgreSQL returns them. */
export function isoTimestamp(value: string): string {
  return new Date(value).toISOString();
}

/**
 * Whether a number's decimal text (JSON's, which JavaScript writes) is beyond what every float
 * parser reads exactly: more than 15 digits as written (an integer beyond 2^53 counts its trailing
 * zeros), or a power of ten beyond 10^±22. Within both, the digits and the power are exact doubles,
 * and one multiplication or division rounds correctly (Clinger's fast path).
 */
export function needsExactCopy(value: number): boolean {
  if (Number.isSafeInteger(value)) return false;
  const [mantissa = '', exponent = '0'] = String(value).split('e');
  const [whole = '', fraction = ''] = mantissa.replace('-', '').split('.');
  const digits = (whole + fraction).replace(/^0+/, '');
  const power = Number(exponent) - fraction.length;
  return digits.length > 15 || Math.abs(power) > 22;
}

export function toChromaMetadata(record: MemoryRecord, createdAt: string): ChromaMetadata {
  const metadata: ChromaMetadata = {};
  for (const [key, value] of Object.entries(record.metadata)) {
    const chromaKey = userKeyToChroma(key);
    metadata[chromaKey] = value;
    if (typeof value === 'number' && needsExactCopy(value))
      metadata[EXACT_PREFIX + chromaKey] = String(value);
    if (chromaKey === key) metadata[presenceKey(key)] = true;
  }
  metadata.user_id = record.user_id;
  for (const field of OPTIONAL_SCOPE_FIELDS) {
    const value = record[field];
    if (value !== null && value !== undefined) {
      metadata[field] = value;
      metadata[presenceKey(field)] = true;
    }
  }
  const created = isoTimestamp(createdAt);
  metadata.content_type = record.content_type;
  metadata.created_at = created;
  metadata.created_at_ms = Date.parse(created);
  metadata.updated_at = isoTimestamp(record.updated_at);
  metadata.content_hash = record.content_hash;
  metadata.embedding_model = record.embedding_model;
  if (record.migration_id) metadata.migration_id = record.migration_id;
  return metadata;
}

function text(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return null;
}

/** Epoch ms of a stored memory's creation, for ordering (rows written by other tools may lack `created_at_ms`). */
export function createdAtMs(metadata: ChromaMetadata | null | undefined): number {
  const ms = metadata?.created_at_ms;
  // Beyond ±8.64e15 ms a Date is invalid (toISOString throws): such a row sorts as the epoch.
  if (typeof ms === 'number') return Number.isNaN(new Date(ms).getTime()) ? 0 : ms;
  const parsed = Date.parse(text(metadata?.created_at) ?? '');
  return Number.isNaN(parsed) ? 0 : parsed;
}

/**
 * The number written, from its `num:` text, when that text is of this stored number (at most a few
 * units in the last place apart: Chroma's rounding); otherwise, e.g. a row another tool rewrote
 * without the text, the stored number as it is.
 */
export function exactNumber(stored: number, text: unknown): number {
  if (typeof text !== 'string') return stored;
  const written = Number(text);
  if (!Number.isFinite(written) || text.trim() === '') return stored;
  return Math.abs(written - stored) <= Math.abs(stored) * 4 * Number.EPSILON ? written : stored;
}

export function fromChroma(
  id: string,
  document: string | null | undefined,
  stored: ChromaMetadata | null | undefined,
): Memory {
  const m = stored ?? {};
  const metadata: Metadata = {};
  for (const [key, value] of Object.entries(m)) {
    if (INTERNAL_KEYS.has(key) || key.startsWith('has:') || key.startsWith(EXACT_PREFIX)) continue;
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') continue;
    const userKey = key.startsWith(ESCAPED_PREFIX) ? key.slice(ESCAPED_PREFIX.length) : key;
    metadata[userKey] = typeof value === 'number' ? exactNumber(value, m[EXACT_PREFIX + key]) : value;
  }
  const createdAt = text(m.created_at) ?? new Date(createdAtMs(m)).toISOString();
  return {
    id,
    user_id: text(m.user_id) ?? '',
    session_id: text(m.session_id),
    session_type: text(m.session_type),
    project: text(m.project),
    content: document ?? '',
    content_type: text(m.content_type) ?? 'note',
    metadata,
    content_hash: text(m.content_hash) ?? '',
    embedding_model: text(m.embedding_model) ?? '',
    created_at: createdAt,
    updated_at: text(m.updated_at) ?? createdAt,
  };
}
