import type { Redis } from 'ioredis';
import { ConflictError, orUnavailable, RedisDown } from '../errors';
import type { EmbedderInfo } from '../embedding/embedder';
import type { BackendName } from '../storage/memory-store';

/** The backend every service uses, decided once and recorded. */
export interface BackendChoice {
  backend: BackendName;
  /** Why, e.g. "MEMORY_BACKEND=auto, DATABASE_URL unset → chroma". */
  reason: string;
  decided_at: string;
}

/**
 * Facts that every service of one deployment must agree on, kept in Redis under the queue prefix:
 * the storage backend and the embedding model. The first service to record a fact wins (SET NX);
 * the others read it, so no two services ever write to and read from different places.
 */
export class DeploymentRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(name: 'backend' | 'embedding-model'): string {
    return `${this.prefix}:deployment:${name}`;
  }

  private async read<T>(name: 'backend' | 'embedding-model'): Promise<T | null> {
    const raw = await orUnavailable(() => this.redis.get(this.key(name)), RedisDown.state);
    return raw ? (JSON.parse(raw) as T) : null;
  }

  /** Records `value` unless a value exists; returns the one that holds. */
  private async recordIfAbsent<T>(name: 'backend' | 'embedding-model', value: T): Promise<T> {
    const set = await orUnavailable(
      () => this.redis.set(this.key(name), JSON.stringify(value), 'NX'),
      RedisDown.state,
    );
    return set === 'OK' ? value : ((await this.read<T>(name)) ?? value);
  }

  getBackend(): Promise<BackendChoice | null> {
    return this.read<BackendChoice>('backend');
  }

  recordBackend(choice: BackendChoice): Promise<BackendChoice> {
    return this.recordIfAbsent('backend', choice);
  }

  /** The explicit switch (after a verified migration): overwrites the recorded backend. */
  async switchBackend(choice: BackendChoice): Promise<void> {
    await this.redis.set(this.key('backend'), JSON.stringify(choice));
  }

  /**
   * Records the embedding model of the first service that loads one, and fails when a later one
   * loaded a different model or dtype: vectors of two models must never meet in one store.
   */
  async checkEmbeddingModel(info: EmbedderInfo): Promise<void> {
    const held = await this.recordIfAbsent('embedding-model', info);
    if (held.model !== info.model || held.dtype !== info.dtype || held.dimension !== info.dimension) {
      throw new ConflictError(
        `this deployment embeds with ${held.model} (${held.dtype}, ${held.dimension}-d) but this service loaded ${info.model} (${info.dtype}); set EMBEDDING_MODEL and EMBEDDING_DTYPE to match`,
        { recorded: held, loaded: info },
        'embedding_model_mismatch',
      );
    }
  }

  getEmbeddingModel(): Promise<EmbedderInfo | null> {
    return this.read<EmbedderInfo>('embedding-model');
  }
}
