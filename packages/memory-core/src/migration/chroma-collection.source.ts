import {
  ChromaClient,
  ChromaConnectionError,
  ChromaNotFoundError,
  type Collection,
  type EmbeddingFunction,
  type Where,
} from 'chromadb';
import { AppError, NotFoundError, UnavailableError, ValidationError } from '../errors';
import type { SourceRow } from './record-mapper';

/** A collection as the migration sees it before reading. */
export interface SourceCollectionInfo {
  name: string;
  count: number;
  metadata: Record<string, unknown> | null;
}

export interface ReadOptions {
  /** Equality on metadata keys, applied by the source. */
  where?: Record<string, string>;
  /** Whether to read the vectors. */
  embeddings: boolean;
}

/** Where the migration reads from: pages of records in a stable order. */
export interface MigrationSource {
  /** Fails with `NotFoundError` (`collection_not_found`) when the collection does not exist. */
  describe(collection: string): Promise<SourceCollectionInfo>;
  count(collection: string, where?: Record<string, string>): Promise<number>;
  page(collection: string, offset: number, limit: number, options: ReadOptions): Promise<SourceRow[]>;
  getByIds(collection: string, ids: string[], options: ReadOptions): Promise<SourceRow[]>;
}

/**
 * Given to `getCollection` so that the client does not look for the collection's own embedding
 * function (and warn when its package is missing): the migration reads stored vectors only.
 */
const NO_EMBEDDING: EmbeddingFunction = {
  name: 'none',
  generate: () => Promise.reject(new Error('the migration never asks Chroma to embed')),
};

/** Ids read per request when counting a filtered selection. */
const COUNT_PAGE = 10_000;

function toWhere(where: Record<string, string> | undefined): Where | undefined {
  const entries = Object.entries(where ?? {});
  if (entries.length === 0) return undefined;
  const conditions = entries.map(([key, value]) => ({ [key]: { $eq: value } }) as Where);
  return conditions.length === 1 ? conditions[0] : { $and: conditions };
}

/**
 * Reads a Chroma collection through the chromadb 3.x client without creating or changing anything.
 * `get` with `limit`/`offset` returns records in insertion order, so pages stay stable while the
 * collection only grows; a record deleted mid-migration shifts later pages, which verification reports
 * (the migration README: writes while it runs).
 */
export class ChromaCollectionSource implements MigrationSource {
  private readonly client: ChromaClient;
  private readonly collections = new Map<string, Collection>();

  constructor(private readonly url: string) {
    const parsed = new URL(url);
    const ssl = parsed.protocol === 'https:';
    this.client = new ChromaClient({
      host: parsed.hostname,
      port: parsed.port ? Number(parsed.port) : ssl ? 443 : 80,
      ssl,
    });
  }

  async describe(collection: string): Promise<SourceCollectionInfo> {
    const handle = await this.open(collection);
    const count = await this.call(collection, () => handle.count());
    return {
      name: collection,
      count,
      metadata: (handle.metadata as Record<string, unknown> | undefined) ?? null,
    };
  }

  async count(collection: string, where?: Record<string, string>): Promise<number> {
    const handle = await this.open(collection);
    const chromaWhere = toWhere(where);
    if (!chromaWhere) return this.call(collection, () => handle.count());
    let total = 0;
    for (let offset = 0; ; offset += COUNT_PAGE) {
      const result = await this.call(collection, () =>
        handle.get({ where: chromaWhere, limit: COUNT_PAGE, offset, include: [] }),
      );
      total += result.ids.length;
      if (result.ids.length < COUNT_PAGE) return total;
    }
  }

  async page(collection: string, offset: number, limit: number, options: ReadOptions): Promise<SourceRow[]> {
    const handle = await this.open(collection);
    const result = await this.call(collection, () =>
      handle.get({
        where: toWhere(options.where),
        limit,
        offset,
        include: options.embeddings ? ['documents', 'metadatas', 'embeddings'] : ['documents', 'metadatas'],
      }),
    );
    return this.rows(result);
  }

  async getByIds(collection: string, ids: string[], options: ReadOptions): Promise<SourceRow[]> {
    if (ids.length === 0) return [];
    const handle = await this.open(collection);
    const result = await this.call(collection, () =>
      handle.get({
        ids,
        include: options.embeddings ? ['documents', 'metadatas', 'embeddings'] : ['documents', 'metadatas'],
      }),
    );
    return this.rows(result);
  }

  private rows(result: Awaited<ReturnType<Collection['get']>>): SourceRow[] {
    return result.ids.map((id, i) => ({
      id,
      document: result.documents[i],
      metadata: result.metadatas[i] as Record<string, unknown> | null | undefined,
      embedding: result.embeddings[i] ?? null,
    }));
  }

  private async open(collection: string): Promise<Collection> {
    const known = this.collections.get(collection);
    if (known) return known;
    // Read only: a missing collection is an error here, never created.
    const handle = await this.call(collection, () =>
      this.client.getCollection({ name: collection, embeddingFunction: NO_EMBEDDING }),
    );
    this.collections.set(collection, handle);
    return handle;
  }

  private async call<T>(collection: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw this.translate(error, collection);
    }
  }

  private translate(error: unknown, collection: string): Error {
    if (error instanceof AppError) return error;
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof ChromaNotFoundError) {
      this.collections.delete(collection);
      return new NotFoundError(
        `Chroma collection "${collection}" does not exist`,
        { collection },
        'collection_not_found',
      );
    }
    if (
      error instanceof ChromaConnectionError ||
      (error instanceof TypeError && /fetch failed/i.test(message)) ||
      (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError'))
    ) {
      return new UnavailableError(`Chroma does not answer at ${this.url}`, {
        cause: error,
        code: 'source_unavailable',
        details: { collection },
      });
    }
    if (error instanceof Error && error.name === 'ChromaValueError') {
      return new ValidationError(`Chroma rejected the read: ${message}`, { collection }, 'source_rejected');
    }
    return new UnavailableError(`Chroma failed while reading "${collection}": ${message}`, {
      cause: error,
      code: 'source_error',
      details: { collection },
    });
  }
}
