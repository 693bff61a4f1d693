import { createHash, randomUUID } from 'node:crypto';
import { Client, Pool, type QueryResultRow } from 'pg';
import {
  parseWhere,
  createLogger,
  findMigrationsDir,
  PgvectorMemoryStore,
  probePgvector,
  pgvectorWarnings,
  tenantIndexName,
  readMigrations,
  runMigrations,
  type MemoryRecord,
  type PgvectorStoreOptions,
  ValidationError,
} from 'memory-core';
import { createTestSchema, repoRoot, seededRandom, servers } from '../setup/servers';

/** What only the PostgreSQL store has: migrations, the schema they make, migration rollback, the probe. */

const logger = createLogger({ service: 'pgvector-store-test', level: 'silent' });
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** One statement on a connection of its own, outside the store under test. */
async function queryOnce<R extends QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
  const client = new Client({ connectionString: servers.databaseUrl });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** The pgvector library the server has installed (infra/local/up builds it; databases follow it). */
async function pgvectorOnServer(): Promise<string> {
  const [row] = await queryOnce<{ v: string }>(
    "SELECT default_version AS v FROM pg_available_extensions WHERE name = 'vector'",
  );
  return row!.v;
}

function record(userId: string, content: string, extra: Partial<MemoryRecord> = {}): MemoryRecord {
  const at = new Date().toISOString();
  const embedding = new Float32Array(384).map((_, i) => Math.sin(i + content.length));
  return {
    id: randomUUID(),
    user_id: userId,
    session_id: null,
    session_type: null,
    project: null,
    content,
    content_type: 'note',
    metadata: {},
    content_hash: sha256(content),
    embedding_model: 'test-model',
    created_at: at,
    updated_at: at,
    embedding,
    ...extra,
  };
}

describe('PostgreSQL migrations', () => {
  let pool: Pool;
  let schema: { schema: string; drop: () => Promise<void> };

  beforeAll(async () => {
    pool = new Pool({ connectionString: servers.databaseUrl, max: 6 });
    schema = await createTestSchema('migr');
  });
  afterAll(async () => {
    await schema.drop();
    await pool.end();
  });

  it("finds the repository's infra/migrations from the package", () => {
    expect(findMigrationsDir()).toBe(`${repoRoot}/infra/migrations`);
    expect(readMigrations(findMigrationsDir()).map((m) => m.file)[0]).toBe('0001_init.sql');
  });

  it('services starting together apply each migration once (advisory lock), then nothing is pending', async () => {
    const runs = await Promise.all(
      [1, 2, 3].map(() => runMigrations(pool, { schema: schema.schema }, logger)),
    );
    const versions = readMigrations(findMigrationsDir()).map((m) => m.version);
    expect(runs.flat().sort()).toEqual(versions);
    expect(await runMigrations(pool, { schema: schema.schema }, logger)).toEqual([]);
    const recorded = await pool.query(
      `SELECT version FROM "${schema.schema}".schema_migrations ORDER BY version`,
    );
    expect(recorded.rows.map((r: { version: string }) => r.version)).toEqual(versions);
  });

  it('creates the tables and indexes in the given schema only', async () => {
    const tables = await pool.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema.schema],
    );
    expect(tables.rows.map((r: { table_name: string }) => r.table_name)).toEqual([
      'memories',
      'projects',
      'schema_migrations',
      'sessions',
      'users',
    ]);
    const indexes = await pool.query(
      `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'memories'`,
      [schema.schema],
    );
    const defs = Object.fromEntries(
      indexes.rows.map((r: { indexname: string; indexdef: string }) => [r.indexname, r.indexdef]),
    );
    expect(defs.memories_embedding_hnsw_idx).toMatch(
      /USING hnsw \(\(\(embedding\)::halfvec\(384\)\) halfvec_cosine_ops\) WITH \(m='16', ef_construction='64'\)/,
    );
    expect(defs.memories_dedup_key).toMatch(
      /UNIQUE INDEX .* \(user_id, COALESCE\(session_id, ''::text\), COALESCE\(project_id, \(0\)::bigint\), content_hash\)/,
    );
    expect(defs.memories_metadata_idx).toMatch(/USING gin \(metadata jsonb_path_ops\)/);
    for (const name of [
      'memories_user_created_idx',
      'memories_user_session_idx',
      'memories_user_project_idx',
      'memories_user_content_type_idx',
      'memories_migration_idx',
    ]) {
      expect(defs[name]).toBeDefined();
    }
  });

  it('creates a schema that does not exist yet', async () => {
    const name = `${schema.schema}_new`;
    try {
      expect(await runMigrations(pool, { schema: name }, logger)).toEqual(['0001', '0002']);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
    }
  });
});

describe('PgvectorMemoryStore (PostgreSQL only)', () => {
  let schema: { schema: string; drop: () => Promise<void> };
  let store: PgvectorMemoryStore;

  beforeAll(async () => {
    schema = await createTestSchema('pgstore');
    store = new PgvectorMemoryStore({ connectionString: servers.databaseUrl, schema: schema.schema }, logger);
    await store.initialize();
  });
  afterAll(async () => {
    await store.close();
    await schema.drop();
  });

  it("deleteByMigration removes exactly one migration's rows, across users", async () => {
    await store.upsert([
      record('u1', 'migrated 1', { migration_id: 'm-1' }),
      record('u2', 'migrated 2', { migration_id: 'm-1' }),
      record('u1', 'other migration', { migration_id: 'm-2' }),
      record('u1', 'written by the service'),
    ]);
    expect(await store.deleteByMigration('m-1')).toBe(2);
    expect(await store.deleteByMigration('m-1')).toBe(0);
    expect(
      (await store.list({ user_id: 'u1' }, { limit: 10, offset: 0 })).items.map((m) => m.content).sort(),
    ).toEqual(['other migration', 'written by the service']);
  });

  it('a memory stored again outside a migration adopts the migrated row: its rollback keeps it', async () => {
    const migrated = record('u-adopt', 'came with migration m-3', { migration_id: 'm-3' });
    const alsoMigrated = record('u-adopt', 'also came with m-3', { migration_id: 'm-3' });
    await store.upsert([migrated, alsoMigrated]);
    // Another migration meeting the same content does not take the row over.
    const again = record('u-adopt', 'also came with m-3', { migration_id: 'm-4' });
    expect(await store.upsert([again])).toEqual([
      { requested_id: again.id, id: alsoMigrated.id, status: 'duplicate' },
    ]);
    // The API storing the same content gets the migrated row back as its memory.
    const stored = record('u-adopt', 'came with migration m-3');
    expect(await store.upsert([stored])).toEqual([
      { requested_id: stored.id, id: migrated.id, status: 'duplicate' },
    ]);
    expect(await store.deleteByMigration('m-3')).toBe(1);
    expect(await store.get('u-adopt', migrated.id)).toMatchObject({ content: 'came with migration m-3' });
    expect(await store.get('u-adopt', alsoMigrated.id)).toBeNull();
  });

  it('concurrent writers of the same content under different ids end with one memory (dedup race retried)', async () => {
    // Open six connections and create the user first, so that the writers really overlap (a new
    // session or user row would serialise them on its lock before they reach the memories table).
    await Promise.all(Array.from({ length: 6 }, (_, i) => store.upsert([record('u-race', `warm-up ${i}`)])));
    const copies = Array.from({ length: 6 }, () => record('u-race', 'written by six workers at once'));
    const results = (await Promise.all(copies.map((c) => store.upsert([c])))).flat();
    const created = results.filter((r) => r.status === 'created');
    expect(created).toHaveLength(1);
    expect(results.every((r) => r.id === created[0]!.id)).toBe(true);
    expect((await store.list({ user_id: 'u-race' }, { limit: 10, offset: 0 })).total).toBe(7);
  });

  it('creates users, projects by name and sessions in the same transaction as the memories', async () => {
    await store.upsert([
      record('u-scope', 'one', { project: 'apollo', session_id: 'sess', session_type: 'work' }),
      record('u-scope', 'two', { project: 'apollo', session_id: 'sess' }),
    ]);
    const client = new Client({ connectionString: servers.databaseUrl });
    await client.connect();
    try {
      const s = `"${schema.schema}"`;
      const projects = await client.query(
        `SELECT user_id, name FROM ${s}.projects WHERE user_id = 'u-scope'`,
      );
      expect(projects.rows).toEqual([{ user_id: 'u-scope', name: 'apollo' }]);
      const sessions = await client.query(
        `SELECT s.id, s.session_type, p.name AS project FROM ${s}.sessions s LEFT JOIN ${s}.projects p ON p.id = s.project_id WHERE s.user_id = 'u-scope'`,
      );
      expect(sessions.rows).toEqual([{ id: 'sess', session_type: 'work', project: 'apollo' }]);
    } finally {
      await client.end();
    }
  });

  it('rejects a wrong embedding dimension and reserved metadata keys before writing', async () => {
    await expect(store.upsert([record('u-bad', 'short', { embedding: [0.1, 0.2] })])).rejects.toMatchObject({
      code: 'invalid_embedding',
    });
    await expect(
      store.upsert([record('u-bad', 'reserved', { metadata: { content_hash: 'x' } })]),
    ).rejects.toMatchObject({
      httpStatus: 400,
    });
    expect((await store.list({ user_id: 'u-bad' }, { limit: 10, offset: 0 })).total).toBe(0);
  });

  it('status names the HNSW index and the server and pgvector versions', async () => {
    const status = await store.status();
    expect(status.index).toMatch(
      /^hnsw \(halfvec_cosine_ops, m=16, ef_construction=64\); ef_search=400 \(200 in a user's own graph\), overfetch=2, iterative_scan=relaxed_order/,
    );
    expect(status.versions).toEqual({
      postgres: expect.stringMatching(/^15\./),
      pgvector: await pgvectorOnServer(),
    });
    expect(status.warnings ?? []).toEqual(pgvectorWarnings(status.versions!.pgvector!));
  });

  it('drops the HNSW index for a bulk load and builds it again exactly as the migrations define it', async () => {
    const definition = async () => {
      const [row] = await queryOnce<{ indexdef: string | null }>(
        `SELECT (SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'memories_embedding_hnsw_idx') AS indexdef`,
        [schema.schema],
      );
      return row!.indexdef;
    };
    const migrated = await definition();
    expect(migrated).toMatch(/halfvec_cosine_ops/);
    await store.upsert([record('u-bulk', 'one'), record('u-bulk', 'three')]);

    expect(await store.dropVectorIndex()).toBe(true);
    expect(await store.dropVectorIndex()).toBe(false);
    expect(await definition()).toBeNull();
    expect((await store.status()).index).toMatch(/^no HNSW index \(exact scans only\)/);
    // Searches stay correct without it.
    expect(
      (await store.search(record('u-bulk', 'one').embedding, 1, { user_id: 'u-bulk' }))[0]!.content,
    ).toBe('one');

    expect(await store.buildVectorIndex()).toBeGreaterThan(0);
    expect(await definition()).toBe(migrated);
    expect(await store.buildVectorIndex()).toBe(0);
  });

  it('status counts exactly up to exactCountLimit and gives the planner estimate past it', async () => {
    const limited = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema: schema.schema, exactCountLimit: 2 },
      logger,
    );
    try {
      const exact = await store.status();
      expect(exact.memory_count_estimated).toBeUndefined();
      expect(exact.memory_count).toBeGreaterThan(2);
      await queryOnce(`ANALYZE "${schema.schema}".memories`);
      const status = await limited.status();
      expect(status.memory_count_estimated).toBe(true);
      // ANALYZE reads every row of a small table: its estimate is the count.
      expect(status.memory_count).toBe(exact.memory_count);
    } finally {
      await limited.close();
    }
  });

  it('status says when the schema has not been initialized', async () => {
    const bare = await createTestSchema('bare');
    const uninitialized = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema: bare.schema },
      logger,
    );
    try {
      expect(await uninitialized.status()).toMatchObject({
        reachable: true,
        error: expect.stringMatching(/not initialized/),
      });
    } finally {
      await uninitialized.close();
      await bare.drop();
    }
  });
});

describe('PgvectorMemoryStore named statements', () => {
  let first: { schema: string; drop: () => Promise<void> };
  let second: { schema: string; drop: () => Promise<void> };
  // One connection, so that every statement below runs where the ones before were prepared.
  let pool: Pool;

  beforeAll(async () => {
    first = await createTestSchema('named_a');
    second = await createTestSchema('named_b');
    pool = new Pool({ connectionString: servers.databaseUrl, max: 1 });
  });
  afterAll(async () => {
    await pool.end();
    await first.drop();
    await second.drop();
  });

  const prepared = async () =>
    (await pool.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name')).rows.map(
      (r) => r.name,
    );

  it('prepares a write once per connection and runs it again by name', async () => {
    const store = new PgvectorMemoryStore({ pool, schema: first.schema }, logger);
    await store.initialize();
    await store.upsert([record('u-named', 'first write', { session_id: 's', project: 'p' })]);
    const afterFirst = await prepared();
    // users, projects (insert and ids), sessions, the lookup and the insert.
    expect(afterFirst.filter((name) => name.startsWith('ms_'))).toHaveLength(6);
    await store.upsert([record('u-named', 'second write', { session_id: 's', project: 'p' })]);
    await store.upsert([record('u-named', 'third write', { session_id: 's2', project: 'p2' })]);
    expect(await prepared()).toEqual(afterFirst);
    expect((await store.list({ user_id: 'u-named' }, { limit: 10, offset: 0 })).total).toBe(3);
  });

  it('stores of two schemas on one connection each write and read their own tables', async () => {
    const a = new PgvectorMemoryStore({ pool, schema: first.schema }, logger);
    const b = new PgvectorMemoryStore({ pool, schema: second.schema }, logger);
    await b.initialize();
    const inA = record('u-two', 'kept in the first schema');
    const inB = record('u-two', 'kept in the second schema');
    await a.upsert([inA]);
    await b.upsert([inB]);
    expect((await a.get('u-two', inA.id))?.content).toBe('kept in the first schema');
    expect(await a.get('u-two', inB.id)).toBeNull();
    expect((await b.get('u-two', inB.id))?.content).toBe('kept in the second schema');
    expect(await b.get('u-two', inA.id)).toBeNull();
    expect((await b.findByIds([inA.id, inB.id])).map((r) => r.id)).toEqual([inB.id]);
  });

  it('statements prepared before the HNSW index is dropped and built again keep working', async () => {
    const store = new PgvectorMemoryStore({ pool, schema: first.schema }, logger);
    const before = record('u-rebuilt', 'written before the index was dropped');
    await store.upsert([before]);
    expect(await store.dropVectorIndex()).toBe(true);
    const during = record('u-rebuilt', 'written without the index');
    await store.upsert([during]);
    expect(await store.buildVectorIndex()).toBeGreaterThan(0);
    const after = record('u-rebuilt', 'written after the index was built');
    await store.upsert([after]);
    for (const r of [before, during, after])
      expect((await store.get('u-rebuilt', r.id))?.content).toBe(r.content);
    expect(await store.delete('u-rebuilt', during.id)).toBe(true);
    expect((await store.list({ user_id: 'u-rebuilt' }, { limit: 10, offset: 0 })).total).toBe(2);
  });
});

describe("users' own HNSW graphs (maintainTenantIndexes)", () => {
  let schema: { schema: string; drop: () => Promise<void> };
  let store: PgvectorMemoryStore;
  let pool: Pool;
  const policy = { minMemories: 50 };
  // Seeded unit vectors, so that each user's neighbours differ from one another.
  const random = seededRandom(7);
  const unit = () => {
    const v = Float32Array.from({ length: 384 }, () => random() - 0.5);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  };
  const add = (userId: string, n: number) =>
    store.upsert(
      Array.from({ length: n }, (_, i) => record(userId, `${userId} memory ${i}`, { embedding: unit() })),
    );
  const indexNames = async () =>
    (
      await pool.query<{ name: string; valid: boolean }>(
        `SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname LIKE 'memories_hnsw_u_%'`,
        [schema.schema],
      )
    ).rows;

  beforeAll(async () => {
    schema = await createTestSchema('tenant');
    pool = new Pool({ connectionString: servers.databaseUrl, max: 2 });
    // exactScanThreshold 0: every search goes to a graph, as it would for scopes of thousands.
    store = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema: schema.schema, exactScanThreshold: 0 },
      logger,
    );
    await store.initialize();
    // 240 memories: "big" holds 60 (a quarter), "small" 30 (under the minimum), "whale" 150 (over half).
    await add('big', 60);
    await add('small', 30);
    await add('whale', 150);
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await schema.drop();
  });

  it('gives a graph to a user with many memories and a small share, not to the others', async () => {
    const report = await store.maintainTenantIndexes(policy);
    expect(report.built.map((b) => [b.user_id, b.memories])).toEqual([['big', 60]]);
    expect(report).toMatchObject({ dropped: 0, kept: 0 });
    expect(await indexNames()).toEqual([{ name: tenantIndexName('big'), valid: true }]);
    expect((await store.status()).tenant_indexes).toBe(1);
    // Nothing changed: a second run keeps it.
    expect(await store.maintainTenantIndexes(policy)).toMatchObject({ built: [], dropped: 0, kept: 1 });
  });

  it("searches scoped to that user use the user's graph, with its own ef_search, and find the exact top-k", async () => {
    const query = unit();
    const own = await store.explainSearch(query, 10, { user_id: 'big' });
    expect(own.plan).toContain(`Index Scan using ${tenantIndexName('big')}`);
    // Nothing but the user filters the graph's candidates: no iterative scan.
    expect(own).toMatchObject({ efSearch: 200, iterative: false });
    const shared = await store.explainSearch(query, 10, { user_id: 'whale' });
    expect(shared.plan).toContain('Index Scan using memories_embedding_hnsw_idx');
    expect(shared).toMatchObject({ efSearch: 400, iterative: true });
    // Another condition in the user's graph filters candidates out: iterative again.
    const narrowed = await store.explainSearch(query, 10, {
      user_id: 'big',
      where: parseWhere({ content_type: 'note' }),
    });
    expect(narrowed.plan).toContain(`Index Scan using ${tenantIndexName('big')}`);
    expect(narrowed).toMatchObject({ efSearch: 200, iterative: true });

    const exact = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema: schema.schema, exactScanThreshold: 1_000_000 },
      logger,
    );
    try {
      for (const filter of [{ user_id: 'big' }, { user_id: 'whale' }]) {
        const found = (await store.search(query, 10, filter)).map((h) => h.id);
        expect(found).toEqual((await exact.search(query, 10, filter)).map((h) => h.id));
      }
    } finally {
      await exact.close();
    }
  });

  it("does not count the scope of a search by the user alone when the user's graph holds more than the threshold", async () => {
    const query = unit();
    // Threshold 0: the graph's 60 entries are above it; the count is skipped and the graph searched.
    const byUser = await store.explainSearch(query, 10, { user_id: 'big' });
    expect(byUser.scope).toEqual({ scopeRows: 60, ownGraph: true, counted: false, exactLimit: 0 });
    expect(byUser.mode).toBe('hnsw');
    // Any other condition narrows the scope below the graph: counted.
    const narrowed = await store.explainSearch(query, 10, {
      user_id: 'big',
      where: parseWhere({ content_type: 'note' }),
    });
    expect(narrowed.scope.counted).toBe(true);
    // No graph of their own: counted.
    expect((await store.explainSearch(query, 10, { user_id: 'whale' })).scope).toMatchObject({
      ownGraph: false,
      counted: true,
    });
    // A threshold above the graph's size: counted, and scanned exactly as that threshold says.
    const exact = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema: schema.schema, exactScanThreshold: 1_000 },
      logger,
    );
    try {
      const small = await exact.explainSearch(query, 10, { user_id: 'big' });
      expect(small.scope).toEqual({ scopeRows: 60, ownGraph: true, counted: true, exactLimit: 1_000 });
      expect(small.mode).toBe('exact');
    } finally {
      await exact.close();
    }
  });

  it("a user's search in their large graph is one statement once the store has seen the graph, and goes the long way when it is gone", async () => {
    // The statements each search sends, from a one-connection pool of the test's own.
    const sent: string[] = [];
    const recorded = new Pool({ connectionString: servers.databaseUrl, max: 1 });
    recorded.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: typeof query }).query = (...args) => {
        if (typeof args[0] === 'string') sent.push(args[0].trim().split(/\s+/).slice(0, 4).join(' '));
        return query(...args);
      };
    });
    const hinted = new PgvectorMemoryStore(
      { pool: recorded, schema: schema.schema, exactScanThreshold: 0 },
      logger,
    );
    const exact = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema: schema.schema, exactScanThreshold: 1_000_000 },
      logger,
    );
    const searchOf = async (query: Float32Array) => {
      sent.length = 0;
      const hits = (await hinted.search(query, 10, { user_id: 'big' })).map((h) => h.id);
      expect(hits).toEqual((await exact.search(query, 10, { user_id: 'big' })).map((h) => h.id));
      return [...sent];
    };
    const count = 'SELECT CASE WHEN g.skip';
    const settings = "SELECT set_config('hnsw.ef_search', $1, false),";
    const graphSearch = 'WITH nearest AS MATERIALIZED';
    try {
      // First search: the scope's size is asked (and the graph found large), settings, then the graph.
      expect(await searchOf(unit())).toEqual([count, settings, graphSearch]);
      // From then on: the graph straight away, on a connection that holds the settings.
      expect(await searchOf(unit())).toEqual([graphSearch]);
      expect(await searchOf(unit())).toEqual([graphSearch]);

      // The graph is gone: the statement says so, and the search goes the long way, in the shared graph.
      await pool.query(`DROP INDEX "${schema.schema}".${tenantIndexName('big')}`);
      expect(await searchOf(unit())).toEqual([graphSearch, count, settings, graphSearch]);
      // Forgotten: no more tries at the graph first.
      expect(await searchOf(unit())).toEqual([count, graphSearch]);
    } finally {
      await Promise.all([hinted.close(), exact.close()]);
      await recorded.end();
      await store.maintainTenantIndexes(policy);
    }
    expect(await indexNames()).toEqual([{ name: tenantIndexName('big'), valid: true }]);
  });

  it("a search leaves its settings on the connection for the next search; the store's other operations put enable_sort and jit back", async () => {
    const one = new Pool({ connectionString: servers.databaseUrl, max: 1 });
    const show = async () =>
      (
        await one.query<{ ef: string; iterative: string; sort: string; jit: string }>(
          `SELECT current_setting('hnsw.ef_search', true) AS ef, current_setting('hnsw.iterative_scan', true) AS iterative,
                  current_setting('enable_sort') AS sort, current_setting('jit') AS jit`,
        )
      ).rows[0]!;
    const defaults = await show();
    expect(defaults.sort).toBe('on');
    const a = new PgvectorMemoryStore({ pool: one, schema: schema.schema, exactScanThreshold: 0 }, logger);
    // Another store on the same pool, with another ef_search in users' graphs.
    const b = new PgvectorMemoryStore(
      { pool: one, schema: schema.schema, exactScanThreshold: 0, tenantEfSearch: 120 },
      logger,
    );
    try {
      await a.search(unit(), 10, { user_id: 'big' });
      expect(await show()).toEqual({ ef: '200', iterative: 'off', sort: 'off', jit: 'off' });
      await a.search(unit(), 10, { user_id: 'whale' });
      expect(await show()).toMatchObject({ ef: '400', iterative: 'relaxed_order', sort: 'off' });
      // Each store sets what its search needs, whatever the other left.
      await b.search(unit(), 10, { user_id: 'big' });
      expect(await show()).toMatchObject({ ef: '120', iterative: 'off' });
      expect((await a.explainSearch(unit(), 10, { user_id: 'big' })).efSearch).toBe(200);
      expect(await show()).toMatchObject({ ef: '200' });

      // Any other operation first gives the connection its own enable_sort and jit back.
      await a.list({ user_id: 'big' }, { limit: 5, offset: 0 });
      expect(await show()).toMatchObject({ sort: defaults.sort, jit: defaults.jit });
      await a.search(unit(), 10, { user_id: 'big' });
      await b.stats({ user_id: 'big' });
      expect(await show()).toMatchObject({ sort: defaults.sort, jit: defaults.jit });
    } finally {
      await Promise.all([a.close(), b.close()]);
      await one.end();
    }
  });

  it('does nothing while another process holds the maintenance lock', async () => {
    const holder = await pool.connect();
    try {
      await holder.query(`SELECT pg_advisory_lock(hashtext($1))`, [`${schema.schema}.memories_hnsw_u_`]);
      expect(await store.maintainTenantIndexes(policy)).toEqual({
        built: [],
        dropped: 0,
        kept: 0,
        capped: 0,
        busy: true,
      });
    } finally {
      await holder.query(`SELECT pg_advisory_unlock_all()`);
      holder.release();
    }
  });

  it('rebuilds a graph whose build was interrupted (left invalid)', async () => {
    await pool.query(`DROP INDEX "${schema.schema}".${tenantIndexName('big')}`);
    // A concurrent build that fails leaves an invalid index behind, as a cancelled one does.
    await expect(
      pool.query(
        `CREATE UNIQUE INDEX CONCURRENTLY ${tenantIndexName('big')} ON "${schema.schema}".memories (content_type)`,
      ),
    ).rejects.toThrow(/could not create unique index/);
    expect(await indexNames()).toEqual([{ name: tenantIndexName('big'), valid: false }]);
    // An invalid index is not the user's graph: searches use the shared one meanwhile.
    expect((await store.explainSearch(unit(), 10, { user_id: 'big' })).efSearch).toBe(400);
    expect((await store.status()).tenant_indexes).toBe(0);

    const report = await store.maintainTenantIndexes(policy);
    expect(report).toMatchObject({ dropped: 1, kept: 0 });
    expect(report.built.map((b) => b.user_id)).toEqual(['big']);
    expect(await indexNames()).toEqual([{ name: tenantIndexName('big'), valid: true }]);
  });

  it('a bulk load drops the graphs with the shared index; the next run builds them again', async () => {
    await store.dropVectorIndex();
    expect(await indexNames()).toEqual([]);
    await store.buildVectorIndex();
    expect(await indexNames()).toEqual([]);
    expect((await store.maintainTenantIndexes(policy)).built.map((b) => b.user_id)).toEqual(['big']);
  });

  it('drops the graph once its user falls under half the minimum', async () => {
    // 30 left: under the minimum but over half of it, so the graph stays.
    const keep = (await store.list({ user_id: 'big' }, { limit: 30, offset: 0 })).items;
    for (const m of keep) await store.delete('big', m.id);
    expect(await store.maintainTenantIndexes(policy)).toMatchObject({ built: [], dropped: 0, kept: 1 });
    const more = (await store.list({ user_id: 'big' }, { limit: 6, offset: 0 })).items;
    for (const m of more) await store.delete('big', m.id);
    expect(await store.maintainTenantIndexes(policy)).toMatchObject({ built: [], dropped: 1, kept: 0 });
    expect(await indexNames()).toEqual([]);
    expect((await store.status()).tenant_indexes).toBe(0);
    expect((await store.explainSearch(unit(), 10, { user_id: 'big' })).plan).toContain(
      'Index Scan using memories_embedding_hnsw_idx',
    );
  });

  it('rejects a policy that makes no sense', async () => {
    await expect(store.maintainTenantIndexes({ minMemories: 0 })).rejects.toMatchObject({ httpStatus: 400 });
    await expect(store.maintainTenantIndexes({ minMemories: 10, maxShare: 1.5 })).rejects.toMatchObject({
      httpStatus: 400,
    });
  });
});

describe("users' own graphs: at most maxGraphs on the table", () => {
  let schema: { schema: string; drop: () => Promise<void> };
  let store: PgvectorMemoryStore;
  let pool: Pool;
  const policy = { minMemories: 50, maxGraphs: 2 };
  const random = seededRandom(11);
  const unit = () => {
    const v = Float32Array.from({ length: 384 }, () => random() - 0.5);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  };
  const add = (userId: string, n: number, from = 0) =>
    store.upsert(
      Array.from({ length: n }, (_, i) =>
        record(userId, `${userId} memory ${from + i}`, { embedding: unit() }),
      ),
    );
  const graphs = async () =>
    (
      await pool.query<{ name: string }>(
        `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname LIKE 'memories_hnsw_u_%' ORDER BY 1`,
        [schema.schema],
      )
    ).rows.map((r) => r.name);

  beforeAll(async () => {
    schema = await createTestSchema('tenantcap');
    pool = new Pool({ connectionString: servers.databaseUrl, max: 1 });
    store = new PgvectorMemoryStore({ connectionString: servers.databaseUrl, schema: schema.schema }, logger);
    await store.initialize();
    // Three users qualify (at least 50 memories, at most half of the 610); "rest" holds most of the table.
    await add('a', 80);
    await add('b', 70);
    await add('c', 60);
    await add('rest', 400);
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
    await schema.drop();
  });

  it('gives graphs to the largest users that qualify, up to the cap, and says how many it left out', async () => {
    const report = await store.maintainTenantIndexes(policy);
    expect(report.built.map((b) => b.user_id)).toEqual(['a', 'b']);
    expect(report).toMatchObject({ dropped: 0, kept: 0, capped: 1 });
    expect(await graphs()).toEqual([tenantIndexName('a'), tenantIndexName('b')].sort());
    // The cap holds on the next run: the graphs stay, the third user still waits.
    expect(await store.maintainTenantIndexes(policy)).toMatchObject({
      built: [],
      dropped: 0,
      kept: 2,
      capped: 1,
    });
  });

  it('builds the waiting user a graph once another graph is dropped', async () => {
    // "a" falls under half the minimum: its graph goes, and "c" gets the place.
    const items = (await store.list({ user_id: 'a' }, { limit: 60, offset: 0 })).items;
    for (const m of items) await store.delete('a', m.id);
    const report = await store.maintainTenantIndexes(policy);
    expect(report).toMatchObject({ dropped: 1, kept: 1, capped: 0 });
    expect(report.built.map((b) => b.user_id)).toEqual(['c']);
    expect(await graphs()).toEqual([tenantIndexName('b'), tenantIndexName('c')].sort());
  });

  it('drops the smallest holders when the cap is lowered, and gives the place back when it is raised', async () => {
    // Holders now: b (70), c (60).
    const lowered = await store.maintainTenantIndexes({ ...policy, maxGraphs: 1 });
    expect(lowered).toMatchObject({ built: [], dropped: 1, kept: 1, capped: 1 });
    expect(await graphs()).toEqual([tenantIndexName('b')]);
    const raised = await store.maintainTenantIndexes(policy);
    expect(raised).toMatchObject({ dropped: 0, kept: 1, capped: 0 });
    expect(raised.built.map((b) => b.user_id)).toEqual(['c']);
    expect(await graphs()).toEqual([tenantIndexName('b'), tenantIndexName('c')].sort());
  });

  it("lets a user take a holder's place only once they hold twice its memories", async () => {
    // "d" (100) outgrows both holders, but not twice over: nothing moves.
    await add('d', 100);
    expect(await store.maintainTenantIndexes(policy)).toMatchObject({
      built: [],
      dropped: 0,
      kept: 2,
      capped: 1,
    });
    expect(await graphs()).toEqual([tenantIndexName('b'), tenantIndexName('c')].sort());
    // At 130, "d" holds more than twice c's 60 (not b's 70): c's graph goes to d.
    await add('d', 30, 100);
    const report = await store.maintainTenantIndexes(policy);
    expect(report).toMatchObject({ dropped: 1, kept: 1, capped: 1 });
    expect(report.built.map((b) => b.user_id)).toEqual(['d']);
    expect(await graphs()).toEqual([tenantIndexName('b'), tenantIndexName('d')].sort());
  });

  it('refuses a cap that is not a positive integer', async () => {
    await expect(store.maintainTenantIndexes({ minMemories: 50, maxGraphs: 0 })).rejects.toMatchObject({
      httpStatus: 400,
    });
    expect(await graphs()).toHaveLength(2);
  });
});

describe('scopes the shared graph serves badly: scanned exactly (sparseExactScan)', () => {
  let schema: { schema: string; drop: () => Promise<void> };
  let pool: Pool;
  const stores: PgvectorMemoryStore[] = [];
  const random = seededRandom(13);
  const unit = () => {
    const v = Float32Array.from({ length: 384 }, () => random() - 0.5);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  };
  /** A store on the test's table: exact scans up to 10 memories, and `sparse` past them. */
  const storeWith = (sparseExactScan: PgvectorStoreOptions['sparseExactScan']) => {
    const store = new PgvectorMemoryStore(
      {
        connectionString: servers.databaseUrl,
        schema: schema.schema,
        exactScanThreshold: 10,
        sparseExactScan,
      },
      logger,
    );
    stores.push(store);
    return store;
  };
  const add = (store: PgvectorMemoryStore, userId: string, n: number, extra: Partial<MemoryRecord> = {}) =>
    store.upsert(
      Array.from({ length: n }, (_, i) =>
        record(userId, `${userId} ${extra.session_id ?? ''} memory ${i}`, { embedding: unit(), ...extra }),
      ),
    );
  const usesSharedGraph = (plan: string) => plan.includes('Index Scan using memories_embedding_hnsw_idx');

  beforeAll(async () => {
    schema = await createTestSchema('sparse');
    pool = new Pool({ connectionString: servers.databaseUrl, max: 1 });
    const store = storeWith(false);
    await store.initialize();
    // 300 memories: "sparse" holds 10% of them, "mid" 50, "owner" 35; "rest" the others, 20 of them in one session.
    await add(store, 'sparse', 30);
    await add(store, 'mid', 50);
    await add(store, 'owner', 35);
    await add(store, 'rest', 165);
    await add(store, 'rest', 20, { session_id: 's1' });
    // The limit follows PostgreSQL's estimate of the table's rows, which ANALYZE sets.
    await pool.query(`ANALYZE ${schema.schema}.memories`);
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await pool.end();
    await schema.drop();
  });

  it('scans a scope past the threshold exactly when it is small and a small share of the table, and finds the exact top-k', async () => {
    const store = storeWith({ maxMemories: 40, maxShare: 0.2 });
    const exact = storeWith({ maxMemories: 1_000, maxShare: 1 });
    const query = unit();
    const sparse = await store.explainSearch(query, 10, { user_id: 'sparse' });
    expect(sparse).toMatchObject({
      mode: 'exact',
      scope: { scopeRows: 30, ownGraph: false, counted: true, exactLimit: 40 },
    });
    expect(usesSharedGraph(sparse.plan)).toBe(false);
    // Past maxMemories: counted just past the limit, and the shared graph.
    const mid = await store.explainSearch(query, 10, { user_id: 'mid' });
    expect(mid).toMatchObject({ mode: 'hnsw', scope: { scopeRows: 41, exactLimit: 40 } });
    expect(usesSharedGraph(mid.plan)).toBe(true);
    // Any filter that leaves a small scope, not only a user's: one session of a large user.
    const session = { user_id: 'rest', where: parseWhere({ session_id: 's1' }) };
    expect(await store.explainSearch(query, 10, session)).toMatchObject({
      mode: 'exact',
      scope: { scopeRows: 20 },
    });
    expect((await store.explainSearch(query, 10, { user_id: 'rest' })).mode).toBe('hnsw');
    for (const filter of [{ user_id: 'sparse' }, session]) {
      const found = (await store.search(query, 10, filter)).map((h) => h.id);
      expect(found).toHaveLength(10);
      expect(found).toEqual((await exact.search(query, 10, filter)).map((h) => h.id));
    }
  });

  it('leaves a scope past its share of the table to the graph, however small', async () => {
    // 10% of 300 memories: 30.
    const store = storeWith({ maxMemories: 1_000, maxShare: 0.1 });
    const query = unit();
    expect(await store.explainSearch(query, 10, { user_id: 'sparse' })).toMatchObject({
      mode: 'exact',
      scope: { scopeRows: 30, exactLimit: 30 },
    });
    expect(await store.explainSearch(query, 10, { user_id: 'owner' })).toMatchObject({
      mode: 'hnsw',
      scope: { scopeRows: 31, exactLimit: 30 },
    });
  });

  it('is off with false, and never lowers the threshold', async () => {
    const query = unit();
    const off = await storeWith(false).explainSearch(query, 10, { user_id: 'sparse' });
    expect(off).toMatchObject({ mode: 'hnsw', scope: { scopeRows: 11, exactLimit: 10 } });
    expect(usesSharedGraph(off.plan)).toBe(true);
    const tiny = await storeWith({ maxMemories: 5, maxShare: 0.5 }).explainSearch(query, 10, {
      user_id: 'sparse',
    });
    expect(tiny.scope.exactLimit).toBe(10);
  });

  it("counts a user's scope past the limit once, then only to the threshold for ten minutes", async () => {
    const store = storeWith({ maxMemories: 40, maxShare: 0.2 });
    const query = unit();
    expect((await store.explainSearch(query, 10, { user_id: 'rest' })).scope).toMatchObject({
      scopeRows: 41,
      exactLimit: 40,
    });
    // Past the limit: the next searches of the user alone count only to the threshold.
    expect(await store.explainSearch(query, 10, { user_id: 'rest' })).toMatchObject({
      mode: 'hnsw',
      scope: { scopeRows: 11, exactLimit: 10 },
    });
    // A narrower filter of that user is counted as far as the rule says, and scanned exactly.
    const session = { user_id: 'rest', where: parseWhere({ session_id: 's1' }) };
    expect(await store.explainSearch(query, 10, session)).toMatchObject({
      mode: 'exact',
      scope: { scopeRows: 20, exactLimit: 40 },
    });
    // A user within the limit is not remembered: scanned exactly every time.
    for (let i = 0; i < 2; i += 1)
      expect((await store.explainSearch(query, 10, { user_id: 'sparse' })).mode).toBe('exact');
    // Ten minutes on, the user's scope is counted past the threshold again.
    const now = Date.now();
    const clock = jest.spyOn(Date, 'now').mockReturnValue(now + 10 * 60_000 + 1);
    try {
      expect((await store.explainSearch(query, 10, { user_id: 'rest' })).scope).toMatchObject({
        scopeRows: 41,
        exactLimit: 40,
      });
    } finally {
      clock.mockRestore();
    }
  });

  it("does not apply to a user with a graph of their own: the user's graph serves their scope", async () => {
    const store = storeWith({ maxMemories: 40, maxShare: 0.2 });
    const report = await store.maintainTenantIndexes({ minMemories: 35, maxShare: 0.5 });
    expect(report.built.map((b) => b.user_id).sort()).toEqual(['mid', 'owner']);
    const owner = await store.explainSearch(unit(), 10, { user_id: 'owner' });
    expect(owner).toMatchObject({ mode: 'hnsw', scope: { ownGraph: true, exactLimit: 10 } });
    expect(owner.plan).toContain(`Index Scan using ${tenantIndexName('owner')}`);
    // The user without one still gets the exact scan.
    expect((await store.explainSearch(unit(), 10, { user_id: 'sparse' })).mode).toBe('exact');
  });

  it.each([
    [{ maxMemories: -1, maxShare: 0.1 }],
    [{ maxMemories: 1.5, maxShare: 0.1 }],
    [{ maxMemories: 100, maxShare: 1.5 }],
    [{ maxMemories: 100, maxShare: Number.NaN }],
  ])('rejects %p', (sparseExactScan) => {
    expect(() => storeWith(sparseExactScan)).toThrow(ValidationError);
  });
});

describe('probePgvector', () => {
  it('reports a server with pgvector as usable, with versions', async () => {
    expect(await probePgvector(servers.databaseUrl)).toEqual({
      ok: true,
      serverVersion: expect.stringMatching(/^15\./),
      pgvectorVersion: await pgvectorOnServer(),
      installed: true,
    });
  });

  it('reports a server that does not answer, without throwing', async () => {
    const probe = await probePgvector('postgres://memory:memory@127.0.0.1:1/memory', { timeoutMs: 1000 });
    expect(probe).toEqual({ ok: false, reason: expect.stringMatching(/does not answer: .*ECONNREFUSED/) });
  });
});
