export * from './pgvector-memory.store';
export {
  runMigrations,
  findMigrationsDir,
  readMigrations,
  type MigrationFile,
  type MigrationRunnerOptions,
} from './migration-runner';
export { PGVECTOR_RECOMMENDED, pgvectorWarnings } from './pgvector-version';
export { encodeVectorArray, toVectorSql } from './vector-sql';
