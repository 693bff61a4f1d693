import type { Memory, MemoryRecord, SearchHit } from '../memory/memory.schemas';
import type { FilterNode, MemoryFilter } from '../memory/filter';

export type BackendName = 'postgres' | 'chroma';

export interface UpsertResult {
  /** The id asked for. */
  requested_id: string;
  /** The id of the memory that holds this content now: `requested_id`, or an existing duplicate's id. */
  id: string;
  status: 'created' | 'updated' | 'duplicate';
}

export interface Page {
  /** @defaultValue 50 */
  limit: number;
  /** @defaultValue 0 */
  offset: number;
}

export interface ListResult {
  items: Memory[];
  total: number;
}

export interface MemoryStats {
  total: number;
  by_content_type: Record<string, number>;
  by_session: Record<string, number>;
  by_project: Record<string, number>;
}

export interface StoreStatus {
  backend: BackendName;
  reachable: boolean;
  /** Memories in the store (all users), when reachable. */
  memory_count?: number;
  /** True when `memory_count` is the planner's estimate (large tables are not counted on every call). */
  memory_count_estimated?: boolean;
  /** e.g. `hnsw (m=16, ef_construction=64)` or Chroma's collection configuration. */
  index?: string;
  /** Users with an HNSW graph of their own (PostgreSQL; `PgvectorMemoryStore.maintainTenantIndexes`). */
  tenant_indexes?: number;
  /** Server and extension versions. */
  versions?: Record<string, string>;
  /** What the operator should act on, e.g. a pgvector release with known faults. */
  warnings?: string[];
  error?: string;
}

/** What `deleteByScope` removed. */
export interface ScopeDeletion {
  count: number;
  /** The ids asked about that it removed. */
  among: string[];
}

/**
 * The storage port. Every read and delete is scoped to one user; ids are UUIDs chosen by the caller,
 * so that writing the same record twice (a retried job) does no harm.
 */
export interface MemoryStore {
  readonly backend: BackendName;
  /** Creates the schema or collection if missing. Idempotent. */
  initialize(): Promise<void>;
  /**
   * Writes a batch in one round trip (or a few). A record whose id exists is updated; a record whose
   * content already exists in the same user + session + project under another id is not written and
   * reported as `duplicate` with the existing id.
   */
  upsert(records: MemoryRecord[]): Promise<UpsertResult[]>;
  /** Top `k` by cosine similarity within the filter, best first. */
  search(vector: Float32Array | number[], k: number, filter: MemoryFilter): Promise<SearchHit[]>;
  get(userId: string, id: string): Promise<Memory | null>;
  /** Newest first. */
  list(filter: MemoryFilter, page: Page): Promise<ListResult>;
  /** True when a memory was removed. */
  delete(userId: string, id: string): Promise<boolean>;
  /**
   * Removes every memory of the user that matches; says how many, and which of the ids in `among`
   * were among them (a session delete asks about the session's memories still queued).
   */
  deleteByScope(filter: MemoryFilter, among?: readonly string[]): Promise<ScopeDeletion>;
  stats(filter: MemoryFilter): Promise<MemoryStats>;
  status(): Promise<StoreStatus>;
  close(): Promise<void>;
}

export type { FilterNode, MemoryFilter };
