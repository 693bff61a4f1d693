import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { fromChroma } from '../storage/chroma/chroma-metadata';
import { contentHash } from '../memory/memory-record';
import {
  Content,
  ContentType,
  Metadata,
  MetadataKey,
  ScopeValue,
  type Memory,
  type Metadata as MemoryMetadata,
} from '../memory/memory.schemas';
import type { ChromaMapping, SkipReason } from './chroma-mapping.schema';

/** A Chroma record as the migration reads it. */
export interface SourceRow {
  id: string;
  document: string | null | undefined;
  metadata: Record<string, unknown> | null | undefined;
  /** Absent when embeddings were not read (or the collection has none for this record). */
  embedding?: number[] | null;
}

/** A mapped record: a memory and, when usable, its vector's origin. */
export interface MappedRecord {
  memory: Memory;
  /** The Chroma id, when the memory id differs from it (foreign ids that are not UUIDs). */
  sourceId: string;
  /** The model that made the Chroma vector, when known. */
  embeddingModel: string | null;
}

export type MapOutcome =
  { ok: true; record: MappedRecord } | { ok: false; reason: SkipReason; message: string };

/** Lower case only: a UUID kept as the memory id must be the one PostgreSQL stores and returns. */
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Namespace of memory ids derived from foreign Chroma ids (uuid v5). */
const FOREIGN_ID_NAMESPACE = 'b3e0c6a2-5f1d-4e8a-9c47-2d6f8a1e0b53';

/** RFC 4122 version 5 (sha1) UUID of `name` in `namespace`. */
export function uuidV5(name: string, namespace: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const bytes = createHash('sha1').update(ns).update(name, 'utf8').digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The memory id of a Chroma id: kept when it is a lower-case UUID, else derived from the collection and
 * the id, so that every run of a migration gives the same id. Chroma ids are case-sensitive and
 * PostgreSQL's uuid is not: lower-casing `…AB` would give it the id of a different record `…ab`.
 */
export function memoryIdFor(collection: string, chromaId: string): string {
  return CANONICAL_UUID.test(chromaId) ? chromaId : uuidV5(`${collection}/${chromaId}`, FOREIGN_ID_NAMESPACE);
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = issue.path.map(String).join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}

function skip(reason: SkipReason, message: string): MapOutcome {
  return { ok: false, reason, message };
}

function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return undefined;
}

/**
 * The times a memory can hold: ISO 8601 with four-digit years, which the API's schemas and PostgreSQL
 * accept. Beyond them `toISOString()` writes six-digit years PostgreSQL rejects, and beyond ±8.64e15 ms
 * it throws.
 */
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');

/** A time that cannot be stored: the record is skipped rather than given another time. */
const OUT_OF_RANGE = Symbol('out of range');
/** A metadata timestamp as read: ISO 8601, `undefined` when absent or unreadable, or out of range. */
type Timestamp = string | undefined | typeof OUT_OF_RANGE;

function isoFromMs(ms: number): Timestamp {
  return ms >= EARLIEST_MS && ms <= LATEST_MS ? new Date(ms).toISOString() : OUT_OF_RANGE;
}

/** ISO 8601, or epoch seconds / milliseconds (numbers below 10^11 are taken as seconds). */
function timestamp(value: unknown): Timestamp {
  if (typeof value === 'number' && Number.isFinite(value)) {
    return isoFromMs(Math.abs(value) < 1e11 ? value * 1000 : value);
  }
  if (typeof value === 'string' && value.trim()) {
    if (/^\d+(\.\d+)?$/.test(value.trim())) {
      const n = Number(value);
      return Number.isFinite(n) ? timestamp(n) : OUT_OF_RANGE;
    }
    const ms = Date.parse(value);
    if (!Number.isNaN(ms)) return isoFromMs(ms);
  }
  return undefined;
}

/**
 * The first of `candidates` (metadata key and the time read from it) that holds a time, or `fallback`;
 * a skip naming the key when that time cannot be stored.
 */
function firstTime(
  candidates: { key: string; time: Timestamp }[],
  fallback: string,
): { ok: true; value: string } | { ok: false; outcome: MapOutcome } {
  for (const { key, time } of candidates) {
    if (time === undefined) continue;
    if (time === OUT_OF_RANGE) {
      return {
        ok: false,
        outcome: skip('invalid_timestamp', `metadata key "${key}" holds a time outside the years 1 to 9999`),
      };
    }
    return { ok: true, value: time };
  }
  return { ok: true, value: fallback };
}

/**
 * Turns Chroma records into memories, either from the service's own Chroma layout (no mapping: the
 * layout `ChromaMemoryStore` writes) or from a foreign collection through a `ChromaMapping`. Every
 * value goes through the same zod schemas as an API request; a record that fails is skipped with a
 * reason, never altered.
 */
export class RecordMapper {
  constructor(
    private readonly collection: string,
    private readonly mapping: ChromaMapping | undefined,
    /** Creation time of records that carry none (the migration's start, so that reruns agree). */
    private readonly fallbackCreatedAt: string,
    /** Owner of records when the mapping names no user key and no default. */
    private readonly defaultUserId: string,
  ) {}

  /** The metadata key that holds the user id in Chroma, for filtering by user there. */
  get userKey(): string | undefined {
    return this.mapping ? this.mapping.user_id : 'user_id';
  }

  map(row: SourceRow): MapOutcome {
    const content = Content.safeParse(row.document ?? '');
    if (!content.success) {
      return row.document == null || row.document.trim() === ''
        ? skip('missing_document', 'the record has no document text')
        : skip('invalid_content', firstIssue(content.error));
    }
    return this.mapping ? this.mapForeign(row, content.data, this.mapping) : this.mapOwn(row, content.data);
  }

  private mapOwn(row: SourceRow, content: string): MapOutcome {
    // Times first: `fromChroma` turns `created_at_ms` into a Date, which throws when it is out of range.
    const ms = row.metadata?.created_at_ms;
    const createdAt = firstTime(
      [
        { key: 'created_at', time: timestamp(row.metadata?.created_at) },
        { key: 'created_at_ms', time: typeof ms === 'number' ? isoFromMs(ms) : undefined },
      ],
      this.fallbackCreatedAt,
    );
    if (!createdAt.ok) return createdAt.outcome;
    const updatedAt = firstTime(
      [{ key: 'updated_at', time: timestamp(row.metadata?.updated_at) }],
      createdAt.value,
    );
    if (!updatedAt.ok) return updatedAt.outcome;
    const stored = fromChroma(row.id, content, (row.metadata ?? {}) as Parameters<typeof fromChroma>[2]);
    if (!stored.user_id) return skip('missing_user_id', 'the record has no user_id');
    const scope = this.scope({
      user_id: stored.user_id,
      session_id: stored.session_id,
      session_type: stored.session_type,
      project: stored.project,
    });
    if (!scope.ok) return scope.outcome;
    const contentType = ContentType.safeParse(stored.content_type);
    if (!contentType.success) return skip('invalid_content_type', firstIssue(contentType.error));
    const metadata = Metadata.safeParse(stored.metadata);
    if (!metadata.success) return skip('invalid_metadata', firstIssue(metadata.error));
    return {
      ok: true,
      record: {
        sourceId: row.id,
        embeddingModel: stored.embedding_model || null,
        memory: {
          id: memoryIdFor(this.collection, row.id),
          ...scope.value,
          content,
          content_type: contentType.data,
          metadata: metadata.data,
          content_hash: contentHash(content),
          embedding_model: stored.embedding_model,
          created_at: createdAt.value,
          updated_at: updatedAt.value,
        },
      },
    };
  }

  private mapForeign(row: SourceRow, content: string, mapping: ChromaMapping): MapOutcome {
    const source = row.metadata ?? {};
    const field = (name: 'user_id' | 'session_id' | 'session_type' | 'project' | 'content_type') => {
      const key = mapping[name];
      const value = key === undefined ? undefined : scalarText(source[key]);
      return value ?? mapping.defaults?.[name] ?? null;
    };
    const userId = field('user_id') ?? (mapping.user_id === undefined ? this.defaultUserId : null);
    if (userId === null)
      return skip('missing_user_id', `the record has no "${mapping.user_id}" key and no default user_id`);
    const scope = this.scope({
      user_id: userId,
      session_id: field('session_id'),
      session_type: field('session_type'),
      project: field('project'),
    });
    if (!scope.ok) return scope.outcome;
    const contentType = ContentType.safeParse(field('content_type') ?? 'note');
    if (!contentType.success) return skip('invalid_content_type', firstIssue(contentType.error));

    const used = new Set(
      [
        mapping.user_id,
        mapping.session_id,
        mapping.session_type,
        mapping.project,
        mapping.content_type,
        mapping.created_at,
      ].filter((k): k is string => k !== undefined),
    );
    const keep = mapping.metadata ?? 'keep';
    const extra: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(source)) {
      if (used.has(key) || value === null || value === undefined) continue;
      if (keep === 'drop' || (Array.isArray(keep) && !keep.includes(key))) continue;
      extra[key] = value;
    }
    const badKey = Object.keys(extra).find((k) => !MetadataKey.safeParse(k).success);
    if (badKey !== undefined) {
      return skip(
        'invalid_metadata',
        `metadata key "${badKey}" is reserved or not allowed; map it, or list the keys to keep in mapping.metadata`,
      );
    }
    const metadata = Metadata.safeParse(extra);
    if (!metadata.success) return skip('invalid_metadata', firstIssue(metadata.error));
    const createdAt = firstTime(
      mapping.created_at === undefined
        ? []
        : [{ key: mapping.created_at, time: timestamp(source[mapping.created_at]) }],
      this.fallbackCreatedAt,
    );
    if (!createdAt.ok) return createdAt.outcome;
    return {
      ok: true,
      record: {
        sourceId: row.id,
        embeddingModel: mapping.embedding_model ?? null,
        memory: {
          id: memoryIdFor(this.collection, row.id),
          ...scope.value,
          content,
          content_type: contentType.data,
          metadata: metadata.data as MemoryMetadata,
          content_hash: contentHash(content),
          embedding_model: mapping.embedding_model ?? '',
          created_at: createdAt.value,
          updated_at: createdAt.value,
        },
      },
    };
  }

  private scope(values: {
    user_id: string;
    session_id: string | null;
    session_type: string | null;
    project: string | null;
  }):
    | { ok: true; value: Pick<Memory, 'user_id' | 'session_id' | 'session_type' | 'project'> }
    | { ok: false; outcome: MapOutcome } {
    const out: Record<string, string | null> = {};
    for (const [name, raw] of Object.entries(values)) {
      if (raw === null) {
        out[name] = null;
        continue;
      }
      const parsed = ScopeValue.safeParse(raw);
      if (!parsed.success)
        return { ok: false, outcome: skip('invalid_scope', `${name}: ${firstIssue(parsed.error)}`) };
      out[name] = parsed.data;
    }
    return { ok: true, value: out as Pick<Memory, 'user_id' | 'session_id' | 'session_type' | 'project'> };
  }
}
