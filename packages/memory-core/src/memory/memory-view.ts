import type { Memory, SearchHit } from './memory.schemas';

/** A memory as the API returns it: no content hash or model (internal), no vector. */
export function toMemoryView(memory: Memory) {
  return {
    id: memory.id,
    user_id: memory.user_id,
    session_id: memory.session_id,
    session_type: memory.session_type,
    project: memory.project,
    content: memory.content,
    content_type: memory.content_type,
    metadata: memory.metadata,
    created_at: memory.created_at,
    updated_at: memory.updated_at,
  };
}

/** A search hit with the seed's result fields. */
export function toSearchResultView(hit: SearchHit) {
  return {
    id: hit.id,
    content: hit.content,
    similarity: hit.similarity,
    session_id: hit.session_id,
    project: hit.project,
    content_type: hit.content_type,
    metadata: hit.metadata,
    created_at: hit.created_at,
  };
}
