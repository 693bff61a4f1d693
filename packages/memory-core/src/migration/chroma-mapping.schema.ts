import { z } from 'zod';
import { ContentType, ScopeValue } from '../memory/memory.schemas';

/** A key of the foreign collection's metadata. */
const SourceKey = z.string().min(1, 'a metadata key must not be empty').max(256);

/**
 * How a foreign Chroma collection's records become memories. Every field is optional; see
 * `migration/README.md` for the full description and an example.
 *
 * - `user_id`, `session_id`, `session_type`, `project`, `content_type`, `created_at`: the metadata key
 *   that holds each field. Numbers become strings (`7` → `"7"`); `created_at` may be ISO 8601, epoch
 *   seconds or epoch milliseconds, in the years 1 to 9999 (else the record is skipped as
 *   `invalid_timestamp`).
 * - `defaults`: the value when a record lacks the key (or no key is mapped).
 * - `metadata`: what happens to the keys not used above: `"keep"` (default) keeps them all, `"drop"`
 *   keeps none, a list keeps those named.
 * - `embedding_model`: the model that made the collection's vectors. Vectors are copied only when it
 *   names the worker's model; otherwise (or when unset) the texts are embedded again.
 */
export const ChromaMapping = z.strictObject({
  user_id: SourceKey.optional(),
  session_id: SourceKey.optional(),
  session_type: SourceKey.optional(),
  project: SourceKey.optional(),
  content_type: SourceKey.optional(),
  created_at: SourceKey.optional(),
  defaults: z
    .strictObject({
      user_id: ScopeValue.optional(),
      session_id: ScopeValue.optional(),
      session_type: ScopeValue.optional(),
      project: ScopeValue.optional(),
      content_type: ContentType.optional(),
    })
    .optional(),
  metadata: z
    .union([z.enum(['keep', 'drop']), z.array(SourceKey).max(64)], {
      error: 'metadata is "keep", "drop" or a list of metadata keys to keep',
    })
    .optional(),
  embedding_model: z.string().min(1).max(256).optional(),
});
export type ChromaMapping = z.output<typeof ChromaMapping>;

/** Why a record read from Chroma is not written. */
export const SKIP_REASONS = [
  'missing_document',
  'invalid_content',
  'missing_user_id',
  'invalid_scope',
  'invalid_content_type',
  'invalid_metadata',
  'invalid_timestamp',
  'already_in_postgres',
  'duplicate_id',
  'duplicate_content',
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];
