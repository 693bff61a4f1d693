import { createHash } from 'node:crypto';
import type { QueuedMemory } from '../jobs/job-catalogue';
import { ScopeValue, type MemoryInputParsed, type MemoryRecord } from './memory.schemas';

/** sha256 of the content exactly as given: the dedup key within user + session + project. */
export function contentHash(content: string): string {
  return createHash('sha256').update(content, 'utf8').digest('hex');
}

/**
 * A validated input as it is queued. A `session_type` in metadata (the seed's way) also sets the
 * scope field (`MemoryInput` checked that it is a valid one), so either form filters the same.
 */
export function toQueuedMemory(input: MemoryInputParsed, id: string, createdAt: Date): QueuedMemory {
  const fromMetadata = ScopeValue.safeParse(input.metadata.session_type);
  return {
    id,
    content: input.content,
    session_id: input.session_id ?? null,
    session_type: input.session_type ?? (fromMetadata.success ? fromMetadata.data : null),
    project: input.project ?? null,
    content_type: input.content_type,
    metadata: input.metadata,
    created_at: createdAt.toISOString(),
  };
}

/** The record a store writes for a queued memory once it has its vector. */
export function toMemoryRecord(
  userId: string,
  memory: QueuedMemory,
  embedding: Float32Array,
  embeddingModel: string,
): MemoryRecord {
  return {
    ...memory,
    user_id: userId,
    content_hash: contentHash(memory.content),
    embedding,
    embedding_model: embeddingModel,
    updated_at: new Date().toISOString(),
  };
}
