import AsyncLock from 'async-lock';
import {
  ChromaClient,
  ChromaClientError,
  ChromaConnectionError,
  ChromaNotFoundError,
  ChromaQuotaExceededError,
  ChromaRateLimitError,
  ChromaServerError,
  ChromaUniqueError,
  ChromaValueError,
  InvalidArgumentError,
  type Collection,
  type Metadata as ChromaMetadata,
  type Where,
} from 'chromadb';
import { AppError, ConflictError, UnavailableError, ValidationError } from '../../errors';
import type { Logger } from '../../logging';
import { chunks } from '../../runtime/chunks';
import type { Memory, MemoryRecord, SearchHit } from '../../memory/memory.schemas';
import type { MemoryFilter } from '../../memory/filter';
import type {
  ListResult,
  MemoryStats,
  MemoryStore,
  Page,
  ScopeDeletion,
  StoreStatus,
  UpsertResult,
} from '../memory-store';
import { assertStorable, createdAtMs, fromChroma, toChromaMetadata } from './chroma-metadata';
import { toChromaWhere } from './chroma-where';

export interface ChromaMemoryStoreOptions {
  /** Where the Chroma server answers, e.g. `http://127.0.0.1:8100`. */
  url: string;
  /** @defaultValue `'memories'` */
  collection?: string;
  /** Recorded in the collection's metadata when it is created; a collection made for another model is reported. */
  embeddingModel?: string;
  /** @defaultValue `'default_tenant'` */
  tenant?: string;
  /** @defaultValue `'default_database'` */
  database?: string;
  /**
   * HNSW settings. `maxNeighbors` and `efConstruction` apply when the collection is created;
   * `efSearch` is also set on an existing collection. The defaults give recall@10 ≈ 0.99 on 10k
   * random 384-d unit vectors (Chroma's own defaults, 16/100/100, give about 0.55 there).
   * @defaultValue `{ maxNeighbors: 32, efConstruction: 200, efSearch: 400 }`
   */
  hnsw?: { maxNeighbors?: number; efConstruction?: number; efSearch?: number };
}

type Row = { id: string; document: string | null | undefined; metadata: ChromaMetadata | null | undefined };

/** Key of "the same content in the same user + session + project" (null scope fields included). */
function dedupKey(m: Pick<Memory, 'user_id' | 'session_id' | 'project' | 'content_hash'>): string {
  return JSON.stringify([m.user_id, m.session_id ?? null, m.project ?? null, m.content_hash]);
}

/**
 * `MemoryStore` on one Chroma collection (cosine space) through the chromadb 3.x HTTP client.
 * Embeddings are always given: the collection has no embedding function.
 *
 * Chroma has no ordering, grouping or transactions, so some work happens here:
 * - `list` and `stats` read the metadata of every memory in the filter (one request), then sort or
 *   count in the process: O(memories in the scope) per call, fine for the thousands a user holds,
 *   not for millions;
 * - dedup reads the stored memories with the batch's content hashes first (one request per user in
 *   the batch), then writes: one store runs two upserts of the same content one after the other, so
 *   that they never both create it, but two processes writing to one collection still can;
 * - updating a memory so that it loses metadata keys deletes it and writes it again (Chroma merges
 *   metadata on upsert), and a reader between the two requests does not see it.
 */
export class ChromaMemoryStore implements MemoryStore {
  readonly backend = 'chroma' as const;
  private readonly client: ChromaClient;
  private readonly collectionName: string;
  private readonly log: Logger;
  private readonly hnsw: { maxNeighbors: number; efConstruction: number; efSearch: number };
  private collection: Promise<Collection> | undefined;
  /**
   * Upserts read, then write. Two that touch the same id or the same content of one user run one
   * after the other, so the second reads what the first wrote; others still overlap.
   */
  private readonly upserts = new AsyncLock({ maxPending: Infinity });

  constructor(
    private readonly options: ChromaMemoryStoreOptions,
    logger: Logger,
  ) {
    const url = new URL(options.url);
    const ssl = url.protocol === 'https:';
    this.client = new ChromaClient({
      host: url.hostname,
      port: url.port ? Number(url.port) : ssl ? 443 : 80,
      ssl,
      tenant: options.tenant,
      database: options.database,
    });
    this.collectionName = options.collection ?? 'memories';
    this.hnsw = {
      maxNeighbors: options.hnsw?.maxNeighbors ?? 32,
      efConstruction: options.hnsw?.efConstruction ?? 200,
      efSearch: options.hnsw?.efSearch ?? 400,
    };
    this.log = logger.child({ module: 'chroma-memory-store', collection: this.collectionName });
  }

  async initialize(): Promise<void> {
    await this.ready();
  }

  async upsert(records: MemoryRecord[]): Promise<UpsertResult[]> {
    if (records.length === 0) return [];
    records.forEach(assertStorable);
    // Sorted: two upserts take shared keys in the same order, so neither waits on the other forever.
    const keys = [
      ...new Set(records.flatMap((r) => [`id:${r.id}`, `content:${r.user_id}:${r.content_hash}`])),
    ].sort();
    return this.upserts.acquire(keys, () => this.upsertAlone(records));
  }

  private async upsertAlone(records: MemoryRecord[]): Promise<UpsertResult[]> {
    const collection = await this.ready();

    const ids = [...new Set(records.map((r) => r.id))];
    const existing = new Map<string, ChromaMetadata>();
    for (const row of await this.getRows(collection, { ids, include: ['metadatas'] }, 'upsert')) {
      if (row.metadata) existing.set(row.id, row.metadata);
    }
    // Ids are global in the collection: a record must never take over another user's memory.
    for (const record of records) {
      const owner = existing.get(record.id)?.user_id;
      if (owner !== undefined && owner !== record.user_id) {
        throw new ConflictError(
          'a memory with this id belongs to another user',
          { id: record.id },
          'id_conflict',
        );
      }
    }

    // Who holds each (user, session, project, content) now: stored memories, then this batch.
    const holders = new Map<string, string[]>();
    const hold = (key: string, id: string) => holders.set(key, [...(holders.get(key) ?? []), id]);
    const release = (key: string, id: string) =>
      holders.set(
        key,
        (holders.get(key) ?? []).filter((h) => h !== id),
      );
    const hashesByUser = new Map<string, Set<string>>();
    for (const r of records)
      hashesByUser.set(r.user_id, (hashesByUser.get(r.user_id) ?? new Set()).add(r.content_hash));
    for (const [userId, hashes] of hashesByUser) {
      const where: Where = { $and: [{ user_id: { $eq: userId } }, { content_hash: { $in: [...hashes] } }] };
      const rows = await this.getRows(collection, { where, include: ['metadatas'] }, 'upsert');
      rows.sort((a, b) => createdAtMs(a.metadata) - createdAtMs(b.metadata) || a.id.localeCompare(b.id));
      for (const row of rows) hold(dedupKey(fromChroma(row.id, null, row.metadata)), row.id);
    }

    const results: UpsertResult[] = [];
    const writes = new Map<string, MemoryRecord & { createdAt: string }>();
    for (const record of records) {
      const key = dedupKey(record);
      const current = holders.get(key) ?? [];
      if (current.length > 0 && !current.includes(record.id)) {
        results.push({ requested_id: record.id, id: current[0]!, status: 'duplicate' });
        continue;
      }
      const pending = writes.get(record.id);
      if (pending && pending.user_id !== record.user_id) {
        throw new ConflictError(
          'one batch holds the same id for two users',
          { id: record.id },
          'id_conflict',
        );
      }
      const stored = existing.get(record.id);
      const storedMemory = stored ? fromChroma(record.id, null, stored) : undefined;
      const before = pending ?? storedMemory;
      if (before) release(dedupKey(before), record.id);
      hold(key, record.id);
      const createdAt = pending?.createdAt ?? storedMemory?.created_at ?? record.created_at;
      writes.set(record.id, { ...record, createdAt });
      results.push({ requested_id: record.id, id: record.id, status: before ? 'updated' : 'created' });
    }
    if (writes.size === 0) return results;

    const rows = [...writes.values()].map((r) => ({ record: r, metadata: toChromaMetadata(r, r.createdAt) }));
    // Chroma merges metadata on upsert: a key the new version drops would stay unless the row goes first.
    const rewritten = rows
      .filter(({ record, metadata }) => {
        const stored = existing.get(record.id);
        return stored !== undefined && Object.keys(stored).some((k) => !(k in metadata));
      })
      .map(({ record }) => record.id);
    const maxBatch = await this.maxBatchSize();
    for (const part of chunks(rewritten, maxBatch)) {
      await this.call('upsert', () => collection.delete({ ids: part }));
    }
    for (const part of chunks(rows, maxBatch)) {
      await this.call('upsert', () =>
        collection.upsert({
          ids: part.map((r) => r.record.id),
          embeddings: part.map((r) => Array.from(r.record.embedding)),
          documents: part.map((r) => r.record.content),
          metadatas: part.map((r) => r.metadata),
        }),
      );
    }
    const count = (status: UpsertResult['status']) => results.filter((r) => r.status === status).length;
    this.log.debug(
      {
        requested: records.length,
        created: count('created'),
        updated: count('updated'),
        duplicates: count('duplicate'),
      },
      'memories upserted',
    );
    return results;
  }

  async search(vector: Float32Array | number[], k: number, filter: MemoryFilter): Promise<SearchHit[]> {
    if (!Number.isInteger(k) || k < 1) throw new ValidationError('k must be a positive integer', { k });
    const collection = await this.ready();
    const result = await this.call('search', () =>
      collection.query({
        queryEmbeddings: [Array.from(vector)],
        nResults: k,
        where: toChromaWhere(filter),
        include: ['documents', 'metadatas', 'distances'],
      }),
    );
    const ids = result.ids[0] ?? [];
    return ids.map((id, i) => ({
      ...fromChroma(id, result.documents[0]?.[i], result.metadatas[0]?.[i]),
      similarity: 1 - (result.distances[0]?.[i] ?? 1),
    }));
  }

  async get(userId: string, id: string): Promise<Memory | null> {
    const collection = await this.ready();
    const rows = await this.getRows(
      collection,
      { ids: [id], where: toChromaWhere({ user_id: userId }), include: ['documents', 'metadatas'] },
      'get',
    );
    const row = rows[0];
    return row ? fromChroma(row.id, row.document, row.metadata) : null;
  }

  async list(filter: MemoryFilter, page: Page): Promise<ListResult> {
    if (
      !Number.isInteger(page.limit) ||
      page.limit < 1 ||
      !Number.isInteger(page.offset) ||
      page.offset < 0
    ) {
      throw new ValidationError('page limit must be a positive integer and offset a non-negative integer', {
        ...page,
      });
    }
    const collection = await this.ready();
    // Chroma's get has no ORDER BY: sort the whole scope here, then fetch the page.
    const scope = await this.getRows(
      collection,
      { where: toChromaWhere(filter), include: ['metadatas'] },
      'list',
    );
    const ordered = scope
      .map((row) => ({ id: row.id, ms: createdAtMs(row.metadata) }))
      .sort((a, b) => b.ms - a.ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const pageIds = ordered.slice(page.offset, page.offset + page.limit).map((e) => e.id);
    if (pageIds.length === 0) return { items: [], total: ordered.length };
    const rows = await this.getRows(
      collection,
      { ids: pageIds, where: toChromaWhere(filter), include: ['documents', 'metadatas'] },
      'list',
    );
    const byId = new Map(rows.map((row) => [row.id, fromChroma(row.id, row.document, row.metadata)]));
    return { items: pageIds.flatMap((id) => byId.get(id) ?? []), total: ordered.length };
  }

  async delete(userId: string, id: string): Promise<boolean> {
    const collection = await this.ready();
    const where = toChromaWhere({ user_id: userId });
    const rows = await this.getRows(collection, { ids: [id], where, include: [] }, 'delete');
    if (rows.length === 0) return false;
    // Chroma 1.0 does not say how many rows a delete removed, hence the read first.
    await this.call('delete', () => collection.delete({ ids: [id], where }));
    this.log.debug({ memoryId: id }, 'memory deleted');
    return true;
  }

  async deleteByScope(filter: MemoryFilter, among: readonly string[] = []): Promise<ScopeDeletion> {
    const collection = await this.ready();
    const where = toChromaWhere(filter);
    const ids = (await this.getRows(collection, { where, include: [] }, 'deleteByScope')).map(
      (row) => row.id,
    );
    for (const part of chunks(ids, await this.maxBatchSize())) {
      await this.call('deleteByScope', () => collection.delete({ ids: part, where }));
    }
    this.log.debug({ deleted: ids.length }, 'memories deleted by scope');
    const removed = new Set(ids);
    return { count: ids.length, among: among.filter((id) => removed.has(id)) };
  }

  async stats(filter: MemoryFilter): Promise<MemoryStats> {
    const collection = await this.ready();
    const rows = await this.getRows(
      collection,
      { where: toChromaWhere(filter), include: ['metadatas'] },
      'stats',
    );
    const stats: MemoryStats = { total: rows.length, by_content_type: {}, by_session: {}, by_project: {} };
    const add = (counts: Record<string, number>, key: string | null) => {
      if (key !== null) counts[key] = (counts[key] ?? 0) + 1;
    };
    for (const row of rows) {
      const memory = fromChroma(row.id, null, row.metadata);
      add(stats.by_content_type, memory.content_type);
      add(stats.by_session, memory.session_id);
      add(stats.by_project, memory.project);
    }
    return stats;
  }

  async status(): Promise<StoreStatus> {
    try {
      const version = await this.call('status', () => this.client.version());
      // Report without creating: status() must not change the server.
      const collection = this.collection ? await this.collection : await this.findCollection();
      if (!collection) {
        return {
          backend: 'chroma',
          reachable: true,
          memory_count: 0,
          index: `collection ${this.collectionName}: not created yet`,
          versions: { chroma: version },
        };
      }
      const count = await this.call('status', () => collection.count());
      const hnsw = collection.configuration.hnsw;
      const index = hnsw
        ? `hnsw (space=${hnsw.space ?? 'l2'}, max_neighbors=${hnsw.max_neighbors ?? '?'}, ` +
          `ef_construction=${hnsw.ef_construction ?? '?'}, ef_search=${hnsw.ef_search ?? '?'})`
        : JSON.stringify(collection.configuration);
      return {
        backend: 'chroma',
        reachable: true,
        memory_count: count,
        index: `collection ${this.collectionName}: ${index}`,
        versions: { chroma: version },
      };
    } catch (error) {
      return {
        backend: 'chroma',
        reachable: false,
        error: error instanceof Error ? error.message : String(error),
      };
    }
  }

  async close(): Promise<void> {
    // The client holds no connections of its own (fetch pools them); forget the collection handle.
    this.collection = undefined;
  }

  /** The collection, created on first use; a failed attempt is retried by the next call. */
  private ready(): Promise<Collection> {
    this.collection ??= this.openCollection().catch((error: unknown) => {
      this.collection = undefined;
      throw error;
    });
    return this.collection;
  }

  private async openCollection(): Promise<Collection> {
    const metadata = this.options.embeddingModel
      ? { embedding_model: this.options.embeddingModel }
      : undefined;
    const collection = await this.call('initialize', () =>
      this.client.getOrCreateCollection({
        name: this.collectionName,
        embeddingFunction: null,
        configuration: {
          hnsw: {
            space: 'cosine',
            max_neighbors: this.hnsw.maxNeighbors,
            ef_construction: this.hnsw.efConstruction,
            ef_search: this.hnsw.efSearch,
          },
        },
        metadata,
      }),
    );
    // An existing collection keeps its configuration: make sure similarities mean what we say.
    const space =
      collection.configuration.hnsw?.space ??
      collection.configuration.spann?.space ??
      collection.metadata?.['hnsw:space'];
    if (space !== 'cosine') {
      throw new ConflictError(
        `Chroma collection "${this.collectionName}" uses the ${String(space ?? 'l2')} distance; cosine is required`,
        { collection: this.collectionName, space: space ?? null },
        'collection_misconfigured',
      );
    }
    if (collection.configuration.hnsw && collection.configuration.hnsw.ef_search !== this.hnsw.efSearch) {
      const efSearch = this.hnsw.efSearch;
      await this.call('initialize', () =>
        collection.modify({ configuration: { hnsw: { ef_search: efSearch } } }),
      );
      this.log.info({ efSearch }, 'chroma ef_search updated');
    }
    const model = collection.metadata?.embedding_model;
    if (this.options.embeddingModel && model && model !== this.options.embeddingModel) {
      this.log.warn(
        { collectionModel: model, embeddingModel: this.options.embeddingModel },
        'collection was made for another embedding model',
      );
    }
    this.log.info({ space }, 'chroma collection ready');
    return collection;
  }

  private async findCollection(): Promise<Collection | null> {
    try {
      return await this.client.getCollection({ name: this.collectionName });
    } catch (error) {
      if (error instanceof ChromaNotFoundError) return null;
      throw this.translate(error, 'status');
    }
  }

  private async maxBatchSize(): Promise<number> {
    const size = await this.call('preflight', () => this.client.getMaxBatchSize());
    return size > 0 ? size : 1000;
  }

  private async getRows(
    collection: Collection,
    args: { ids?: string[]; where?: Where; include: ('documents' | 'metadatas')[] },
    operation: string,
  ): Promise<Row[]> {
    const result = await this.call(operation, () => collection.get(args));
    return result.ids.map((id, i) => ({ id, document: result.documents[i], metadata: result.metadatas[i] }));
  }

  /** Runs one driver call, translating its failures into the service's errors. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.translate(error, operation);
    }
  }

  private translate(error: unknown, operation: string): Error {
    if (error instanceof AppError) return error;
    // The client names the request's internal URL ("Bad request to http://…/get with status: …"):
    // answers to API callers never carry it.
    const message = (error instanceof Error ? error.message : String(error)).replace(
      /\s+to\s+https?:\/\/\S+/g,
      '',
    );
    const details = { backend: 'chroma', operation };
    if (
      error instanceof ChromaConnectionError ||
      (error instanceof TypeError && /fetch failed/i.test(message)) ||
      (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError'))
    ) {
      this.log.debug({ operation, err: message }, 'chroma unreachable');
      return new UnavailableError(`Chroma does not answer at ${this.options.url}`, {
        cause: error,
        details,
        code: 'backend_unavailable',
      });
    }
    if (error instanceof ChromaNotFoundError) {
      // The collection was deleted behind our back: open (and recreate) it on the next call.
      this.collection = undefined;
      return new UnavailableError(`Chroma collection "${this.collectionName}" was not found`, {
        cause: error,
        details,
        code: 'backend_unavailable',
      });
    }
    if (
      error instanceof ChromaServerError ||
      error instanceof ChromaRateLimitError ||
      error instanceof ChromaQuotaExceededError
    ) {
      return new UnavailableError(`Chroma failed: ${message}`, {
        cause: error,
        details,
        code: 'backend_error',
      });
    }
    if (
      error instanceof ChromaClientError ||
      error instanceof ChromaValueError ||
      error instanceof InvalidArgumentError ||
      error instanceof ChromaUniqueError
    ) {
      return new ValidationError(`Chroma rejected the ${operation}: ${message}`, details, 'backend_rejected');
    }
    return new AppError('backend_error', `Chroma ${operation} failed: ${message}`, 502, details, {
      cause: error,
    });
  }
}
