import { z } from 'zod';
import type { DefaultJobOptions } from 'bullmq';
import { Content, ContentType, Metadata, MemoryLimits, ScopeValue } from '../memory/memory.schemas';

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

/** Deterministic job ids, so that enqueuing the same memory twice is one job. */
export const jobIds = {
  storeMemory: (memoryId: string) => `store-${memoryId}`,
  storeBatch: (batchId: string) => `batch-${batchId}`,
};

/** Bounded retries with exponential backoff; finished jobs are trimmed by age and count. */
export const defaultJobOptions: DefaultJobOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1_000 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
};
