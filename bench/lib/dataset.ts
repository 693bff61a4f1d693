import { createHash } from 'node:crypto';
import { ChromaClient, type Collection, type Metadata as ChromaMetadata } from 'chromadb';
import { Pool } from 'pg';
import {
  ChromaMemoryStore,
  encodeVectorArray,
  PGVECTOR_HNSW_INDEX,
  PgvectorMemoryStore,
  TENANT_INDEX_PREFIX,
  type Logger,
  type MemoryRecord,
  type PgvectorStoreOptions,
} from 'memory-core';
import { servers } from './paths';
import { gaussian, nowMs, seededRandom } from './stats';

/**
 * The search data set. Record i belongs to user `bench-u{i % users}` and to a session of
 * `sessionSize` memories of that user; its vector is a real embedding of a corpus text, mixed with a
 * second one and some noise, then normalised, so that large sets keep the shape of real embeddings
 * without embedding a million texts; its content names the texts it was made from.
 */
export interface DatasetLayout {
  users: number;
  sessionSize: number;
  /** Weight of the second embedding mixed into each vector. */
  mix: number;
  /** Standard deviation of the Gaussian noise added per dimension. */
  noise: number;
}

export const DEFAULT_LAYOUT: DatasetLayout = { users: 10, sessionSize: 500, mix: 0.35, noise: 0.03 };

export const EMBEDDING_MODEL_NAME = 'bench-synthetic (minilm-l6 embeddings mixed)';

export interface SyntheticRecord {
  id: string;
  user: string;
  session: string;
  content: string;
  hash: string;
  vector: Float32Array;
  createdAt: string;
}

export function recordId(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

export function userOf(i: number, layout: DatasetLayout): string {
  return `bench-u${i % layout.users}`;
}

export function sessionOf(i: number, layout: DatasetLayout): string {
  return `s${Math.floor(i / (layout.users * layout.sessionSize))}`;
}

const EPOCH = Date.parse('2025-01-01T00:00:00.000Z');

export class SyntheticDataset {
  constructor(
    private readonly baseTexts: string[],
    private readonly baseVectors: Float32Array[],
    readonly layout: DatasetLayout = DEFAULT_LAYOUT,
  ) {}

  get baseSize(): number {
    return this.baseVectors.length;
  }

  record(i: number): SyntheticRecord {
    const random = seededRandom(Math.imul(i + 1, 2_654_435_761) ^ 0x5bd1e995);
    const normal = gaussian(random);
    const k = this.baseVectors.length;
    const p = Math.floor(random() * k);
    const q = Math.floor(random() * k);
    const a = this.baseVectors[p]!;
    const b = this.baseVectors[q]!;
    const v = new Float32Array(a.length);
    let norm = 0;
    for (let d = 0; d < a.length; d += 1) {
      const x = a[d]! + this.layout.mix * b[d]! + this.layout.noise * normal();
      v[d] = x;
      norm += x * x;
    }
    norm = Math.sqrt(norm);
    for (let d = 0; d < v.length; d += 1) v[d] = v[d]! / norm;
    const content = `${this.baseTexts[p]} / ${this.baseTexts[q]} (#${i})`;
    return {
      id: recordId(i),
      user: userOf(i, this.layout),
      session: sessionOf(i, this.layout),
      content,
      hash: createHash('sha256').update(content, 'utf8').digest('hex'),
      vector: v,
      createdAt: new Date(EPOCH + i * 1000).toISOString(),
    };
  }

  records(from: number, to: number): SyntheticRecord[] {
    const out: SyntheticRecord[] = [];
    for (let i = from; i < to; i += 1) out.push(this.record(i));
    return out;
  }
}

/** A record as the adapter's `upsert` takes it (what the worker writes). */
export function asMemoryRecord(r: SyntheticRecord, model: string): MemoryRecord {
  return {
    id: r.id,
    user_id: r.user,
    session_id: r.session,
    session_type: null,
    project: null,
    content: r.content,
    content_type: 'note',
    metadata: {},
    content_hash: r.hash,
    embedding: r.vector,
    embedding_model: model,
    created_at: r.createdAt,
    updated_at: r.createdAt,
  };
}

/** An HNSW graph's build settings: neighbours per node and the candidate list of each insert. */
export interface GraphSetting {
  m: number;
  efConstruction: number;
}

const GRAPH_SETTINGS = /WITH \(m = (\d+), ef_construction = (\d+)\)$/;

/** The settings of the HNSW index the store defines (`PGVECTOR_HNSW_INDEX`). */
export function shippedGraph(): GraphSetting {
  const match = GRAPH_SETTINGS.exec(PGVECTOR_HNSW_INDEX.method);
  if (!match) throw new Error(`unexpected HNSW index definition: ${PGVECTOR_HNSW_INDEX.method}`);
  return { m: Number(match[1]), efConstruction: Number(match[2]) };
}

/** The store's HNSW index definition with other graph settings (the operator class stays). */
export function hnswMethod(graph: GraphSetting): string {
  shippedGraph(); // throws when the store's definition no longer ends in the WITH clause replaced here
  return PGVECTOR_HNSW_INDEX.method.replace(
    GRAPH_SETTINGS,
    `WITH (m = ${graph.m}, ef_construction = ${graph.efConstruction})`,
  );
}

/** A PostgreSQL schema holding one data set, created with the store's own migrations. */
export class BenchSchema {
  readonly pool: Pool;
  private constructor(
    readonly schema: string,
    poolSize: number,
  ) {
    this.pool = new Pool({ connectionString: servers.databaseUrl, max: poolSize, application_name: 'bench' });
  }

  static async create(schema: string, logger: Logger, poolSize = 8): Promise<BenchSchema> {
    const db = new BenchSchema(schema, poolSize);
    await db.pool.query(`CREATE SCHEMA ${schema}`);
    const store = new PgvectorMemoryStore({ pool: db.pool, schema }, logger);
    await store.initialize();
    return db;
  }

  /** A schema that exists already (made by a store), for writing straight to its table. */
  static open(schema: string, poolSize = 2): BenchSchema {
    return new BenchSchema(schema, poolSize);
  }

  /** An adapter on this schema (its own small pool, as a service would have). */
  store(
    logger: Logger,
    options: Pick<
      PgvectorStoreOptions,
      'efSearch' | 'tenantEfSearch' | 'overfetch' | 'exactScanThreshold' | 'sparseExactScan' | 'poolSize'
    > = {},
  ) {
    return new PgvectorMemoryStore(
      {
        ...options,
        connectionString: servers.databaseUrl,
        schema: this.schema,
        poolSize: options.poolSize ?? 10,
      },
      logger,
    );
  }

  async count(where = 'true', values: unknown[] = []): Promise<number> {
    const r = await this.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${this.schema}.memories WHERE ${where}`,
      values,
    );
    return Number(r.rows[0]?.n ?? 0);
  }

  /**
   * Records `from` to `to` of a data set, straight to the table (`insertDirect`), building only
   * `chunk` records in memory at a time.
   */
  async load(
    dataset: { records(from: number, to: number): SyntheticRecord[] },
    from: number,
    to: number,
    chunk: number,
  ): Promise<void> {
    for (let start = from; start < to; start += chunk) {
      await this.insertDirect(dataset.records(start, Math.min(to, start + chunk)));
    }
  }

  /**
   * Writes records with one `INSERT ... SELECT FROM unnest(...)` per chunk, straight to the table,
   * vectors as one binary `vector[]` parameter (as the adapter sends them).
   */
  async insertDirect(records: SyntheticRecord[], chunk = 2000): Promise<void> {
    const s = this.schema;
    const vectorOid = (await this.pool.query<{ oid: number }>(`SELECT 'vector'::regtype::oid::int AS oid`))
      .rows[0]!.oid;
    for (let start = 0; start < records.length; start += chunk) {
      const batch = records.slice(start, start + chunk);
      const users = [...new Set(batch.map((r) => r.user))];
      await this.pool.query(`INSERT INTO ${s}.users (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [
        users,
      ]);
      const sessions = [...new Map(batch.map((r) => [`${r.user}\u0000${r.session}`, r])).values()];
      await this.pool.query(
        `INSERT INTO ${s}.sessions (user_id, id) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`,
        [sessions.map((r) => r.user), sessions.map((r) => r.session)],
      );
      await this.pool.query(
        `INSERT INTO ${s}.memories (id, user_id, session_id, content, content_type, content_hash, embedding,
           embedding_model, created_at, updated_at)
         SELECT id, u, sid, c, 'note', h, e, $7, t, t
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::vector[], $8::timestamptz[])
           AS x(id, u, sid, c, h, e, t)`,
        [
          batch.map((r) => r.id),
          batch.map((r) => r.user),
          batch.map((r) => r.session),
          batch.map((r) => r.content),
          batch.map((r) => r.hash),
          encodeVectorArray(
            batch.map((r) => r.vector),
            vectorOid,
          ),
          EMBEDDING_MODEL_NAME,
          batch.map((r) => r.createdAt),
        ],
      );
    }
  }

  /**
   * `VACUUM (ANALYZE)` of the memories table: sets the visibility map and the planner's statistics
   * now, as autovacuum would some time after a load, so that it does not run during a measurement.
   */
  async vacuum(): Promise<number> {
    const t0 = performance.now();
    await this.pool.query(`VACUUM (ANALYZE) ${this.schema}.memories`);
    return performance.now() - t0;
  }

  async dropHnsw(): Promise<void> {
    await this.pool.query(`DROP INDEX IF EXISTS ${this.schema}.${PGVECTOR_HNSW_INDEX.name}`);
  }

  /**
   * Builds the HNSW index as the store defines it (or with `graph`'s m and ef_construction instead);
   * returns build time and sizes.
   */
  async buildHnsw(
    settings: { maintenanceWorkMem: string; parallelWorkers: number },
    timeoutMs: number,
    graph?: GraphSetting,
  ): Promise<{ ms: number; indexMiB: number; tableMiB: number; completed: boolean; tuplesDone?: number }> {
    const client = await this.pool.connect();
    try {
      await client.query(`SET maintenance_work_mem = '${settings.maintenanceWorkMem}'`);
      await client.query(`SET max_parallel_maintenance_workers = ${settings.parallelWorkers}`);
      await client.query(`SET statement_timeout = ${Math.round(timeoutMs)}`);
      const start = nowMs();
      let completed = true;
      let tuplesDone: number | undefined;
      const progress = setInterval(() => {
        void this.pool
          .query<{ n: string }>(`SELECT tuples_done AS n FROM pg_stat_progress_create_index WHERE pid = $1`, [
            (client as unknown as { processID: number }).processID,
          ])
          .then((r) => {
            if (r.rows[0]) tuplesDone = Number(r.rows[0].n);
          })
          .catch(() => undefined);
      }, 2000);
      try {
        await client.query(
          `CREATE INDEX ${PGVECTOR_HNSW_INDEX.name} ON ${this.schema}.memories USING ${graph ? hnswMethod(graph) : PGVECTOR_HNSW_INDEX.method}`,
        );
      } catch (error) {
        if ((error as { code?: string }).code !== '57014') throw error;
        completed = false;
      } finally {
        clearInterval(progress);
      }
      const ms = nowMs() - start;
      await client.query('RESET statement_timeout');
      await client.query(`ANALYZE ${this.schema}.memories`);
      const sizes = await client.query<{ idx: string | null; tbl: string }>(
        `SELECT pg_relation_size(to_regclass($1)) AS idx, pg_total_relation_size($2::regclass) AS tbl`,
        [`${this.schema}.${PGVECTOR_HNSW_INDEX.name}`, `${this.schema}.memories`],
      );
      const mib = (v: string | null | undefined) => Number(v ?? 0) / 1024 / 1024;
      return {
        ms,
        indexMiB: mib(sizes.rows[0]?.idx),
        tableMiB: mib(sizes.rows[0]?.tbl),
        completed,
        tuplesDone,
      };
    } finally {
      client.release();
    }
  }

  /** Users' own graphs on the memories table (`maintainTenantIndexes`): name and size of each. */
  async tenantIndexes(): Promise<{ name: string; bytes: number }[]> {
    const r = await this.pool.query<{ name: string; bytes: string }>(
      `SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND c.relkind = 'i' AND starts_with(c.relname, $2)`,
      [this.schema, TENANT_INDEX_PREFIX],
    );
    return r.rows.map((row) => ({ name: row.name, bytes: Number(row.bytes) }));
  }

  /** The size of all users' own graphs together, MiB. */
  async tenantIndexesMiB(): Promise<number> {
    return (await this.tenantIndexes()).reduce((a, i) => a + i.bytes, 0) / 1024 / 1024;
  }

  /** The HNSW index's storage options as PostgreSQL holds them (`m=16`, `ef_construction=64`). */
  async hnswOptions(): Promise<string[]> {
    const r = await this.pool.query<{ options: string[] | null }>(
      `SELECT reloptions AS options FROM pg_class WHERE oid = to_regclass($1)`,
      [`${this.schema}.${PGVECTOR_HNSW_INDEX.name}`],
    );
    return r.rows[0]?.options ?? [];
  }

  async drop(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
    await this.pool.end();
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/**
 * A Chroma collection made by `ChromaMemoryStore` (its HNSW settings, cosine space), filled straight
 * through the chromadb client with the metadata layout the adapter writes, so that the adapter
 * searches it as its own.
 */
export class BenchCollection {
  private constructor(
    readonly name: string,
    private readonly client: ChromaClient,
    readonly collection: Collection,
    readonly store: ChromaMemoryStore,
  ) {}

  static async create(name: string, logger: Logger): Promise<BenchCollection> {
    const store = new ChromaMemoryStore({ url: servers.chromaUrl, collection: name }, logger);
    await store.initialize();
    const url = new URL(servers.chromaUrl);
    const client = new ChromaClient({ host: url.hostname, port: Number(url.port || 80), ssl: false });
    const collection = await client.getOrCreateCollection({ name, embeddingFunction: null });
    return new BenchCollection(name, client, collection, store);
  }

  async add(records: SyntheticRecord[], chunk = 1000): Promise<void> {
    for (let start = 0; start < records.length; start += chunk) {
      const batch = records.slice(start, start + chunk);
      await this.collection.add({
        ids: batch.map((r) => r.id),
        embeddings: batch.map((r) => Array.from(r.vector)),
        documents: batch.map((r) => r.content),
        metadatas: batch.map((r): ChromaMetadata => {
          const ms = Date.parse(r.createdAt);
          return {
            user_id: r.user,
            session_id: r.session,
            'has:session_id': true,
            content_type: 'note',
            created_at: r.createdAt,
            created_at_ms: ms,
            updated_at: r.createdAt,
            content_hash: r.hash,
            embedding_model: EMBEDDING_MODEL_NAME,
          };
        }),
      });
    }
  }

  count(): Promise<number> {
    return this.collection.count();
  }

  async drop(): Promise<void> {
    await this.client.deleteCollection({ name: this.name }).catch(() => undefined);
    await this.store.close();
  }
}

/** Memories in a Chroma collection (0 when it does not exist yet). */
export async function chromaCount(name: string): Promise<number> {
  const url = new URL(servers.chromaUrl);
  const client = new ChromaClient({ host: url.hostname, port: Number(url.port || 80), ssl: false });
  try {
    const collection = await client.getCollection({ name });
    return await collection.count();
  } catch {
    return 0;
  }
}
