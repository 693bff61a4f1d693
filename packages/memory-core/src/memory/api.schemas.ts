import { z } from 'zod';
import { andFilters, parseWhere, scopeConditions, type MemoryFilter } from './filter';
import {
  ContentType,
  MemoryInput,
  MemoryLimits,
  Metadata,
  MetadataValue,
  refuseProtoKey,
  ScopeValue,
} from './memory.schemas';

/**
 * The HTTP API's request bodies, with the seed's snake_case names so that clients of the original
 * Python service keep working. The gateway validates them; the search service validates again.
 */
export const StoreRequest = MemoryInput;

export const StoreBatchRequest = z.strictObject({
  memories: z
    .array(MemoryInput)
    .min(1, 'memories must hold at least one memory')
    .max(MemoryLimits.batchMaxMemories, `memories holds at most ${MemoryLimits.batchMaxMemories} memories`),
});

export const NResults = z
  .number({ error: 'n_results must be an integer' })
  .int('n_results must be an integer')
  .min(1, 'n_results must be at least 1')
  .max(MemoryLimits.searchMaxResults, `n_results is at most ${MemoryLimits.searchMaxResults}`);

export const SearchRequest = z.strictObject({
  query: z
    .string({ error: 'query must be a string' })
    .max(MemoryLimits.contentMaxChars, `query is at most ${MemoryLimits.contentMaxChars} characters`)
    .refine((q) => q.trim().length > 0, { message: 'query must not be empty or whitespace only' }),
  n_results: NResults.default(5),
  session_id: ScopeValue.optional(),
  session_type: ScopeValue.optional(),
  project: ScopeValue.optional(),
  content_type: ContentType.optional(),
  /** The seed's plain filter: `{key: value}` means `$eq` on each key. */
  metadata_filter: refuseProtoKey(z.record(z.string(), MetadataValue), 'metadata_filter').optional(),
  /** Chroma-style filter with `$eq $ne $gt $gte $lt $lte $in $nin $and $or`. */
  where: refuseProtoKey(z.record(z.string(), z.unknown()), 'where').optional(),
});
export type SearchRequest = z.output<typeof SearchRequest>;

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

/** What the API returns for a memory (no vector, no internal hash). */
export const MemoryResponse = z.object({
  id: z.uuid(),
  user_id: z.string(),
  session_id: z.string().nullable(),
  session_type: z.string().nullable(),
  project: z.string().nullable(),
  content: z.string(),
  content_type: z.string(),
  metadata: Metadata,
  created_at: z.string(),
  updated_at: z.string(),
});

export const SearchResultResponse = MemoryResponse.omit({
  user_id: true,
  updated_at: true,
  session_type: true,
}).extend({
  similarity: z.number(),
});

/** Lower-cased: ids are stored lower-case, and Chroma ids and Redis keys are case-sensitive. */
export const MemoryIdParam = z
  .uuid({ error: 'the memory id must be a UUID' })
  .transform((id) => id.toLowerCase());
export const SessionIdParam = ScopeValue;
export const ProjectParam = ScopeValue;

export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

/** Turns a search request's filter fields into the filter a store understands, scoped to one user. */
export function searchRequestFilter(userId: string, request: SearchRequest): MemoryFilter {
  const metadataEquals =
    request.metadata_filter && Object.keys(request.metadata_filter).length > 0
      ? parseWhere(request.metadata_filter, 'metadata_filter')
      : undefined;
  return {
    user_id: userId,
    where: andFilters(
      scopeConditions({
        session_id: request.session_id,
        session_type: request.session_type,
        project: request.project,
        content_type: request.content_type,
      }),
      metadataEquals,
      request.where ? parseWhere(request.where) : undefined,
    ),
  };
}
