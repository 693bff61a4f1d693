import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Pool, PoolClient } from 'pg';
import { AppError } from '../../errors';
import type { Logger } from '../../logging';
import { quoteIdent } from './pg-errors';

/** A versioned SQL file: `0001_init.sql` has version `0001` and name `init`. */
export interface MigrationFile {
  version: string;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export interface MigrationRunnerOptions {
  /** Schema that receives the tables; created when missing. @defaultValue `'public'` */
  schema?: string;
  /** Folder of the SQL files. @defaultValue the repository's `infra/migrations`, found upwards from this file */
  migrationsDir?: string;
}

const MIGRATION_FILE = /^(\d{4,})_([A-Za-z0-9_-]+)\.sql$/;

/** Finds `infra/migrations` in the nearest folder above `from` that has one. */
export function findMigrationsDir(from = __dirname): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'infra', 'migrations');
    if (existsSync(candidate) && statSync(candidate).isDirectory()) return candidate;
    if (path.dirname(dir) === dir) break;
  }
  throw new AppError('migrations_not_found', `no infra/migrations folder above ${from}; pass migrationsDir`);
}

/** Reads the migration files of a folder, ordered by version. */
export function readMigrations(dir: string): MigrationFile[] {
  const files = readdirSync(dir)
    .filter((f) => MIGRATION_FILE.test(f))
    .sort();
  const seen = new Set<string>();
  return files.map((file) => {
    const [, version, name] = MIGRATION_FILE.exec(file)!;
    if (seen.has(version!))
      throw new AppError('migrations_invalid', `two migrations share version ${version}`);
    seen.add(version!);
    const sql = readFileSync(path.join(dir, file), 'utf8');
    return {
      version: version!,
      name: name!,
      file,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    };
  });
}

/**
 * Applies the pending migrations of `infra/migrations` to one schema, each in its own transaction,
 * and records them in `<schema>.schema_migrations`. A PostgreSQL advisory lock (one per schema) makes
 * services that start together wait for each other instead of racing. Returns the versions applied.
 */
export async function runMigrations(
  pool: Pool,
  options: MigrationRunnerOptions,
  logger: Logger,
): Promise<string[]> {
  const log = logger.child({ module: 'migration-runner' });
  const schema = options.schema ?? 'public';
  const ident = quoteIdent(schema);
  const migrations = readMigrations(options.migrationsDir ?? findMigrationsDir());
  const lockKey = `memory-service:migrations:${schema}`;

  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (error: Error) => (broken = error);
  client.on('error', onError);
  let locked = false;
  try {
    await client.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [lockKey]);
    locked = true;
    const searchPath = await prepareSchema(client, schema);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${ident}.schema_migrations (
         version text PRIMARY KEY,
         name text NOT NULL,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const applied = await client.query<{ version: string; checksum: string }>(
      `SELECT version, checksum FROM ${ident}.schema_migrations`,
    );
    const appliedChecksums = new Map(applied.rows.map((r) => [r.version, r.checksum]));

    const done: string[] = [];
    for (const migration of migrations) {
      const previous = appliedChecksums.get(migration.version);
      if (previous !== undefined) {
        if (previous !== migration.checksum) {
          log.warn({ schema, version: migration.version }, 'applied migration file has changed since it ran');
        }
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query('SELECT set_config($1, $2, true)', ['search_path', searchPath]);
        await client.query(migration.sql);
        await client.query(
          `INSERT INTO ${ident}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
          [migration.version, migration.name, migration.checksum],
        );
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
        throw new AppError(
          'migration_failed',
          `migration ${migration.file} failed: ${(error as Error).message}`,
          500,
          {
            schema,
            version: migration.version,
          },
          { cause: error },
        );
      }
      log.info({ schema, version: migration.version, name: migration.name }, 'migration applied');
      done.push(migration.version);
    }
    return done;
  } finally {
    if (locked)
      await client
        .query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockKey])
        .catch(() => undefined);
    client.off('error', onError);
    client.release(broken);
  }
}

/**
 * Creates the schema and the `vector` extension when missing; returns the search_path migrations run
 * with: the target schema, then the schema that holds `vector` (usually `public`).
 */
async function prepareSchema(client: PoolClient, schema: string): Promise<string> {
  const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (exists.rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  let ext = await client.query<{ nspname: string }>(
    `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`,
  );
  if (ext.rowCount === 0) {
    try {
      await client.query('CREATE EXTENSION IF NOT EXISTS vector');
    } catch (error) {
      throw new AppError(
        'pgvector_missing',
        `the vector extension is not installed and could not be created: ${(error as Error).message}`,
        500,
        undefined,
        { cause: error },
      );
    }
    ext = await client.query<{ nspname: string }>(
      `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`,
    );
  }
  const extSchema = ext.rows[0]?.nspname ?? 'public';
  return [...new Set([schema, extSchema])].map(quoteIdent).join(', ');
}
