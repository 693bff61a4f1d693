import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ChromaClient } from 'chromadb';
import { Client } from 'pg';

/** Where the servers started by infra/local/up answer (or what the environment says). */
export const servers = {
  databaseUrl: process.env.DATABASE_URL ?? 'postgres://memory:memory@127.0.0.1:5432/memory',
  redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  chromaUrl: process.env.CHROMA_URL ?? 'http://127.0.0.1:8100',
};

export const repoRoot = path.resolve(__dirname, '../..');

/** The model tests embed with: EMBEDDING_MODEL, else the shared stand-in beside the project. */
export const testModel = {
  model: process.env.EMBEDDING_MODEL ?? path.resolve(repoRoot, '../shared/models/minilm-l6-standin'),
  dtype: (process.env.EMBEDDING_DTYPE as 'q8' | 'fp32' | undefined) ?? 'q8',
};

/** A short random name for per-test-file isolation (schema, collection, queue prefix). */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

/** Creates an empty PostgreSQL schema for one test file; returns it and a function that drops it. */
export async function createTestSchema(prefix = 't'): Promise<{ schema: string; drop: () => Promise<void> }> {
  const schema = uniqueName(prefix).toLowerCase();
  const client = new Client({ connectionString: servers.databaseUrl });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.end();
  return {
    schema,
    drop: async () => {
      const c = new Client({ connectionString: servers.databaseUrl });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    },
  };
}

/** A client of the test Chroma server, for what the stores do not expose (raw reads, deletes). */
export function rawChromaClient(): ChromaClient {
  const url = new URL(servers.chromaUrl);
  return new ChromaClient({
    host: url.hostname,
    port: Number(url.port || 80),
    ssl: url.protocol === 'https:',
  });
}

/** Deletes the named test collections, if they exist, so that test runs leave nothing in Chroma. */
export async function dropTestCollections(...names: string[]): Promise<void> {
  const client = rawChromaClient();
  for (const name of names) await client.deleteCollection({ name }).catch(() => undefined);
}

/** mulberry32 (the bench's): a test stores the same data every run and a failure replays. */
export { seededRandom } from '../../bench/lib/stats';
