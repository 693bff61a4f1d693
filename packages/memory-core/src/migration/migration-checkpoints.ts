import type { Redis } from 'ioredis';
import { orUnavailable, RedisDown } from '../errors';
import type { MigrationResult, ScopeCounts } from '../jobs/job-catalogue';

/** How long a migration's checkpoint and record stay in Redis. */
export const CHECKPOINT_TTL_SECONDS = 90 * 24 * 3600;

/**
 * Where a migration stands, saved after every batch: the next Chroma offset and everything counted so
 * far. The `result` part is what the job returns once it finishes.
 */
export interface MigrationCheckpoint {
  /** Hash of the options that decide which records are read and how: a resumed run must use the same. */
  fingerprint: string;
  /** Next offset to read in the Chroma selection. */
  offset: number;
  /** Records that were skipped as duplicate content, per user and scope (verification accounts for them). */
  duplicates: Record<string, ScopeCounts>;
  result: MigrationResult;
}

/** The checkpoint store port. */
export interface MigrationCheckpoints {
  load(migrationId: string): Promise<MigrationCheckpoint | null>;
  save(migrationId: string, checkpoint: MigrationCheckpoint): Promise<void>;
  /** Asks a running migration to stop at its next batch (a rollback does this first). */
  requestCancel(migrationId: string): Promise<void>;
  isCancelRequested(migrationId: string): Promise<boolean>;
}

/**
 * Checkpoints in Redis, under the queue prefix next to the migration job itself (the same hash slot
 * on Redis Cluster). Redis rather than a PostgreSQL table because
 * - a dry run writes nothing at all to PostgreSQL, and a migration that fails because PostgreSQL is
 *   down still leaves its record;
 * - the checkpoint belongs with the job state BullMQ already keeps there, and `--status` needs only Redis;
 * - bookkeeping needs no schema migration and no SQL outside the pgvector adapter.
 * A batch's commit and its checkpoint are therefore not atomic. That is harmless: every row carries
 * the migration id, so a batch redone after a crash recognises the rows it already wrote and counts
 * them as written, not again and not as skipped.
 */
export class RedisMigrationCheckpoints implements MigrationCheckpoints {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(migrationId: string, part: 'checkpoint' | 'cancel'): string {
    return `${this.prefix}:migration:${migrationId}:${part}`;
  }

  async load(migrationId: string): Promise<MigrationCheckpoint | null> {
    const raw = await this.run(() => this.redis.get(this.key(migrationId, 'checkpoint')));
    return raw ? (JSON.parse(raw) as MigrationCheckpoint) : null;
  }

  async save(migrationId: string, checkpoint: MigrationCheckpoint): Promise<void> {
    await this.run(() =>
      this.redis.set(
        this.key(migrationId, 'checkpoint'),
        JSON.stringify(checkpoint),
        'EX',
        CHECKPOINT_TTL_SECONDS,
      ),
    );
  }

  async requestCancel(migrationId: string): Promise<void> {
    await this.run(() => this.redis.set(this.key(migrationId, 'cancel'), '1', 'EX', CHECKPOINT_TTL_SECONDS));
  }

  async isCancelRequested(migrationId: string): Promise<boolean> {
    return (await this.run(() => this.redis.exists(this.key(migrationId, 'cancel')))) === 1;
  }

  private run<T>(command: () => Promise<T>): Promise<T> {
    return orUnavailable(command, RedisDown.state);
  }
}

/** Checkpoints in process memory, for tests and one-off runs that need no resume. */
export class InMemoryMigrationCheckpoints implements MigrationCheckpoints {
  private readonly checkpoints = new Map<string, string>();
  private readonly cancelled = new Set<string>();

  async load(migrationId: string): Promise<MigrationCheckpoint | null> {
    const raw = this.checkpoints.get(migrationId);
    return raw ? (JSON.parse(raw) as MigrationCheckpoint) : null;
  }

  async save(migrationId: string, checkpoint: MigrationCheckpoint): Promise<void> {
    this.checkpoints.set(migrationId, JSON.stringify(checkpoint));
  }

  async requestCancel(migrationId: string): Promise<void> {
    this.cancelled.add(migrationId);
  }

  async isCancelRequested(migrationId: string): Promise<boolean> {
    return this.cancelled.has(migrationId);
  }
}
