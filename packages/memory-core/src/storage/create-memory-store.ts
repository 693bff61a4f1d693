import type { BackendChoice } from '../deployment/deployment-registry';
import { ValidationError } from '../errors';
import type { Logger } from '../logging';
import { ChromaMemoryStore } from './chroma';
import type { MemoryStore } from './memory-store';
import { PgvectorMemoryStore } from './pgvector';

export interface StoreSettings {
  DATABASE_URL?: string | undefined;
  DATABASE_SCHEMA: string;
  DATABASE_POOL_SIZE: number;
  HNSW_EF_SEARCH: number;
  HNSW_OVERFETCH: number;
  HNSW_TENANT_EF_SEARCH: number;
  CHROMA_URL: string;
  CHROMA_COLLECTION: string;
}

/** The adapter for the chosen backend. Only services' `main.ts` call this. */
export function createMemoryStore(
  choice: BackendChoice,
  settings: StoreSettings,
  logger: Logger,
): MemoryStore {
  if (choice.backend === 'postgres') {
    if (!settings.DATABASE_URL) {
      // E.g. a deployment recorded as postgres, started without DATABASE_URL: a setting to fix, not to wait for.
      throw new ValidationError(
        `this deployment uses postgres (${choice.reason}) but DATABASE_URL is unset`,
        undefined,
        'invalid_config',
      );
    }
    return new PgvectorMemoryStore(
      {
        connectionString: settings.DATABASE_URL,
        schema: settings.DATABASE_SCHEMA,
        efSearch: settings.HNSW_EF_SEARCH,
        overfetch: settings.HNSW_OVERFETCH,
        tenantEfSearch: settings.HNSW_TENANT_EF_SEARCH,
        poolSize: settings.DATABASE_POOL_SIZE,
      },
      logger,
    );
  }
  return new ChromaMemoryStore({ url: settings.CHROMA_URL, collection: settings.CHROMA_COLLECTION }, logger);
}
