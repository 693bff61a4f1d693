import { createHash } from 'node:crypto';
import { AppError, ConflictError, UnavailableError, ValidationError } from '../errors';
import { cosineSimilarity, type Embedder } from '../embedding/embedder';
import {
  MigrateChromaPayload,
  type MigrationIssue,
  type MigrationProgress,
  type MigrationResult,
  type MigrationStats,
  type MigrationVerification,
  type RollbackResult,
  type ScopeCounts,
  type VerificationDifference,
} from '../jobs/job-catalogue';
import type { Logger } from '../logging';
import { EMBEDDING_DIMENSION, type Memory, type MemoryRecord } from '../memory/memory.schemas';
import type { StoreStatus, UpsertResult } from '../storage/memory-store';
import { validate } from '../http/validate';
import { isConnectionError } from '../storage/pgvector/pg-errors';
import type { ChromaMapping, SkipReason } from './chroma-mapping.schema';
import type { MigrationSource } from './chroma-collection.source';
import type { MigrationCheckpoint, MigrationCheckpoints } from './migration-checkpoints';
import { migrationIssue } from './migration-jobs';
import { RecordMapper, type MappedRecord, type SourceRow } from './record-mapper';

/**
 * Where the migration writes: `PgvectorMemoryStore` has all of this. Kept as a port so the engine
 * can be tested with fakes and never needs SQL of its own.
 */
export interface MigrationTarget {
  initialize(): Promise<void>;
  status(): Promise<StoreStatus>;
  /** One transaction per call. */
  upsert(records: MemoryRecord[]): Promise<UpsertResult[]>;
  /** The rows with these ids (any user), with `migration_id`, and their vectors when asked. */
  findByIds(ids: string[], options?: { embeddings?: boolean }): Promise<MemoryRecord[]>;
  /**
   * The rows (any id) holding one of these content keys, by the rule `upsert` dedups with: the same
   * content hash once per user + session + project. Reads only: a dry run predicts duplicates with it.
   */
  findByContent(keys: ContentKey[]): Promise<(ContentKey & Pick<Memory, 'id'>)[]>;
  deleteByMigration(migrationId: string): Promise<number>;
  /** Drops the vector index for a bulk load into an empty table; whether there was one. */
  dropVectorIndex(): Promise<boolean>;
  /** Builds the vector index if it is missing; the build's ms (0 when it was there). */
  buildVectorIndex(): Promise<number>;
}

export interface ChromaMigrationDeps {
  source: MigrationSource;
  target: MigrationTarget;
  checkpoints: MigrationCheckpoints;
  /**
   * Embeds texts whose vectors cannot be copied, and checks re-embedded vectors in verification.
   * Without one, vectors are copied whenever they have 384 dimensions, whatever model made them.
   */
  embedder?: Embedder;
  logger: Logger;
  defaults: {
    /** Collection read when a request names none (the services' `CHROMA_COLLECTION`). */
    collection: string;
    /** Owner of a foreign collection's records when neither the request nor the mapping names one. */
    userId: string;
  };
  /** Records compared field by field and vector by vector after a migration. @defaultValue 200 */
  sampleSize?: number;
  /** Largest number of skipped or failed records listed in a result. @defaultValue 100 */
  maxListed?: number;
}

export interface RunHooks {
  onProgress?: (progress: MigrationProgress) => Promise<void> | void;
  /** When aborted, the run stops after the batch in hand, its checkpoint saved (MigrationPausedError). */
  signal?: AbortSignal | undefined;
}

/** What PostgreSQL dedups memories by. */
export type ContentKey = Pick<Memory, 'user_id' | 'session_id' | 'project' | 'content_hash'>;

/** Why a vector is embedded again rather than copied. */
type EmbedReason = keyof MigrationStats['re_embedded_by_reason'];

/** Everything one run needs, resolved from the request once. */
interface RunContext {
  id: string;
  dryRun: boolean;
  collection: string;
  batchSize: number;
  reEmbed: boolean;
  /** Equality filter Chroma applies (our own layout, by user). */
  where: Record<string, string> | undefined;
  /** User filter applied here (foreign collections whose mapping names a user key). */
  userFilter: string | undefined;
  mapper: RecordMapper;
  collectionModel: string | null;
  /** Whether PostgreSQL has the schema (a dry run does not create it). */
  targetReady: boolean;
  checkpoint: MigrationCheckpoint;
  /** Dedup keys seen in a dry run, which cannot ask PostgreSQL to dedup for it. */
  seenKeys: Set<string>;
  /**
   * Memory ids of the records this attempt has read: a second record with the same id (two Chroma ids
   * that map to one memory id) is skipped rather than overwriting or being counted as the first.
   */
  claimedIds: Set<string>;
}

/** The error a migration stops with when a rollback asked it to. */
/** The run stopped between batches because its process is shutting down; it resumes from its checkpoint. */
export class MigrationPausedError extends ConflictError {
  constructor(migrationId: string) {
    super(
      `migration ${migrationId} paused at a batch boundary`,
      { migration_id: migrationId },
      'migration_paused',
    );
  }
}

export class MigrationCancelledError extends ConflictError {
  constructor(migrationId: string) {
    super(
      `migration ${migrationId} was cancelled (rolled back)`,
      { migration_id: migrationId },
      'migration_cancelled',
    );
  }
}

const DIFFERENCES_LISTED = 100;
/** Pages read ahead of the one being written, so that a read is in flight while a batch is written. */
const PAGES_AHEAD = 2;
const VECTOR_TOLERANCE = 1e-6;
const REEMBED_MIN_COSINE = 0.999;

export function emptyScopeCounts(): ScopeCounts {
  return { total: 0, by_session: {}, by_project: {}, by_content_type: {} };
}

function addToScope(
  counts: Record<string, ScopeCounts>,
  memory: Pick<Memory, 'user_id' | 'session_id' | 'project' | 'content_type'>,
) {
  const scope = (counts[memory.user_id] ??= emptyScopeCounts());
  scope.total += 1;
  if (memory.session_id !== null)
    scope.by_session[memory.session_id] = (scope.by_session[memory.session_id] ?? 0) + 1;
  if (memory.project !== null) scope.by_project[memory.project] = (scope.by_project[memory.project] ?? 0) + 1;
  scope.by_content_type[memory.content_type] = (scope.by_content_type[memory.content_type] ?? 0) + 1;
}

function mergeScopes(into: Record<string, ScopeCounts>, from: Record<string, ScopeCounts>) {
  for (const [user, counts] of Object.entries(from)) {
    const target = (into[user] ??= emptyScopeCounts());
    target.total += counts.total;
    for (const field of ['by_session', 'by_project', 'by_content_type'] as const) {
      for (const [key, n] of Object.entries(counts[field]))
        target[field][key] = (target[field][key] ?? 0) + n;
    }
  }
}

function emptyStats(): MigrationStats {
  return {
    total: 0,
    read: 0,
    written: 0,
    would_write: 0,
    skipped: 0,
    skipped_by_reason: {},
    failed: 0,
    re_embedded: 0,
    re_embedded_by_reason: {},
    copied_embeddings: 0,
    index_build_ms: 0,
    duration_ms: 0,
    records_per_second: 0,
  };
}

/** JSON with sorted keys, so that metadata compares by content, not key order. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

function dedupKey(m: ContentKey): string {
  return [m.user_id, m.session_id ?? '', m.project ?? '', m.content_hash].join('\u0000');
}

/**
 * Moves a Chroma collection into PostgreSQL+pgvector: reads it in pages (ids, documents, metadatas,
 * embeddings), maps each record to a memory (our own layout, or a foreign one through a
 * `ChromaMapping`), copies or re-embeds its vector, and writes each batch in one transaction, every
 * row tagged with the migration id.
 *
 * - Dry run: reads, maps and checks everything, asks PostgreSQL which ids and contents it already holds,
 *   and reports the counts and skipped records the run would; writes nothing (not even a checkpoint or
 *   the schema).
 * - Resumable: a checkpoint after every batch; a rerun of the same migration id continues from it.
 * - Idempotent: ids already in PostgreSQL are skipped (`already_in_postgres`), so a second migration
 *   adds nothing; rows this migration wrote before a crash are recognised by their migration id.
 * - Rollback removes exactly the rows carrying the migration id.
 * - Verification: counts per user and scope in Chroma vs PostgreSQL, and a sample compared field by
 *   field and vector by vector.
 */
export class ChromaMigration {
  private readonly log: Logger;
  private readonly sampleSize: number;
  private readonly maxListed: number;

  constructor(private readonly deps: ChromaMigrationDeps) {
    this.log = deps.logger.child({ module: 'chroma-migration' });
    this.sampleSize = deps.sampleSize ?? 200;
    this.maxListed = deps.maxListed ?? 100;
  }

  /** Runs (or resumes) a migration. Validation and connection errors come before anything is written. */
  async run(payload: unknown, hooks: RunHooks = {}): Promise<MigrationResult> {
    const ctx = await this.prepare(payload);
    if ('finished' in ctx) return ctx.finished;
    const { result } = ctx.checkpoint;
    const log = this.log.child({ migrationId: ctx.id, collection: ctx.collection, dryRun: ctx.dryRun });
    const attemptStart = Date.now();
    const baseDuration = result.stats.duration_ms;
    const resumedAt = ctx.checkpoint.offset;
    const elapsed = () => baseDuration + (Date.now() - attemptStart);

    const progress = async (phase: MigrationProgress['phase']) => {
      const seconds = (Date.now() - attemptStart) / 1000;
      const done = ctx.checkpoint.offset;
      const rate = seconds > 0 ? (done - resumedAt) / seconds : 0;
      const total = Math.max(result.stats.total, done);
      await hooks.onProgress?.({
        migration_id: ctx.id,
        phase,
        done,
        total,
        written: ctx.dryRun ? result.stats.would_write : result.stats.written,
        skipped: result.stats.skipped,
        failed: result.stats.failed,
        rate: Math.round(rate * 10) / 10,
        eta_seconds: rate > 0 ? Math.ceil((total - done) / rate) : null,
      });
    };

    if (ctx.checkpoint.offset === 0) {
      await progress('counting');
      result.stats.total = await this.deps.source.count(ctx.collection, ctx.where);
    }
    // Into an empty table, rows load without the HNSW index and the graph is built once at the end:
    // several times faster than growing it row by row. A resumed run keeps the first attempt's choice.
    if (!ctx.dryRun && result.stats.index_deferred === undefined) {
      const status = await this.deps.target.status();
      result.stats.index_deferred = status.memory_count === 0 && result.stats.total > 0;
      await this.deps.checkpoints.save(ctx.id, ctx.checkpoint);
    }
    if (result.stats.index_deferred) await this.deps.target.dropVectorIndex();
    log.info(
      { total: result.stats.total, offset: ctx.checkpoint.offset, batchSize: ctx.batchSize },
      'migration started',
    );
    await progress('migrating');

    try {
      // The next pages are read while the current one is written: Chroma and PostgreSQL work side by side.
      const ahead: Promise<SourceRow[]>[] = [];
      let readOffset = ctx.checkpoint.offset;
      const readAhead = () => {
        for (; ahead.length < PAGES_AHEAD; readOffset += ctx.batchSize)
          ahead.push(this.readPage(ctx, readOffset));
      };
      readAhead();
      for (;;) {
        if (await this.deps.checkpoints.isCancelRequested(ctx.id)) throw new MigrationCancelledError(ctx.id);
        if (hooks.signal?.aborted) throw new MigrationPausedError(ctx.id);
        const rows = await ahead.shift()!;
        if (rows.length === 0) break;
        if (rows.length < ctx.batchSize) {
          // A short page is the end as it was read; pages asked for past it are read again from here.
          ahead.length = 0;
          readOffset = ctx.checkpoint.offset + rows.length;
        }
        readAhead();
        await this.processBatch(ctx, rows);
        ctx.checkpoint.offset += rows.length;
        result.stats.duration_ms = elapsed();
        if (!ctx.dryRun) await this.deps.checkpoints.save(ctx.id, ctx.checkpoint);
        log.debug({ offset: ctx.checkpoint.offset, written: result.stats.written }, 'batch migrated');
        await progress('migrating');
      }
    } catch (error) {
      // A run that will not be retried leaves the index as it found it; a paused or retried run
      // resumes the bulk load, and builds the index when it finishes.
      const resumes = error instanceof MigrationPausedError || isTransientMigrationError(error);
      if (result.stats.index_deferred && !resumes) {
        await this.buildIndex(ctx, log).catch((indexError: unknown) =>
          log.error({ err: indexError }, 'rebuilding the HNSW index after a failed migration failed'),
        );
      }
      throw error;
    }

    if (result.stats.index_deferred) {
      await progress('indexing');
      await this.buildIndex(ctx, log);
    }
    if (!ctx.dryRun) {
      await progress('verifying');
      result.verification = await this.verify(ctx);
    }
    result.state = 'completed';
    result.finished_at = new Date().toISOString();
    result.stats.duration_ms = elapsed();
    result.stats.records_per_second =
      result.stats.duration_ms > 0
        ? Math.round((result.stats.read / result.stats.duration_ms) * 1000 * 10) / 10
        : 0;
    if (!ctx.dryRun) await this.deps.checkpoints.save(ctx.id, ctx.checkpoint);
    await progress('done');
    const { stats } = result;
    log.info(
      {
        read: stats.read,
        written: stats.written,
        wouldWrite: stats.would_write,
        skipped: stats.skipped_by_reason,
        failed: stats.failed,
        reEmbedded: stats.re_embedded,
        durationMs: stats.duration_ms,
        recordsPerSecond: stats.records_per_second,
        verified: result.verification?.verified ?? null,
      },
      'migration finished',
    );
    return result;
  }

  /** A page of the selection; a prefetched page that is never awaited must not be an unhandled rejection. */
  private readPage(ctx: RunContext, offset: number): Promise<SourceRow[]> {
    const page = this.deps.source.page(ctx.collection, offset, ctx.batchSize, {
      where: ctx.where,
      embeddings: !ctx.reEmbed,
    });
    page.catch(() => undefined);
    return page;
  }

  private async buildIndex(ctx: RunContext, log: Logger): Promise<void> {
    const ms = await this.deps.target.buildVectorIndex();
    const { stats } = ctx.checkpoint.result;
    stats.index_build_ms = Math.round((stats.index_build_ms ?? 0) + ms);
    if (ms > 0) log.info({ ms: Math.round(ms) }, 'HNSW index built after the bulk load');
  }

  /**
   * Removes every row the migration wrote, and stops it if it is still running (at its next batch).
   * Rows that were in PostgreSQL before, or were stored otherwise, are not touched.
   */
  async rollback(migrationId: string): Promise<RollbackResult> {
    await this.deps.checkpoints.requestCancel(migrationId);
    // A migration that failed before creating the schema wrote nothing: there is no table to delete from.
    const status = await this.deps.target.status();
    const uninitialized = status.reachable && status.error !== undefined;
    const removed = uninitialized ? 0 : await this.deps.target.deleteByMigration(migrationId);
    // A bulk load may have dropped the index: the table is left searchable by the graph again.
    if (!uninitialized) await this.deps.target.buildVectorIndex();
    const checkpoint = await this.deps.checkpoints.load(migrationId);
    if (checkpoint) {
      checkpoint.result.state = 'rolled_back';
      checkpoint.result.finished_at = new Date().toISOString();
      await this.deps.checkpoints.save(migrationId, checkpoint);
    }
    this.log.info({ migrationId, removed }, 'migration rolled back');
    return { migration_id: migrationId, removed };
  }

  /** The migration's record as of its last checkpoint; null when unknown (or a dry run). */
  async status(migrationId: string): Promise<MigrationResult | null> {
    return (await this.deps.checkpoints.load(migrationId))?.result ?? null;
  }

  private async prepare(payload: unknown): Promise<RunContext | { finished: MigrationResult }> {
    const input = validate(MigrateChromaPayload, payload, migrationIssue);
    const collection = input.collection ?? this.deps.defaults.collection;
    let mapping: ChromaMapping | undefined = input.mapping;
    if (mapping && mapping.user_id === undefined && input.user_id !== undefined) {
      mapping = { ...mapping, defaults: { ...mapping.defaults, user_id: input.user_id } };
    }
    const fingerprint = createHash('sha256')
      .update(
        canonical({
          collection,
          user_id: input.user_id ?? null,
          mapping: mapping ?? null,
          re_embed: input.re_embed,
          dry_run: input.dry_run,
        }),
      )
      .digest('hex');

    let checkpoint = input.dry_run ? null : await this.deps.checkpoints.load(input.migration_id);
    if (checkpoint) {
      if (checkpoint.fingerprint !== fingerprint) {
        throw new ConflictError(
          `migration ${input.migration_id} was started with other options; start a new migration instead`,
          { migration_id: input.migration_id },
          'migration_options_changed',
        );
      }
      if (checkpoint.result.state === 'rolled_back' || checkpoint.result.state === 'cancelled') {
        throw new MigrationCancelledError(input.migration_id);
      }
      // A job that finished but ran again (a retried completion, a re-queued id) changes nothing.
      if (checkpoint.result.state === 'completed') return { finished: checkpoint.result };
    }
    if (!input.dry_run && (await this.deps.checkpoints.isCancelRequested(input.migration_id))) {
      throw new MigrationCancelledError(input.migration_id);
    }

    // Both ends must answer before anything happens: the source first (unknown collection), then PostgreSQL.
    const info = await this.deps.source.describe(collection);
    let targetReady = true;
    if (input.dry_run) {
      const status = await this.deps.target.status();
      if (!status.reachable) {
        throw new UnavailableError(`PostgreSQL is unavailable: ${status.error ?? 'no answer'}`, {
          code: 'backend_unavailable',
        });
      }
      targetReady = status.error === undefined;
    } else {
      await this.deps.target.initialize();
    }

    checkpoint ??= {
      fingerprint,
      offset: 0,
      duplicates: {},
      result: {
        migration_id: input.migration_id,
        dry_run: input.dry_run,
        collection,
        state: 'running',
        stats: emptyStats(),
        counts: {},
        skipped: [],
        failures: [],
        verification: null,
        started_at: new Date().toISOString(),
        finished_at: null,
      },
    };
    checkpoint.result.state = 'running';
    const mapper = new RecordMapper(
      collection,
      mapping,
      checkpoint.result.started_at,
      this.deps.defaults.userId,
    );
    const userKey = mapper.userKey;
    const collectionModel =
      typeof info.metadata?.embedding_model === 'string' ? info.metadata.embedding_model : null;
    return {
      id: input.migration_id,
      dryRun: input.dry_run,
      collection,
      batchSize: input.batch_size,
      reEmbed: input.re_embed,
      // Our own layout stores user ids as strings, so Chroma can filter; foreign values may be numbers.
      where: !mapping && input.user_id !== undefined ? { user_id: input.user_id } : undefined,
      userFilter: mapping && userKey !== undefined ? input.user_id : undefined,
      mapper,
      collectionModel: mapping ? (mapping.embedding_model ?? null) : collectionModel,
      targetReady,
      checkpoint,
      seenKeys: new Set(),
      claimedIds: new Set(),
    };
  }

  /** Why a record's vector must be embedded again; null when it can be copied. */
  private embedReason(
    ctx: RunContext,
    record: MappedRecord,
    embedding: number[] | null | undefined,
  ): EmbedReason | null {
    if (ctx.reEmbed) return 'requested';
    if (!embedding || embedding.length === 0) return 'missing';
    if (embedding.length !== EMBEDDING_DIMENSION || !embedding.every(Number.isFinite)) return 'dimension';
    const wanted = this.deps.embedder?.info.model;
    if (wanted === undefined) return null;
    const model = record.embeddingModel ?? ctx.collectionModel;
    return model === wanted ? null : 'model';
  }

  private skip(ctx: RunContext, id: string, reason: SkipReason, message: string) {
    const { result } = ctx.checkpoint;
    result.stats.skipped += 1;
    result.stats.skipped_by_reason[reason] = (result.stats.skipped_by_reason[reason] ?? 0) + 1;
    if (result.skipped.length < this.maxListed) result.skipped.push({ id, reason, message });
  }

  private countEmbedding(ctx: RunContext, reason: EmbedReason | null) {
    const { stats } = ctx.checkpoint.result;
    if (reason === null) {
      stats.copied_embeddings += 1;
      return;
    }
    stats.re_embedded += 1;
    stats.re_embedded_by_reason[reason] = (stats.re_embedded_by_reason[reason] ?? 0) + 1;
  }

  private async processBatch(ctx: RunContext, rows: SourceRow[]): Promise<void> {
    const { result } = ctx.checkpoint;
    const { stats } = result;
    const mapped: { row: SourceRow; record: MappedRecord }[] = [];
    for (const row of rows) {
      const outcome = ctx.mapper.map(row);
      if (outcome.ok && ctx.userFilter !== undefined && outcome.record.memory.user_id !== ctx.userFilter)
        continue;
      stats.read += 1;
      if (!outcome.ok) this.skip(ctx, row.id, outcome.reason, outcome.message);
      else mapped.push({ row, record: outcome.record });
    }
    if (mapped.length === 0) return;

    const existing = ctx.targetReady
      ? new Map(
          (await this.deps.target.findByIds(mapped.map((m) => m.record.memory.id))).map((r) => [r.id, r]),
        )
      : new Map<string, MemoryRecord>();
    const heldContent =
      ctx.dryRun && ctx.targetReady ? await this.heldContent(mapped) : new Map<string, string>();
    const toWrite: { row: SourceRow; record: MappedRecord; reason: EmbedReason | null }[] = [];
    for (const item of mapped) {
      const { memory } = item.record;
      addToScope(result.counts, memory);
      const held = existing.get(memory.id);
      const reason = this.embedReason(ctx, item.record, item.row.embedding);
      const claimed = ctx.claimedIds.has(memory.id);
      ctx.claimedIds.add(memory.id);
      if (claimed) {
        this.skip(
          ctx,
          item.row.id,
          'duplicate_id',
          `an earlier record of this migration maps to memory id ${memory.id} too`,
        );
      } else if (held && held.migration_id === ctx.id) {
        // Written by this migration before a crash, in a batch whose checkpoint was not saved.
        stats.written += 1;
        this.countEmbedding(ctx, reason);
      } else if (held) {
        this.skip(ctx, item.row.id, 'already_in_postgres', `PostgreSQL already holds memory ${memory.id}`);
      } else if (ctx.dryRun && heldContent.has(dedupKey(memory))) {
        this.skip(
          ctx,
          item.row.id,
          'duplicate_content',
          `the same content is already stored as memory ${heldContent.get(dedupKey(memory))}`,
        );
      } else if (ctx.dryRun && ctx.seenKeys.has(dedupKey(memory))) {
        this.skip(
          ctx,
          item.row.id,
          'duplicate_content',
          'the same content is already in this user + session + project',
        );
      } else {
        if (ctx.dryRun) ctx.seenKeys.add(dedupKey(memory));
        toWrite.push({ ...item, reason });
      }
    }
    if (toWrite.length === 0) return;

    if (ctx.dryRun) {
      stats.would_write += toWrite.length;
      for (const item of toWrite) this.countEmbedding(ctx, item.reason);
      return;
    }

    const vectors = await this.embedIfNeeded(toWrite);
    const records: MemoryRecord[] = toWrite.map((item, i) => ({
      ...item.record.memory,
      embedding: vectors[i]!,
      embedding_model:
        item.reason === null
          ? item.record.embeddingModel || ctx.collectionModel || 'unknown'
          : this.deps.embedder!.info.model,
      migration_id: ctx.id,
    }));
    const byId = new Map(toWrite.map((item) => [item.record.memory.id, item]));
    for (const outcome of await this.write(ctx, records, toWrite)) {
      const item = byId.get(outcome.requested_id)!;
      if (outcome.status === 'duplicate') {
        this.skip(
          ctx,
          item.row.id,
          'duplicate_content',
          `the same content is already stored as memory ${outcome.id}`,
        );
        addToScope(ctx.checkpoint.duplicates, item.record.memory);
      } else {
        stats.written += 1;
        this.countEmbedding(ctx, item.reason);
      }
    }
  }

  /**
   * Content keys of these records that PostgreSQL already holds, with the memory holding each: what
   * `upsert` would report as duplicates, so that a dry run counts what the run will write.
   */
  private async heldContent(items: { record: MappedRecord }[]): Promise<Map<string, string>> {
    const rows = await this.deps.target.findByContent(items.map((item) => item.record.memory));
    return new Map(rows.map((row) => [dedupKey(row), row.id]));
  }

  private async embedIfNeeded(items: { row: SourceRow; record: MappedRecord; reason: EmbedReason | null }[]) {
    const vectors: (number[] | Float32Array)[] = items.map((item) =>
      item.reason === null ? item.row.embedding! : [],
    );
    const pending = items.map((item, i) => ({ item, i })).filter(({ item }) => item.reason !== null);
    if (pending.length === 0) return vectors;
    if (!this.deps.embedder) {
      throw new ValidationError(
        'records need embedding (missing vectors, another dimension or model, or re_embed) but no embedder was given',
        undefined,
        'embedder_required',
      );
    }
    const embedded = await this.deps.embedder.embed(pending.map(({ item }) => item.record.memory.content));
    pending.forEach(({ i }, k) => (vectors[i] = embedded[k]!));
    return vectors;
  }

  /**
   * One transaction for the batch. If PostgreSQL rejects the data, the batch is written record by
   * record so that only the records it cannot hold fail (and are listed), not the batch.
   */
  private async write(
    ctx: RunContext,
    records: MemoryRecord[],
    items: { row: SourceRow }[],
  ): Promise<UpsertResult[]> {
    try {
      return await this.deps.target.upsert(records);
    } catch (error) {
      if (!(error instanceof ValidationError) || records.length === 1) throw error;
      this.log.warn(
        { migrationId: ctx.id, err: error.message },
        'batch rejected, writing its records one by one',
      );
    }
    const results: UpsertResult[] = [];
    for (const [i, record] of records.entries()) {
      try {
        results.push(...(await this.deps.target.upsert([record])));
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        const { result } = ctx.checkpoint;
        result.stats.failed += 1;
        const issue: MigrationIssue = { id: items[i]!.row.id, reason: error.code, message: error.message };
        if (result.failures.length < this.maxListed) result.failures.push(issue);
      }
    }
    return results;
  }

  /**
   * Compares what Chroma holds with what PostgreSQL holds: counts per user and scope over the whole
   * selection (read again), the rows this migration wrote against those Chroma still holds, then a
   * random sample field by field and vector by vector.
   */
  private async verify(ctx: RunContext): Promise<MigrationVerification> {
    const chroma: Record<string, ScopeCounts> = {};
    const postgres: Record<string, ScopeCounts> = {};
    const missing: string[] = [];
    const sample: { memoryId: string; sourceId: string }[] = [];
    let candidates = 0;
    const pageSize = Math.max(ctx.batchSize, 1_000);
    for (let offset = 0; ; offset += pageSize) {
      const rows = await this.deps.source.page(ctx.collection, offset, pageSize, {
        where: ctx.where,
        embeddings: false,
      });
      if (rows.length === 0) break;
      const mapped = rows.flatMap((row) => {
        const outcome = ctx.mapper.map(row);
        if (!outcome.ok || (ctx.userFilter !== undefined && outcome.record.memory.user_id !== ctx.userFilter))
          return [];
        return [outcome.record];
      });
      const found = new Map(
        (await this.deps.target.findByIds(mapped.map((m) => m.memory.id))).map((r) => [r.id, r]),
      );
      for (const record of mapped) {
        addToScope(chroma, record.memory);
        const row = found.get(record.memory.id);
        if (!row) {
          if (missing.length < DIFFERENCES_LISTED) missing.push(record.sourceId);
          continue;
        }
        addToScope(postgres, { ...row, project: row.project ?? null });
        if (row.migration_id !== ctx.id) continue;
        // Reservoir sampling over the rows this migration wrote.
        candidates += 1;
        const pick = { memoryId: row.id, sourceId: record.sourceId };
        if (sample.length < this.sampleSize) sample.push(pick);
        else {
          const j = Math.floor(Math.random() * candidates);
          if (j < this.sampleSize) sample[j] = pick;
        }
      }
    }
    mergeScopes(postgres, ctx.checkpoint.duplicates);

    const differences: VerificationDifference[] = [];
    const note = (d: VerificationDifference) => {
      if (differences.length < DIFFERENCES_LISTED) differences.push(d);
    };
    const users = new Set([...Object.keys(chroma), ...Object.keys(postgres)]);
    for (const user of users) {
      const c = chroma[user] ?? emptyScopeCounts();
      const p = postgres[user] ?? emptyScopeCounts();
      if (c.total !== p.total)
        note({ kind: 'count', user_id: user, scope: 'total', chroma: c.total, postgres: p.total });
      for (const [field, scope] of [
        ['by_session', 'session'],
        ['by_project', 'project'],
        ['by_content_type', 'content_type'],
      ] as const) {
        for (const key of new Set([...Object.keys(c[field]), ...Object.keys(p[field])])) {
          const a = c[field][key] ?? 0;
          const b = p[field][key] ?? 0;
          if (a !== b) note({ kind: 'count', user_id: user, scope, key, chroma: a, postgres: b });
        }
      }
    }
    const countsDiffer = differences.length > 0;
    if (countsDiffer) for (const id of missing) note({ kind: 'missing', id });
    // Rows this migration wrote whose record the selection no longer holds (deleted in Chroma since
    // it was copied): the pass above, which starts from Chroma, cannot see them.
    const written = ctx.checkpoint.result.stats.written;
    if (candidates < written)
      note({ kind: 'count', scope: 'migrated', chroma: candidates, postgres: written });

    const compared = await this.compareSample(ctx, sample, note);
    const counts: MigrationVerification['counts'] = {};
    for (const user of users) {
      counts[user] = {
        chroma: chroma[user] ?? emptyScopeCounts(),
        postgres: postgres[user] ?? emptyScopeCounts(),
      };
    }
    const verified = differences.length === 0 && ctx.checkpoint.result.stats.failed === 0;
    this.log.info(
      { migrationId: ctx.id, verified, differences: differences.length, sample: sample.length },
      'migration verified',
    );
    return { verified, counts, sample: { size: sample.length, ...compared }, differences };
  }

  private async compareSample(
    ctx: RunContext,
    sample: { memoryId: string; sourceId: string }[],
    note: (d: VerificationDifference) => void,
  ): Promise<{ fields_compared: number; vectors_compared: number }> {
    if (sample.length === 0) return { fields_compared: 0, vectors_compared: 0 };
    const sourceRows = new Map(
      (
        await this.deps.source.getByIds(
          ctx.collection,
          sample.map((s) => s.sourceId),
          { embeddings: true },
        )
      ).map((r) => [r.id, r]),
    );
    const stored = new Map(
      (
        await this.deps.target.findByIds(
          sample.map((s) => s.memoryId),
          { embeddings: true },
        )
      ).map((r) => [r.id, r]),
    );
    const fields = [
      'user_id',
      'session_id',
      'session_type',
      'project',
      'content',
      'content_type',
      'content_hash',
    ] as const;
    let fieldsCompared = 0;
    let vectorsCompared = 0;
    const toEmbed: { id: string; content: string; vector: ArrayLike<number> }[] = [];
    for (const { memoryId, sourceId } of sample) {
      const row = sourceRows.get(sourceId);
      const pg = stored.get(memoryId);
      if (!row || !pg) {
        note({ kind: 'missing', id: sourceId, chroma: Boolean(row), postgres: Boolean(pg) });
        continue;
      }
      const outcome = ctx.mapper.map(row);
      if (!outcome.ok) {
        note({ kind: 'field', id: sourceId, scope: 'record', chroma: outcome.reason, postgres: 'stored' });
        continue;
      }
      const expected = outcome.record.memory;
      for (const field of fields) {
        fieldsCompared += 1;
        if ((expected[field] ?? null) !== (pg[field] ?? null)) {
          note({ kind: 'field', id: sourceId, scope: field, chroma: expected[field], postgres: pg[field] });
        }
      }
      fieldsCompared += 2;
      if (canonical(expected.metadata) !== canonical(pg.metadata)) {
        note({
          kind: 'field',
          id: sourceId,
          scope: 'metadata',
          chroma: expected.metadata,
          postgres: pg.metadata,
        });
      }
      if (Date.parse(expected.created_at) !== Date.parse(pg.created_at)) {
        note({
          kind: 'field',
          id: sourceId,
          scope: 'created_at',
          chroma: expected.created_at,
          postgres: pg.created_at,
        });
      }
      vectorsCompared += 1;
      if (pg.embedding.length !== EMBEDDING_DIMENSION) {
        note({
          kind: 'vector',
          id: sourceId,
          chroma: row.embedding?.length ?? 0,
          postgres: pg.embedding.length,
        });
      } else if (this.embedReason(ctx, outcome.record, row.embedding) === null) {
        let worst = 0;
        for (let i = 0; i < EMBEDDING_DIMENSION; i += 1) {
          worst = Math.max(worst, Math.abs((row.embedding![i] ?? NaN) - pg.embedding[i]!));
        }
        if (!(worst <= VECTOR_TOLERANCE))
          note({ kind: 'vector', id: sourceId, chroma: 'copied', postgres: `max difference ${worst}` });
      } else {
        toEmbed.push({ id: sourceId, content: expected.content, vector: pg.embedding });
      }
    }
    if (toEmbed.length > 0 && this.deps.embedder) {
      // Re-embedded vectors are checked against the same model run again on the same text.
      const fresh = await this.deps.embedder.embed(toEmbed.map((t) => t.content));
      toEmbed.forEach((t, i) => {
        const cosine = cosineSimilarity(fresh[i]!, t.vector);
        if (!(cosine >= REEMBED_MIN_COSINE))
          note({ kind: 'vector', id: t.id, chroma: 're-embedded', postgres: `cosine ${cosine}` });
      });
    }
    return { fields_compared: fieldsCompared, vectors_compared: vectorsCompared };
  }
}

/**
 * Whether a failure can go away by itself (a server down) rather than needing a change of input or of
 * code. Adapters translate what they know into `AppError`s; anything else is a bug (a `RangeError`, a
 * `TypeError`) that five retries over minutes would only repeat, unless it is a connection failure
 * that reached the engine untranslated.
 */
export function isTransientMigrationError(error: unknown): boolean {
  if (error instanceof ValidationError || error instanceof ConflictError) return false;
  if (error instanceof AppError) return error.httpStatus >= 500;
  return isConnectionError(error);
}
