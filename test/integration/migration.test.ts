import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import {
  ChromaCollectionSource,
  ChromaMemoryStore,
  ChromaMigration,
  ConflictError,
  contentHash,
  createLogger,
  memoryIdFor,
  MigrationCancelledError,
  NotFoundError,
  PgvectorMemoryStore,
  RedisMigrationCheckpoints,
  TransformersEmbedder,
  UnavailableError,
  ValidationError,
  type MemoryRecord,
  type MigrationProgress,
  type MigrationResult,
  type MigrationTarget,
  type ScopeCounts,
} from 'memory-core';
import {
  createTestSchema,
  dropTestCollections,
  rawChromaClient as rawChroma,
  servers,
  testModel,
  uniqueName,
  seededRandom,
} from '../setup/servers';

/**
 * The Chroma → PostgreSQL migration engine against real servers: Chroma holds 5,000 memories in the
 * service's own layout (and a foreign collection with its own metadata keys), PostgreSQL receives them
 * in a schema of this file, checkpoints live in Redis under a prefix of this file.
 */

jest.setTimeout(300_000);

const logger = createLogger({ service: 'migration-test', level: 'silent' });
const CLOSED_PORT = 'postgres://memory:memory@127.0.0.1:1/memory';

const WORDS = (
  'wisdom river mountain memory garden patience courage silence harvest lantern compass journey ' +
  'ocean library winter market teacher bridge signal orchard letter kitchen violin harbor meadow ' +
  'thunder pencil museum forest ladder window engine puzzle candle island shadow festival mirror ' +
  'planet recipe theory village question answer morning evening promise friendship practice habit'
).split(' ');
const CONTENT_TYPES = ['reflection', 'conversation', 'insight', 'note'];
const PROJECTS = ['alpha', 'beta', 'gamma', 'delta', null];
const TOTAL = 5_000;

function sentence(rand: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
}

function countScopes(
  memories: { user_id: string; session_id: string | null; project: string | null; content_type: string }[],
) {
  const counts: Record<string, ScopeCounts> = {};
  for (const m of memories) {
    const c = (counts[m.user_id] ??= { total: 0, by_session: {}, by_project: {}, by_content_type: {} });
    c.total += 1;
    if (m.session_id) c.by_session[m.session_id] = (c.by_session[m.session_id] ?? 0) + 1;
    if (m.project) c.by_project[m.project] = (c.by_project[m.project] ?? 0) + 1;
    c.by_content_type[m.content_type] = (c.by_content_type[m.content_type] ?? 0) + 1;
  }
  return counts;
}

/** A target that writes normally, then fails in a chosen way on one upsert call. */
function failingTarget(
  inner: PgvectorMemoryStore,
  failOnCall: number,
  failure: 'after-commit' | 'conflict',
): MigrationTarget {
  let calls = 0;
  return {
    initialize: () => inner.initialize(),
    status: () => inner.status(),
    findByIds: (ids, options) => inner.findByIds(ids, options),
    findByContent: (keys) => inner.findByContent(keys),
    deleteByMigration: (id) => inner.deleteByMigration(id),
    dropVectorIndex: () => inner.dropVectorIndex(),
    buildVectorIndex: () => inner.buildVectorIndex(),
    upsert: async (records) => {
      calls += 1;
      if (calls !== failOnCall) return inner.upsert(records);
      if (failure === 'conflict')
        throw new ConflictError('injected permanent failure', undefined, 'injected');
      // The batch commits, then the process "dies" before its checkpoint is saved.
      await inner.upsert(records);
      throw new UnavailableError('injected crash after commit', { code: 'injected' });
    },
  };
}

describe('Chroma → PostgreSQL migration (real Chroma, PostgreSQL, Redis)', () => {
  const collection = uniqueName('migrate_own');
  const foreign = uniqueName('migrate_foreign');
  const prefix = `{${uniqueName('migration')}}`;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let pg: PgvectorMemoryStore;
  let chroma: ChromaMemoryStore;
  let embedder: TransformersEmbedder;
  let redis: Redis;
  let checkpoints: RedisMigrationCheckpoints;
  let sql: Client;
  let records: MemoryRecord[];
  /** Rows stored in PostgreSQL before any migration, as the API would have stored them. */
  let storedOtherwise: MemoryRecord[];

  const engine = (overrides: Partial<ConstructorParameters<typeof ChromaMigration>[0]> = {}) =>
    new ChromaMigration({
      source: new ChromaCollectionSource(servers.chromaUrl),
      target: pg,
      checkpoints,
      embedder,
      logger,
      defaults: { collection, userId: '1' },
      ...overrides,
    });
  const count = async (where = 'true', s = schema.schema) =>
    Number((await sql.query(`SELECT count(*) AS n FROM ${s}.memories WHERE ${where}`)).rows[0].n);
  const hnswIndexIn = async (s: string) =>
    (await sql.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${s}.memories_embedding_hnsw_idx`]))
      .rows[0].present as boolean;

  beforeAll(async () => {
    schema = await createTestSchema('migration');
    sql = new Client({ connectionString: servers.databaseUrl });
    await sql.connect();
    redis = new Redis(servers.redisUrl);
    checkpoints = new RedisMigrationCheckpoints(redis, prefix);
    embedder = await TransformersEmbedder.load({ ...testModel, batchSize: 64 });
    pg = new PgvectorMemoryStore({ connectionString: servers.databaseUrl, schema: schema.schema }, logger);
    await pg.initialize();
    chroma = new ChromaMemoryStore(
      { url: servers.chromaUrl, collection, embeddingModel: embedder.info.model },
      logger,
    );
    await chroma.initialize();

    // 5,000 memories of two users across 12 sessions, 4 projects (and none), 4 content types.
    const rand = seededRandom(42);
    const contents = Array.from(
      { length: TOTAL },
      (_, i) => `${sentence(rand, 6 + Math.floor(rand() * 10))} (${i})`,
    );
    const vectors = await embedder.embed(contents);
    const start = Date.parse('2024-03-01T08:00:00.000Z');
    records = contents.map((content, i) => {
      const session = i % 12;
      const created = new Date(start + i * 60_000).toISOString();
      return {
        id: randomUUID(),
        user_id: i % 5 === 4 ? '2' : '1',
        session_id: i % 7 === 6 ? null : `s-${session}`,
        session_type: session % 3 === 0 ? 'philosophy' : null,
        project: PROJECTS[i % PROJECTS.length]!,
        content,
        content_type: CONTENT_TYPES[Math.floor(i / 3) % CONTENT_TYPES.length]!,
        metadata: {
          i,
          topic: WORDS[i % WORDS.length]!,
          important: i % 2 === 0,
          score: i / 10,
          // 16-17 significant digits, some of which Chroma's server rounds when it parses them.
          exact: (Math.PI * (i + 1)) / 3e3,
        },
        content_hash: contentHash(content),
        embedding: vectors[i]!,
        embedding_model: embedder.info.model,
        created_at: created,
        updated_at: created,
      };
    });
    for (let i = 0; i < records.length; i += 1_000) await chroma.upsert(records.slice(i, i + 1_000));

    // Stored through the API before the migration: two memories Chroma does not have, and one it has.
    const apiVectors = await embedder.embed(['stored through the api one', 'stored through the api two']);
    storedOtherwise = [
      {
        ...records[0]!,
        id: randomUUID(),
        content: 'stored through the api one',
        content_hash: contentHash('stored through the api one'),
        embedding: apiVectors[0]!,
      },
      {
        ...records[1]!,
        id: randomUUID(),
        content: 'stored through the api two',
        content_hash: contentHash('stored through the api two'),
        embedding: apiVectors[1]!,
      },
      { ...records[2]! },
    ];
    await pg.upsert(storedOtherwise);
  });

  afterAll(async () => {
    await pg?.close();
    await embedder?.close();
    await redis?.quit();
    await sql?.end();
    await schema?.drop();
    await dropTestCollections(collection, foreign);
  });

  describe('our own Chroma layout', () => {
    let migrated: MigrationResult;

    it('dry run writes nothing and reports exact counts per user, session, project and content type', async () => {
      const result = await engine().run({ migration_id: 'dry-run-1', dry_run: true, collection });
      expect(result.dry_run).toBe(true);
      expect(result.stats).toMatchObject({
        total: TOTAL,
        read: TOTAL,
        written: 0,
        would_write: TOTAL - 1,
        skipped: 1,
        skipped_by_reason: { already_in_postgres: 1 },
        failed: 0,
        copied_embeddings: TOTAL - 1,
        re_embedded: 0,
      });
      expect(result.counts).toEqual(countScopes(records));
      expect(result.skipped).toEqual([
        {
          id: records[2]!.id,
          reason: 'already_in_postgres',
          message: expect.stringContaining(records[2]!.id),
        },
      ]);
      expect(result.verification).toBeNull();
      expect(await count()).toBe(storedOtherwise.length);
      expect(await checkpoints.load('dry-run-1')).toBeNull();
    });

    it('migrates all records in batched transactions, verifies them, and tags every row with the migration id', async () => {
      const progress: MigrationProgress[] = [];
      migrated = await engine().run(
        { migration_id: 'own-1', collection, batch_size: 500 },
        { onProgress: (p) => void progress.push(p) },
      );
      const { stats } = migrated;
      console.log(
        `migration of ${TOTAL} records (copied vectors): ${stats.records_per_second} records/s, ${stats.duration_ms} ms`,
      );
      expect(stats).toMatchObject({
        total: TOTAL,
        read: TOTAL,
        written: TOTAL - 1,
        skipped: 1,
        skipped_by_reason: { already_in_postgres: 1 },
        failed: 0,
        copied_embeddings: TOTAL - 1,
        re_embedded: 0,
        // PostgreSQL already held memories: the index stays, rows go into it one batch at a time.
        index_deferred: false,
        index_build_ms: 0,
      });
      expect(await hnswIndexIn(schema.schema)).toBe(true);
      expect(stats.records_per_second).toBeGreaterThan(0);
      expect(migrated.state).toBe('completed');
      expect(migrated.verification).toMatchObject({ verified: true, differences: [] });
      expect(migrated.verification!.sample).toMatchObject({
        size: 200,
        vectors_compared: 200,
        fields_compared: 200 * 9,
      });
      for (const [user, counts] of Object.entries(countScopes(records))) {
        expect(migrated.verification!.counts[user]).toEqual({ chroma: counts, postgres: counts });
      }

      const done = progress.filter((p) => p.phase === 'migrating').map((p) => p.done);
      expect(done).toEqual([...done].sort((a, b) => a - b));
      expect(progress.at(-1)).toMatchObject({ phase: 'done', done: TOTAL, total: TOTAL, written: TOTAL - 1 });

      expect(await count()).toBe(TOTAL + 2);
      expect(await count(`migration_id = 'own-1'`)).toBe(TOTAL - 1);
      expect(await count(`migration_id IS NULL`)).toBe(storedOtherwise.length);
      const { rows } = await sql.query(`SELECT id::text FROM ${schema.schema}.memories`);
      expect(new Set(rows.map((r: { id: string }) => r.id))).toEqual(
        new Set([...records.map((r) => r.id), ...storedOtherwise.map((r) => r.id)]),
      );
      expect(await checkpoints.load('own-1')).toMatchObject({
        offset: TOTAL,
        result: { state: 'completed' },
      });
    });

    it('keeps every field: a migrated memory reads back as Chroma held it', async () => {
      const original = records[1234]!;
      const stored = await pg.get(original.user_id, original.id);
      const { embedding: _e, ...expected } = original;
      expect(stored).toEqual({
        ...expected,
        created_at: original.created_at,
        updated_at: original.updated_at,
      });
    });

    it('carries every metadata number exactly as it was written to Chroma', async () => {
      const { rows } = await sql.query<{ id: string; metadata: Record<string, unknown> }>(
        `SELECT id::text, metadata FROM ${schema.schema}.memories WHERE migration_id = 'own-1'`,
      );
      const written = new Map(records.map((r) => [r.id, r.metadata]));
      expect(rows).toHaveLength(TOTAL - 1);
      // Keys in order (jsonb reorders them); numbers as JavaScript writes them, digit for digit.
      const canonical = (m: object | undefined) =>
        JSON.stringify(Object.entries(m ?? {}).sort(([a], [b]) => a.localeCompare(b)));
      const differing = rows.filter((row) => canonical(row.metadata) !== canonical(written.get(row.id)));
      expect(differing.map((row) => [row.metadata, written.get(row.id)])).toEqual([]);
    });

    it('search on PostgreSQL then returns what search on Chroma returns for the same query vectors', async () => {
      const rand = seededRandom(7);
      const queries = await embedder.embed(Array.from({ length: 25 }, () => sentence(rand, 4)));
      const filters = [
        { user_id: '1' },
        { user_id: '2' },
        { user_id: '1', where: { field: 'session_id', op: '$eq' as const, value: 's-3' } },
        { user_id: '1', where: { field: 'project', op: '$eq' as const, value: 'beta' } },
      ];
      let compared = 0;
      for (const [q, vector] of queries.entries()) {
        const filter = filters[q % filters.length]!;
        const [fromChroma, fromPg] = await Promise.all([
          chroma.search(vector, 10, filter),
          pg.search(vector, 10, filter),
        ]);
        expect(fromPg.map((h) => h.id)).toEqual(fromChroma.map((h) => h.id));
        fromPg.forEach((hit, i) => expect(hit.similarity).toBeCloseTo(fromChroma[i]!.similarity, 4));
        compared += fromPg.length;
      }
      expect(compared).toBe(250);
    });

    it('a second run adds nothing: every record is already in PostgreSQL and counted as skipped', async () => {
      const result = await engine().run({ migration_id: 'own-2', collection });
      expect(result.stats).toMatchObject({
        read: TOTAL,
        written: 0,
        skipped: TOTAL,
        skipped_by_reason: { already_in_postgres: TOTAL },
      });
      expect(result.verification).toMatchObject({ verified: true, sample: { size: 0 } });
      expect(await count()).toBe(TOTAL + 2);
      expect(await count(`migration_id = 'own-2'`)).toBe(0);
    });

    it('running a finished migration again returns its result and writes nothing', async () => {
      const again = await engine().run({ migration_id: 'own-1', collection, batch_size: 500 });
      expect(again.stats.written).toBe(TOTAL - 1);
      expect(again.finished_at).toBe(migrated.finished_at);
      expect(await count()).toBe(TOTAL + 2);
    });

    it('refuses to resume a migration id with other options', async () => {
      const error = await engine()
        .run({ migration_id: 'own-1', collection, re_embed: true })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConflictError);
      expect(error).toMatchObject({ code: 'migration_options_changed' });
    });

    it("rollback removes exactly that migration's rows and leaves rows stored otherwise untouched", async () => {
      const before = await Promise.all(storedOtherwise.map((r) => pg.get(r.user_id, r.id)));
      const result = await engine().rollback('own-1');
      expect(result).toEqual({ migration_id: 'own-1', removed: TOTAL - 1 });
      expect(await count()).toBe(storedOtherwise.length);
      expect(await Promise.all(storedOtherwise.map((r) => pg.get(r.user_id, r.id)))).toEqual(before);
      expect((await engine().status('own-1'))?.state).toBe('rolled_back');
      // A rolled-back migration cannot be resumed into writing again.
      await expect(
        engine().run({ migration_id: 'own-1', collection, batch_size: 500 }),
      ).rejects.toBeInstanceOf(MigrationCancelledError);
      expect(await count()).toBe(storedOtherwise.length);
    });

    it('resumes from its checkpoint after a crash between a batch commit and its checkpoint: exact counts, no duplicates', async () => {
      const fresh = await createTestSchema('migration_resume');
      const target = new PgvectorMemoryStore(
        { connectionString: servers.databaseUrl, schema: fresh.schema },
        logger,
      );
      try {
        const crashing = engine({ target: failingTarget(target, 4, 'after-commit') });
        await expect(
          crashing.run({ migration_id: 'resume-1', collection, batch_size: 400 }),
        ).rejects.toMatchObject({
          code: 'injected',
        });
        expect(await count('true', fresh.schema)).toBe(1_600);
        expect((await checkpoints.load('resume-1'))?.offset).toBe(1_200);
        // An empty table loads without the HNSW index; a run that will be retried leaves it to the retry.
        expect(await hnswIndexIn(fresh.schema)).toBe(false);

        const result = await engine({ target }).run({
          migration_id: 'resume-1',
          collection,
          batch_size: 400,
        });
        expect(result.stats).toMatchObject({
          read: TOTAL,
          written: TOTAL,
          skipped: 0,
          failed: 0,
          index_deferred: true,
        });
        expect(result.stats.index_build_ms).toBeGreaterThan(0);
        expect(await hnswIndexIn(fresh.schema)).toBe(true);
        expect(result.verification?.verified).toBe(true);
        expect(await count('true', fresh.schema)).toBe(TOTAL);
        expect(await count(`migration_id = 'resume-1'`, fresh.schema)).toBe(TOTAL);
        const { rows } = await sql.query(`SELECT count(DISTINCT id) AS n FROM ${fresh.schema}.memories`);
        expect(Number(rows[0].n)).toBe(TOTAL);
      } finally {
        await target.close();
        await fresh.drop();
      }
    });

    it('migrates one user only with user_id', async () => {
      const result = await engine().run({ migration_id: 'user-2', collection, user_id: '2', dry_run: true });
      const expected = countScopes(records.filter((r) => r.user_id === '2'));
      expect(result.stats).toMatchObject({ total: 1_000, read: 1_000, would_write: 1_000 });
      expect(result.counts).toEqual(expected);
    });
  });

  describe('a foreign collection with its own metadata keys and vectors of another model', () => {
    const mapping = {
      user_id: 'owner',
      session_id: 'conversation',
      session_type: 'topic',
      project: 'workspace',
      content_type: 'kind',
      created_at: 'ts',
      metadata: ['lang', 'rating'],
      embedding_model: 'some-other-model-16d',
    };
    const ids = Array.from({ length: TOTAL }, (_, i) => `doc-${String(i).padStart(5, '0')}`);

    beforeAll(async () => {
      const client = rawChroma();
      const handle = await client.createCollection({
        name: foreign,
        embeddingFunction: null,
        configuration: { hnsw: { space: 'cosine' } },
      });
      const rand = seededRandom(99);
      const docs = ids.map((_, i) => `${sentence(rand, 5 + (i % 9))} [${i}]`);
      const metadatas = ids.map((_, i) => ({
        owner: 7 + (i % 2),
        conversation: `chat-${i % 20}`,
        topic: i % 4 === 0 ? 'work' : 'life',
        workspace: ['home', 'office', 'lab'][i % 3]!,
        kind: ['message', 'summary'][i % 2]!,
        ts: 1_700_000_000 + i * 30,
        lang: i % 3 === 0 ? 'en' : 'fr',
        rating: i % 5,
        internal_note: 'dropped by the mapping',
      }));
      // Chroma requires a vector per record; these 16-d ones stand for another model's output.
      const vectors = ids.map(() => Array.from({ length: 16 }, () => rand() - 0.5));
      for (let i = 0; i < ids.length; i += 1_000) {
        await handle.add({
          ids: ids.slice(i, i + 1_000),
          documents: docs.slice(i, i + 1_000),
          metadatas: metadatas.slice(i, i + 1_000),
          embeddings: vectors.slice(i, i + 1_000),
        });
      }
      // Two records the mapping cannot turn into memories.
      await handle.add({
        ids: ['no-owner', 'blank'],
        documents: ['a record without its owner key', '   '],
        metadatas: [{ conversation: 'chat-1' }, { owner: 7 }],
        embeddings: [Array.from({ length: 16 }, () => 0.1), Array.from({ length: 16 }, () => 0.2)],
      });
    });

    it('a dry run without re_embed reports that every vector must be embedded again (other dimension)', async () => {
      const result = await engine().run({
        migration_id: 'foreign-dry',
        collection: foreign,
        mapping,
        dry_run: true,
      });
      expect(result.stats).toMatchObject({
        read: TOTAL + 2,
        would_write: TOTAL,
        skipped: 2,
        skipped_by_reason: { missing_user_id: 1, missing_document: 1 },
        re_embedded: TOTAL,
        re_embedded_by_reason: { dimension: TOTAL },
      });
      expect(Object.keys(result.counts).sort()).toEqual(['7', '8']);
      expect(result.counts['7']!.by_project).toEqual({ home: 834, office: 833, lab: 833 });
    });

    it('migrates with the mapping and re_embed: fields mapped, texts embedded by the embedder, verified', async () => {
      const before = await count();
      const result = await engine().run({
        migration_id: 'foreign-1',
        collection: foreign,
        mapping,
        re_embed: true,
      });
      console.log(
        `migration of ${TOTAL} records (re-embedded): ${result.stats.records_per_second} records/s, ${result.stats.duration_ms} ms`,
      );
      expect(result.stats).toMatchObject({
        read: TOTAL + 2,
        written: TOTAL,
        skipped: 2,
        failed: 0,
        re_embedded: TOTAL,
        re_embedded_by_reason: { requested: TOTAL },
        copied_embeddings: 0,
      });
      expect(result.verification).toMatchObject({ verified: true, differences: [] });
      expect(await count()).toBe(before + TOTAL);

      const id = memoryIdFor(foreign, 'doc-00042');
      const stored = await pg.get('7', id);
      expect(stored).toMatchObject({
        id,
        user_id: '7',
        session_id: 'chat-2',
        session_type: 'life',
        project: 'home',
        content_type: 'message',
        metadata: { lang: 'en', rating: 2 },
        embedding_model: embedder.info.model,
        created_at: new Date((1_700_000_000 + 42 * 30) * 1000).toISOString(),
      });
      const [hit] = await pg.search((await embedder.embed([stored!.content]))[0]!, 1, { user_id: '7' });
      expect(hit?.id).toBe(id);
      expect(hit?.similarity).toBeGreaterThan(0.999);
    });
  });

  describe('a collection written to while it is migrated', () => {
    const moving = uniqueName('migrate_moving');
    let target: Awaited<ReturnType<typeof createTestSchema>>;
    let store: PgvectorMemoryStore;
    /** 30 of the own collection's memories under new ids, stored one by one: Chroma's order is theirs. */
    let rows: MemoryRecord[];

    beforeAll(async () => {
      target = await createTestSchema('migmoving');
      store = new PgvectorMemoryStore(
        { connectionString: servers.databaseUrl, schema: target.schema },
        logger,
      );
      await store.initialize();
      const source = new ChromaMemoryStore(
        { url: servers.chromaUrl, collection: moving, embeddingModel: embedder.info.model },
        logger,
      );
      await source.initialize();
      rows = records.slice(0, 30).map((r) => ({ ...r, id: randomUUID() }));
      for (const r of rows) await source.upsert([r]);
    });
    afterAll(async () => {
      await store?.close();
      await target?.drop();
      await dropTestCollections(moving);
    });

    it('verification reports the record a delete in Chroma shifted past the pages, and the copy it left', async () => {
      const handle = await rawChroma().getCollection({ name: moving });
      let deleted = false;
      const result = await engine({ target: store, defaults: { collection: moving, userId: '1' } }).run(
        { migration_id: 'moving-1', batch_size: 5 },
        {
          onProgress: async (p) => {
            // The first record goes once the first batch is written: Chroma's later pages start one on.
            if (p.phase === 'migrating' && p.done > 0 && !deleted) {
              deleted = true;
              await handle.delete({ ids: [rows[0]!.id] });
            }
          },
        },
      );
      expect(deleted).toBe(true);
      const stored = new Set((await store.findByIds(rows.map((r) => r.id))).map((r) => r.id));
      // Offset paging over the shifted collection never read one record (which one depends on the
      // pages read ahead); the deleted record was copied before it went.
      const neverRead = rows.filter((r) => !stored.has(r.id));
      expect(neverRead).toHaveLength(1);
      const lost = neverRead[0]!;
      const inChroma = rows.slice(1).filter((r) => r.user_id === lost.user_id).length;
      expect(stored.has(rows[0]!.id)).toBe(true);
      expect(result.stats.written).toBe(29);
      expect(result.verification!.verified).toBe(false);
      expect(result.verification!.differences).toEqual(
        expect.arrayContaining([
          {
            kind: 'count',
            user_id: lost.user_id,
            scope: 'total',
            chroma: inChroma,
            postgres: inChroma - 1,
          },
          { kind: 'missing', id: lost.id },
          { kind: 'count', scope: 'migrated', chroma: 28, postgres: 29 },
        ]),
      );

      // Run again: what was missed is copied, the rest skipped, and this run verifies. The copy Chroma
      // no longer holds belongs to the first run: rolling that back removes it.
      const again = await engine({ target: store, defaults: { collection: moving, userId: '1' } }).run({
        migration_id: 'moving-2',
        batch_size: 5,
      });
      expect(again.stats).toMatchObject({ written: 1, skipped_by_reason: { already_in_postgres: 28 } });
      expect(again.verification!.verified).toBe(true);
    });
  });

  describe('bad input: clear errors, nothing written', () => {
    let rowsBefore: number;
    beforeEach(async () => {
      rowsBefore = await count();
    });
    afterEach(async () => {
      expect(await count()).toBe(rowsBefore);
    });

    it('an unknown collection', async () => {
      const error = await engine()
        .run({ migration_id: 'bad-collection', collection: 'no_such_collection_here' })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NotFoundError);
      expect(error).toMatchObject({
        code: 'collection_not_found',
        message: 'Chroma collection "no_such_collection_here" does not exist',
      });
      expect(await checkpoints.load('bad-collection')).toBeNull();
    });

    it('Chroma down', async () => {
      const error = await engine({ source: new ChromaCollectionSource('http://127.0.0.1:1') })
        .run({ migration_id: 'bad-chroma', collection })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({
        code: 'source_unavailable',
        message: 'Chroma does not answer at http://127.0.0.1:1',
      });
    });

    it('PostgreSQL down, for a migration and for a dry run', async () => {
      const down = new PgvectorMemoryStore(
        { connectionString: CLOSED_PORT, connectionTimeoutMs: 2_000 },
        logger,
      );
      try {
        for (const dry_run of [false, true]) {
          const error = await engine({ target: down })
            .run({ migration_id: `bad-pg-${dry_run}`, collection, dry_run })
            .catch((e: unknown) => e);
          expect(error).toBeInstanceOf(UnavailableError);
          expect(error).toMatchObject({
            code: 'backend_unavailable',
            message: expect.stringMatching(/PostgreSQL is unavailable/),
          });
        }
      } finally {
        await down.close();
      }
    });

    it('an invalid mapping', async () => {
      for (const mapping of [
        { user_id: 5 },
        { owner: 'user' },
        { metadata: 'some' },
        { defaults: { content_type: 'not valid!' } },
      ]) {
        const error = await engine()
          .run({ migration_id: 'bad-mapping', collection: foreign, mapping })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ValidationError);
        expect(error).toMatchObject({
          code: 'invalid_mapping',
          message: expect.stringMatching(/^invalid mapping: /),
        });
      }
    });

    it('a permanent failure mid-migration, rolled back, leaves nothing behind', async () => {
      // After the rollback above, PostgreSQL holds none of the own collection's records but one.
      const failing = engine({ target: failingTarget(pg, 3, 'conflict') });
      await expect(
        failing.run({ migration_id: 'bad-midway', collection, batch_size: 300 }),
      ).rejects.toMatchObject({
        code: 'injected',
      });
      expect(await count(`migration_id = 'bad-midway'`)).toBe(599);
      expect(await failing.rollback('bad-midway')).toEqual({ migration_id: 'bad-midway', removed: 599 });
    });
  });
  describe('records that cannot be written as they are (a foreign collection, a PostgreSQL schema of its own)', () => {
    const names = { times: uniqueName('migrate_times'), cased: uniqueName('migrate_cased') };
    const more = { taken: uniqueName('migrate_taken'), held: uniqueName('migrate_held') };
    let target: Awaited<ReturnType<typeof createTestSchema>>;
    let store: PgvectorMemoryStore;
    const mapping = () => ({
      user_id: 'owner',
      session_id: 'conversation',
      project: 'workspace',
      created_at: 'ts',
      embedding_model: embedder.info.model,
    });
    type Source = { id: string; document: string; metadata: Record<string, string | number> };
    /** A collection of these records, with the worker model's vectors (so they are copied). */
    const createCollection = async (name: string, sources: Source[]) => {
      const handle = await rawChroma().createCollection({
        name,
        embeddingFunction: null,
        configuration: { hnsw: { space: 'cosine' } },
      });
      const vectors = await embedder.embed(sources.map((r) => r.document));
      await handle.add({
        ids: sources.map((r) => r.id),
        documents: sources.map((r) => r.document),
        metadatas: sources.map((r) => r.metadata),
        embeddings: vectors.map((v) => Array.from(v)),
      });
    };
    const migrate = (collection: string, migrationId: string, dryRun = false) =>
      engine({ target: store, defaults: { collection, userId: '1' } }).run({
        migration_id: migrationId,
        collection,
        mapping: mapping(),
        dry_run: dryRun,
      });
    const contentsOf = async (migrationId: string) =>
      (
        await sql.query<{ content: string }>(
          `SELECT content FROM ${target.schema}.memories WHERE migration_id = $1 ORDER BY content`,
          [migrationId],
        )
      ).rows.map((r) => r.content);

    beforeAll(async () => {
      target = await createTestSchema('migodd');
      store = new PgvectorMemoryStore(
        { connectionString: servers.databaseUrl, schema: target.schema },
        logger,
      );
      await store.initialize();
    });
    afterAll(async () => {
      await store?.close();
      await target?.drop();
      await dropTestCollections(...Object.values(names), ...Object.values(more));
    });

    it('skips a record whose timestamp is out of range with a reason naming the key, and migrates the rest', async () => {
      await createCollection(names.times, [
        { id: 'a', document: 'first record', metadata: { owner: 7, ts: 1_700_000_000 } },
        { id: 'far', document: 'a record from far in the future', metadata: { owner: 7, ts: 1e17 } },
        { id: 'c', document: 'third record', metadata: { owner: 7, ts: 1_700_000_060 } },
      ]);
      const expected = {
        read: 3,
        skipped: 1,
        skipped_by_reason: { invalid_timestamp: 1 },
        failed: 0,
      };
      const skipped = [{ id: 'far', reason: 'invalid_timestamp', message: expect.stringContaining('"ts"') }];
      const dry = await migrate(names.times, 'times-dry', true);
      expect(dry.stats).toMatchObject({ ...expected, would_write: 2 });
      expect(dry.skipped).toEqual(skipped);

      const result = await migrate(names.times, 'times-1');
      expect(result.stats).toMatchObject({ ...expected, written: 2 });
      expect(result.skipped).toEqual(skipped);
      expect(result.verification).toMatchObject({ verified: true, differences: [] });
      expect(await contentsOf('times-1')).toEqual(['first record', 'third record']);
    });

    it('keeps Chroma ids that differ only in case apart: two memories, neither overwritten', async () => {
      const upper = '00000000-0000-4000-8000-5555555555AB';
      const lower = '00000000-0000-4000-8000-5555555555ab';
      await createCollection(names.cased, [
        { id: upper, document: 'the upper-case one', metadata: { owner: 7 } },
        { id: lower, document: 'the lower-case one', metadata: { owner: 7 } },
        { id: 'doc-3', document: 'a third one', metadata: { owner: 7 } },
      ]);
      const result = await migrate(names.cased, 'cased-1');
      expect(result.stats).toMatchObject({ read: 3, written: 3, skipped: 0 });
      expect(result.verification).toMatchObject({ verified: true, differences: [] });
      expect(await contentsOf('cased-1')).toEqual([
        'a third one',
        'the lower-case one',
        'the upper-case one',
      ]);
      expect((await store.get('7', lower))?.content).toBe('the lower-case one');
      expect((await store.get('7', memoryIdFor(names.cased, upper)))?.content).toBe('the upper-case one');
    });

    it('skips, in a dry run and a run alike, a record whose memory id an earlier record took', async () => {
      const taken = memoryIdFor(more.taken, 'doc-1');
      await createCollection(more.taken, [
        { id: 'doc-1', document: 'the first to take the id', metadata: { owner: 7 } },
        { id: taken, document: 'the Chroma id is the derived id of doc-1', metadata: { owner: 7 } },
        { id: 'doc-3', document: 'a record of its own', metadata: { owner: 7 } },
      ]);
      const expected = { read: 3, skipped: 1, skipped_by_reason: { duplicate_id: 1 } };
      const dry = await migrate(more.taken, 'taken-dry', true);
      expect(dry.stats).toMatchObject({ ...expected, would_write: 2 });
      const result = await migrate(more.taken, 'taken-1');
      expect(result.stats).toMatchObject({ ...expected, written: 2 });
      expect(result.skipped).toEqual([
        { id: taken, reason: 'duplicate_id', message: expect.stringContaining(taken) },
      ]);
      expect(await contentsOf('taken-1')).toEqual(['a record of its own', 'the first to take the id']);
      expect((await store.get('7', taken))?.content).toBe('the first to take the id');
    });

    it('a dry run counts the content PostgreSQL already holds in the same user + session + project as the run does', async () => {
      const texts = Array.from({ length: 6 }, (_, i) => `a note held in scope or not, number ${i}`);
      const scoped = (i: number, project = 'p1') => ({
        id: `doc-${i}`,
        document: texts[i]!,
        metadata: { owner: 7, conversation: 's1', workspace: project, ts: 1_700_000_000 + i },
      });
      await createCollection(more.held, [0, 1, 2, 3, 4].map((i) => scoped(i)).concat(scoped(5, 'p9')));
      // Stored through the API: texts 0 and 1 in the records' own scope (duplicates); 2-5 in another
      // project, session, none, or no project where the record names one PostgreSQL does not have yet.
      const scopes: [number, string | null, string | null][] = [
        [0, 's1', 'p1'],
        [1, 's1', 'p1'],
        [2, 's1', 'p2'],
        [3, 's2', 'p1'],
        [4, null, null],
        [5, 's1', null],
      ];
      const vectors = await embedder.embed(scopes.map(([i]) => texts[i]!));
      await store.upsert(
        scopes.map(([i, session, project], k) => ({
          id: randomUUID(),
          user_id: '7',
          session_id: session,
          session_type: null,
          project,
          content: texts[i]!,
          content_type: 'note',
          metadata: {},
          content_hash: contentHash(texts[i]!),
          embedding: vectors[k]!,
          embedding_model: embedder.info.model,
          created_at: '2024-01-01T00:00:00.000Z',
          updated_at: '2024-01-01T00:00:00.000Z',
        })),
      );

      const dry = await migrate(more.held, 'held-dry', true);
      const result = await migrate(more.held, 'held-1');
      expect(result.stats).toMatchObject({
        read: 6,
        written: 4,
        skipped: 2,
        skipped_by_reason: { duplicate_content: 2 },
      });
      expect(dry.stats).toMatchObject({
        read: result.stats.read,
        would_write: result.stats.written,
        skipped: result.stats.skipped,
        skipped_by_reason: result.stats.skipped_by_reason,
      });
      expect(dry.skipped).toEqual(result.skipped);
      expect(result.verification).toMatchObject({ verified: true });
    });
  });
});
