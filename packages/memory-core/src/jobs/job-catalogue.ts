import { z } from 'zod';
import { UnrecoverableError, type DefaultJobOptions } from 'bullmq';
import { Content, ContentType, Metadata, MemoryLimits, ScopeValue } from '../memory/memory.schemas';
import { ChromaMapping, type SkipReason } from '../migration/chroma-mapping.schema';

/** Queues. Their Redis keys start with the configured prefix, e.g. `{memory}` (a Redis Cluster hash tag). */
export const QueueName = {
  Ingest: 'memory-ingest',
  Migration: 'memory-migration',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];

export const JobName = {
  StoreMemory: 'store-memory',
  StoreMemoryBatch: 'store-memory-batch',
  MigrateChroma: 'migrate-chroma',
  RollbackMigration: 'rollback-migration',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

/** One memory as queued: validated input plus the id and creation time chosen when it was accepted. */
export const QueuedMemory = z.strictObject({
  id: z.uuid(),
  content: Content,
  session_id: ScopeValue.nullable(),
  session_type: ScopeValue.nullable(),
  project: ScopeValue.nullable(),
  content_type: ContentType,
  metadata: Metadata,
  created_at: z.iso.datetime({ offset: true }),
});
export type QueuedMemory = z.infer<typeof QueuedMemory>;

const jobBase = {
  user_id: ScopeValue,
  /** The HTTP request that enqueued the job, so worker logs link back to it. */
  request_id: z.string().max(128).optional(),
};

export const StoreMemoryPayload = z.strictObject({ ...jobBase, memory: QueuedMemory });
export const StoreMemoryBatchPayload = z.strictObject({
  ...jobBase,
  memories: z.array(QueuedMemory).min(1).max(MemoryLimits.batchMaxMemories),
});

/** The payload schema of each job name: checked when enqueued and again when processed. */
export const JobPayloads = {
  [JobName.StoreMemory]: StoreMemoryPayload,
  [JobName.StoreMemoryBatch]: StoreMemoryBatchPayload,
} as const;
export type StoreJobName = keyof typeof JobPayloads;
export type JobPayload<N extends StoreJobName> = z.infer<(typeof JobPayloads)[N]>;

/** What a store job returns: for each memory asked for, the id that holds its content now. */
export interface StoreJobResult {
  memories: { requested_id: string; id: string; status: 'created' | 'updated' | 'duplicate' | 'deleted' }[];
}

/** Why a store job waits in the delayed set, and until when (a job view shows it while it waits). */
export interface JobDeferral {
  /** The store's error code, e.g. `store_unavailable`. */
  reason: string;
  retry_at: string;
}

/** How many deferral lines a job's log keeps (one per wait; an outage of hours adds hundreds). */
export const DEFERRAL_LOG_ROWS = 20;

const DEFERRAL_LINE = /^deferred: ([a-z_]+) until (\S+) \(no attempt used\)$/;

/**
 * A deferral as a line of the job's log: readable in Bull Board's log tab, and parsed back by the
 * job view. `parseJobDeferral` is its inverse; any other line is not a deferral.
 */
export const jobDeferral = {
  format: (deferral: JobDeferral): string =>
    `deferred: ${deferral.reason} until ${deferral.retry_at} (no attempt used)`,
  parse(line: string | undefined): JobDeferral | null {
    const match = line === undefined ? null : DEFERRAL_LINE.exec(line);
    return match ? { reason: match[1]!, retry_at: match[2]! } : null;
  },
};

/** Deterministic job ids, so that enqueuing the same memory (or migration) twice is one job. */
export const jobIds = {
  storeMemory: (memoryId: string) => `store-${memoryId}`,
  storeBatch: (batchId: string) => `batch-${batchId}`,
  migration: (migrationId: string) => `migrate-${migrationId}`,
  rollback: (migrationId: string) => `rollback-${migrationId}`,
};

/**
 * A store job's place in the ingest queue: smaller jobs first, so that an app's single store is not
 * stuck behind an operator's bulk load. BullMQ takes jobs without a priority (a single memory) before
 * any with one, and prioritized jobs by ascending priority, those of one priority in the order they
 * came: a batch's priority is its number of memories. The worker's micro-batcher orders the memories
 * of the jobs it holds the same way (`MicroBatcher.submit`). `undefined`: no priority.
 */
export function storeJobPriority(name: StoreJobName, memories: number): number | undefined {
  return name === JobName.StoreMemory ? undefined : Math.max(1, memories);
}

/**
 * Bounded retries with exponential backoff; finished jobs are trimmed by age and count, a job's log
 * (its deferrals) to its last lines.
 */
export const defaultJobOptions: DefaultJobOptions = {
  attempts: 8,
  keepLogs: DEFERRAL_LOG_ROWS,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
};

/** Letters, digits, `_` and `-` (BullMQ job ids must not contain `:`). */
export const MigrationId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,100}$/, 'a migration id is 1-100 letters, digits, "_" or "-"');

/**
 * What a client asks for (`POST /api/memory/migrate`, `npm run migrate`): which Chroma collection to
 * move to PostgreSQL, and how.
 */
export const MigrateChromaRequest = z.strictObject({
  /** Read and validate everything, report what would happen, write nothing. @defaultValue false */
  dry_run: z.boolean().default(false),
  /**
   * Only this user's records (our own layout, or a mapping with a `user_id` key); with a mapping that
   * names no user key, the user every record is given to.
   */
  user_id: ScopeValue.optional(),
  /** @defaultValue the worker's `CHROMA_COLLECTION` */
  collection: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$/, 'not a Chroma collection name')
    .optional(),
  /** Records read, embedded and written per batch (one transaction each). @defaultValue 500 */
  batch_size: z.number().int().min(1).max(5_000).default(500),
  /** Embed every text again instead of copying the stored vectors. @defaultValue false */
  re_embed: z.boolean().default(false),
  /** A foreign collection's metadata keys (see `ChromaMapping`); without it, our own Chroma layout. */
  mapping: ChromaMapping.optional(),
});
export type MigrateChromaRequest = z.input<typeof MigrateChromaRequest>;

export const MigrateChromaPayload = MigrateChromaRequest.extend({
  migration_id: MigrationId,
  request_id: z.string().max(128).optional(),
});
export type MigrateChromaPayload = z.output<typeof MigrateChromaPayload>;

export const RollbackMigrationPayload = z.strictObject({
  migration_id: MigrationId,
  request_id: z.string().max(128).optional(),
});
export type RollbackMigrationPayload = z.output<typeof RollbackMigrationPayload>;

/** Memories per scope: one user's totals by session, project and content type. */
export interface ScopeCounts {
  total: number;
  by_session: Record<string, number>;
  by_project: Record<string, number>;
  by_content_type: Record<string, number>;
}

export interface MigrationStats {
  /** Records in the selection when the migration started. */
  total: number;
  /** Records read from Chroma (in the selection). */
  read: number;
  /** Rows written to PostgreSQL by this migration (0 in a dry run). */
  written: number;
  /** Rows a dry run would write. */
  would_write: number;
  skipped: number;
  skipped_by_reason: Partial<Record<SkipReason, number>>;
  /** Records PostgreSQL rejected (e.g. text it cannot hold); listed in `failures`. */
  failed: number;
  /** Texts embedded again (or that a dry run would embed), by reason. */
  re_embedded: number;
  re_embedded_by_reason: Partial<Record<'requested' | 'missing' | 'dimension' | 'model', number>>;
  /** Vectors copied as they were. */
  copied_embeddings: number;
  /**
   * Whether rows were loaded without the HNSW index, built once at the end (when PostgreSQL held no
   * memories at the start), and how long that build took. Decided on the first run and kept in the
   * checkpoint, so a resumed run continues the same way; unset in a dry run.
   */
  index_deferred?: boolean;
  index_build_ms?: number;
  /** Time spent working, summed over resumed attempts. */
  duration_ms: number;
  records_per_second: number;
}

export interface MigrationIssue {
  /** The Chroma id. */
  id: string;
  reason: string;
  message: string;
}

export interface VerificationDifference {
  kind: 'count' | 'missing' | 'field' | 'vector';
  user_id?: string;
  /**
   * For counts: `total`, `session`, `project` or `content_type` (of `user_id`), or `migrated`: rows
   * this migration wrote (`postgres`) against those whose record Chroma still holds (`chroma`). For
   * fields, the field.
   */
  scope?: string;
  key?: string;
  id?: string;
  chroma?: unknown;
  postgres?: unknown;
}

export interface MigrationVerification {
  verified: boolean;
  /** Per user: what Chroma holds (records that map to memories) and what PostgreSQL holds of them. */
  counts: Record<string, { chroma: ScopeCounts; postgres: ScopeCounts }>;
  sample: { size: number; fields_compared: number; vectors_compared: number };
  /** Empty when verified; at most 100. */
  differences: VerificationDifference[];
}

export type MigrationState = 'running' | 'completed' | 'failed' | 'cancelled' | 'rolled_back';

/** What a migration job returns (and `--status` shows). */
export interface MigrationResult {
  migration_id: string;
  dry_run: boolean;
  collection: string;
  state: MigrationState;
  stats: MigrationStats;
  /** Records that map to memories, per user and scope (what a dry run reports). */
  counts: Record<string, ScopeCounts>;
  /** Up to 100 skipped records with their reason. */
  skipped: MigrationIssue[];
  /** Up to 100 records PostgreSQL rejected. */
  failures: MigrationIssue[];
  verification: MigrationVerification | null;
  started_at: string;
  finished_at: string | null;
}

/** What a migration job reports as progress. */
export interface MigrationProgress {
  migration_id: string;
  phase: 'counting' | 'migrating' | 'indexing' | 'verifying' | 'done';
  done: number;
  total: number;
  written: number;
  skipped: number;
  failed: number;
  /** Records per second over this attempt. */
  rate: number;
  eta_seconds: number | null;
}

export interface RollbackResult {
  migration_id: string;
  removed: number;
}

/**
 * Migrations resume from their checkpoint, so retries are cheap; a permanent failure (or the last
 * attempt) rolls the migration back. Results are kept a month: they are the migration's record.
 */
export const migrationJobOptions: DefaultJobOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 5_000 },
  removeOnComplete: { age: 30 * 24 * 3600, count: 1_000 },
  removeOnFail: { age: 30 * 24 * 3600, count: 1_000 },
};

/**
 * Validates a job's payload when it is processed. A payload that does not parse fails for good
 * (`UnrecoverableError`: retrying cannot fix it), with every problem in the reason Bull Board shows.
 */
export function parseJobPayload<S extends z.ZodType>(
  schema: S,
  job: { name: string; data: unknown },
): z.output<S> {
  const parsed = schema.safeParse(job.data);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  throw new UnrecoverableError(`invalid ${job.name} payload: ${problems}`);
}

/** What a store job (one memory or a batch) holds, validated: whose, from which request, which memories. */
export function storeJobContents(job: { name: string; data: unknown }): {
  userId: string;
  requestId?: string;
  memories: QueuedMemory[];
} {
  if (job.name === JobName.StoreMemory) {
    const data = parseJobPayload(StoreMemoryPayload, job);
    return { userId: data.user_id, requestId: data.request_id, memories: [data.memory] };
  }
  if (job.name === JobName.StoreMemoryBatch) {
    const data = parseJobPayload(StoreMemoryBatchPayload, job);
    return { userId: data.user_id, requestId: data.request_id, memories: data.memories };
  }
  throw new UnrecoverableError(`unknown job name "${job.name}"`);
}
