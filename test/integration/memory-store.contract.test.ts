import { createHash, randomUUID } from 'node:crypto';
import {
  ChromaMemoryStore,
  ConflictError,
  createLogger,
  matchesFilter,
  parseWhere,
  PgvectorMemoryStore,
  UnavailableError,
  type FilterNode,
  type Memory,
  type MemoryFilter,
  type MemoryRecord,
  type MemoryStore,
  type SearchMode,
} from 'memory-core';
import { createTestSchema, dropTestCollections, servers, uniqueName, seededRandom } from '../setup/servers';

/**
 * The one contract every MemoryStore keeps, run against the real backends: PostgreSQL+pgvector (a
 * fresh schema for this file) and Chroma (a fresh collection for this file).
 */

const logger = createLogger({ service: 'memory-store-contract', level: 'silent' });
const DIM = 384;
/**
 * `hnsw.ef_search` of the PostgreSQL store in this suite. Uniformly random 384-d vectors are the
 * hardest case for HNSW (nearest neighbours are barely nearer than the rest): with m=16,
 * ef_construction=64 we measured recall@10 ≈ 0.58-0.61 at 100, 0.95-0.98 at 400, 0.98-0.99 at 600.
 */
const PG_EF_SEARCH = 600;
/** HNSW settings of the Chroma collection in this suite (the store's defaults, stated here). */
const CHROMA_HNSW = { maxNeighbors: 32, efConstruction: 200, efSearch: 400 };

interface Backend {
  name: string;
  /** ANN settings, stated in the recall test's name. */
  ann: string;
  create(): Promise<MemoryStore>;
  /** A store pointed at a port where nothing listens. */
  createUnreachable(): MemoryStore;
  /** A store on the same data that always scans exactly, when the backend has such an option. */
  createExact?(): MemoryStore;
  /** How the backend would run a search, when it can say. */
  explain?(
    store: MemoryStore,
    vector: Float32Array,
    k: number,
    filter: MemoryFilter,
  ): Promise<{ mode: SearchMode; plan: string }>;
  cleanup(): Promise<void>;
}

function postgresBackend(): Backend {
  let schema: { schema: string; drop: () => Promise<void> } | undefined;
  return {
    name: 'PgvectorMemoryStore',
    ann: `hnsw m=16 ef_construction=64, ef_search=${PG_EF_SEARCH}`,
    async create() {
      schema = await createTestSchema('contract');
      return new PgvectorMemoryStore(
        { connectionString: servers.databaseUrl, schema: schema.schema, efSearch: PG_EF_SEARCH },
        logger,
      );
    },
    createUnreachable: () =>
      new PgvectorMemoryStore(
        { connectionString: 'postgres://memory:memory@127.0.0.1:1/memory', connectionTimeoutMs: 2000 },
        logger,
      ),
    createExact: () =>
      new PgvectorMemoryStore(
        {
          connectionString: servers.databaseUrl,
          schema: schema!.schema,
          efSearch: PG_EF_SEARCH,
          exactScanThreshold: 1_000_000,
        },
        logger,
      ),
    explain: (store, vector, k, filter) => (store as PgvectorMemoryStore).explainSearch(vector, k, filter),
    async cleanup() {
      await schema?.drop();
    },
  };
}

function chromaBackend(): Backend {
  const collection = uniqueName('contract');
  return {
    name: 'ChromaMemoryStore',
    ann: `chroma hnsw max_neighbors=${CHROMA_HNSW.maxNeighbors} ef_construction=${CHROMA_HNSW.efConstruction}, ef_search=${CHROMA_HNSW.efSearch}`,
    create: () =>
      Promise.resolve(
        new ChromaMemoryStore(
          { url: servers.chromaUrl, collection, embeddingModel: 'test-model', hnsw: CHROMA_HNSW },
          logger,
        ),
      ),
    createUnreachable: () => new ChromaMemoryStore({ url: 'http://127.0.0.1:1', collection }, logger),
    async cleanup() {
      await dropTestCollections(collection);
    },
  };
}

// ---- test data ---------------------------------------------------------------------------------

/** A random direction (Gaussian coordinates, normalised): uniform on the unit sphere. */
function randomUnitVector(random: () => number): Float32Array {
  const v = new Float32Array(DIM);
  let norm = 0;
  for (let i = 0; i < DIM; i += 1) {
    const g = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    v[i] = g;
    norm += g * g;
  }
  norm = Math.sqrt(norm);
  for (let i = 0; i < DIM; i += 1) v[i] = v[i]! / norm;
  return v;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const vectorRandom = seededRandom(7);
let clock = Date.parse('2025-01-01T00:00:00.000Z');

type RecordInput = Partial<Omit<MemoryRecord, 'user_id' | 'content'>> & { user_id: string; content: string };

/** A record with defaults; each one is a second newer than the one before. */
function record(input: RecordInput): MemoryRecord {
  clock += 1000;
  const at = new Date(clock).toISOString();
  return {
    id: randomUUID(),
    session_id: null,
    session_type: null,
    project: null,
    content_type: 'note',
    metadata: {},
    content_hash: sha256(input.content),
    embedding_model: 'test-model',
    created_at: at,
    updated_at: at,
    embedding: randomUnitVector(vectorRandom),
    ...input,
  };
}

const ids = (memories: { id: string }[]) => memories.map((m) => m.id);
const sorted = (values: string[]) => [...values].sort();

// ---- the contract ------------------------------------------------------------------------------

describe.each([postgresBackend(), chromaBackend()])('MemoryStore contract: $name', (backend) => {
  let store: MemoryStore;

  beforeAll(async () => {
    store = await backend.create();
    await store.initialize();
  });

  afterAll(async () => {
    await store?.close();
    await backend.cleanup();
  });

  describe('initialize', () => {
    it('can run again on an initialized store without losing data', async () => {
      const r = record({ user_id: 'u-init', content: 'kept across initialize' });
      await store.upsert([r]);
      await store.initialize();
      expect(await store.get('u-init', r.id)).not.toBeNull();
    });
  });

  describe('upsert and get', () => {
    it('returns every field of a stored memory as it was written', async () => {
      const r = record({
        user_id: 'u-roundtrip',
        content: 'The meeting moved to Thursday.',
        session_id: 'sess-1',
        session_type: 'planning',
        project: 'apollo',
        content_type: 'insight',
        metadata: { priority: 3, ratio: 0.25, source: 'chat', pinned: true, negative: -7, large: 1e15 },
      });
      const [result] = await store.upsert([r]);
      expect(result).toEqual({ requested_id: r.id, id: r.id, status: 'created' });

      const got = await store.get('u-roundtrip', r.id);
      expect(got).toEqual({
        id: r.id,
        user_id: 'u-roundtrip',
        session_id: 'sess-1',
        session_type: 'planning',
        project: 'apollo',
        content: 'The meeting moved to Thursday.',
        content_type: 'insight',
        metadata: { priority: 3, ratio: 0.25, source: 'chat', pinned: true, negative: -7, large: 1e15 },
        content_hash: r.content_hash,
        embedding_model: 'test-model',
        created_at: expect.any(String),
        updated_at: expect.any(String),
      } satisfies Memory);
      expect(Date.parse(got!.created_at)).toBe(Date.parse(r.created_at));
      expect(Date.parse(got!.updated_at)).toBe(Date.parse(r.updated_at));
    });

    it('returns null scope fields and empty metadata for a memory stored without them', async () => {
      const r = record({ user_id: 'u-roundtrip', content: 'no scope at all' });
      await store.upsert([r]);
      const got = await store.get('u-roundtrip', r.id);
      expect(got).toMatchObject({ session_id: null, session_type: null, project: null, metadata: {} });
    });

    it("returns null for another user's memory, an unknown id and a malformed id", async () => {
      const r = record({ user_id: 'u-owner', content: 'private' });
      await store.upsert([r]);
      expect(await store.get('u-intruder', r.id)).toBeNull();
      expect(await store.get('u-owner', randomUUID())).toBeNull();
      expect(await store.get('u-owner', 'not-a-uuid')).toBeNull();
    });

    it('reports results in input order for a mixed batch (created, duplicate, updated)', async () => {
      const a = record({ user_id: 'u-order', content: 'first' });
      await store.upsert([a]);
      const b = record({ user_id: 'u-order', content: 'second' });
      const dupOfA = record({ user_id: 'u-order', content: 'first' });
      const aAgain = { ...a, metadata: { edited: true } };
      const results = await store.upsert([b, dupOfA, aAgain]);
      expect(results).toEqual([
        { requested_id: b.id, id: b.id, status: 'created' },
        { requested_id: dupOfA.id, id: a.id, status: 'duplicate' },
        { requested_id: a.id, id: a.id, status: 'updated' },
      ]);
    });

    it('writing the same record twice (a retried job) updates it in place: one memory, same id', async () => {
      const r = record({ user_id: 'u-idem', content: 'retried write', session_id: 's', metadata: { v: 1 } });
      expect(await store.upsert([r])).toEqual([{ requested_id: r.id, id: r.id, status: 'created' }]);
      expect(await store.upsert([r])).toEqual([{ requested_id: r.id, id: r.id, status: 'updated' }]);
      const listed = await store.list({ user_id: 'u-idem' }, { limit: 10, offset: 0 });
      expect(listed.total).toBe(1);
      expect(ids(listed.items)).toEqual([r.id]);
    });

    it('an upsert by id replaces content and metadata (dropped keys disappear) and keeps created_at', async () => {
      const r = record({ user_id: 'u-update', content: 'draft', metadata: { keep: 'yes', drop: 'me' } });
      await store.upsert([r]);
      const later = new Date(clock + 60_000).toISOString();
      const changed = {
        ...r,
        content: 'final',
        content_hash: sha256('final'),
        metadata: { keep: 'still' },
        created_at: later,
        updated_at: later,
      };
      expect(await store.upsert([changed])).toEqual([{ requested_id: r.id, id: r.id, status: 'updated' }]);
      const got = await store.get('u-update', r.id);
      expect(got).toMatchObject({
        content: 'final',
        content_hash: sha256('final'),
        metadata: { keep: 'still' },
      });
      expect(Date.parse(got!.created_at)).toBe(Date.parse(r.created_at));
      expect(Date.parse(got!.updated_at)).toBe(Date.parse(later));
    });

    it("rejects an upsert whose id belongs to another user and leaves that user's memory unchanged", async () => {
      const mine = record({ user_id: 'u-victim', content: 'my memory' });
      await store.upsert([mine]);
      const hijack = {
        ...mine,
        user_id: 'u-attacker',
        content: 'overwritten',
        content_hash: sha256('overwritten'),
      };
      await expect(store.upsert([hijack])).rejects.toBeInstanceOf(ConflictError);
      expect(await store.get('u-victim', mine.id)).toMatchObject({
        content: 'my memory',
        user_id: 'u-victim',
      });
      expect(await store.get('u-attacker', mine.id)).toBeNull();
    });

    it('returns an empty result for an empty batch', async () => {
      expect(await store.upsert([])).toEqual([]);
    });
  });

  describe('dedup', () => {
    it('storing the same content again in the same user + session + project returns the existing id', async () => {
      const first = record({ user_id: 'u-dedup', content: 'same words', session_id: 's1', project: 'p1' });
      const again = record({ user_id: 'u-dedup', content: 'same words', session_id: 's1', project: 'p1' });
      await store.upsert([first]);
      expect(await store.upsert([again])).toEqual([
        { requested_id: again.id, id: first.id, status: 'duplicate' },
      ]);
      expect(await store.get('u-dedup', again.id)).toBeNull();
      const total = (
        await store.list(
          { user_id: 'u-dedup', where: { field: 'session_id', op: '$eq', value: 's1' } },
          { limit: 10, offset: 0 },
        )
      ).total;
      expect(total).toBe(1);
    });

    it('dedups within one batch: the second copy points at the first', async () => {
      const a = record({ user_id: 'u-dedup-batch', content: 'twice in one batch' });
      const b = record({ user_id: 'u-dedup-batch', content: 'twice in one batch' });
      expect(await store.upsert([a, b])).toEqual([
        { requested_id: a.id, id: a.id, status: 'created' },
        { requested_id: b.id, id: a.id, status: 'duplicate' },
      ]);
      expect((await store.list({ user_id: 'u-dedup-batch' }, { limit: 10, offset: 0 })).total).toBe(1);
    });

    it('dedups the same content written concurrently: one memory, the others point at it', async () => {
      const copies = Array.from({ length: 8 }, () =>
        record({ user_id: 'u-dedup-concurrent', content: 'written at once', session_id: 's' }),
      );
      const results = (await Promise.all(copies.map((c) => store.upsert([c])))).flat();
      const created = results.filter((r) => r.status === 'created');
      expect(created).toHaveLength(1);
      expect(results.filter((r) => r.status === 'duplicate').map((r) => r.id)).toEqual(
        Array(copies.length - 1).fill(created[0]!.id),
      );
      expect((await store.list({ user_id: 'u-dedup-concurrent' }, { limit: 10, offset: 0 })).total).toBe(1);
    });

    it('the same content in another session, project, no session, or for another user is a new memory', async () => {
      const base = { content: 'shared sentence' };
      const variants = [
        record({ ...base, user_id: 'u-dedup-scope', session_id: 's1', project: 'p1' }),
        record({ ...base, user_id: 'u-dedup-scope', session_id: 's2', project: 'p1' }),
        record({ ...base, user_id: 'u-dedup-scope', session_id: 's1', project: 'p2' }),
        record({ ...base, user_id: 'u-dedup-scope', session_id: 's1' }),
        record({ ...base, user_id: 'u-dedup-scope' }),
        record({ ...base, user_id: 'u-dedup-scope-2', session_id: 's1', project: 'p1' }),
      ];
      const results = await store.upsert(variants);
      expect(results.map((r) => r.status)).toEqual(Array(variants.length).fill('created'));
      expect(new Set(results.map((r) => r.id)).size).toBe(variants.length);
      expect((await store.list({ user_id: 'u-dedup-scope' }, { limit: 10, offset: 0 })).total).toBe(5);
    });

    it('different content in the same scope is not a duplicate', async () => {
      const a = record({ user_id: 'u-dedup-diff', content: 'one', session_id: 's' });
      const b = record({ user_id: 'u-dedup-diff', content: 'two', session_id: 's' });
      expect((await store.upsert([a, b])).map((r) => r.status)).toEqual(['created', 'created']);
    });
  });

  describe('unicode', () => {
    const texts = [
      'Zoë’s café — naïve façade',
      '日本語のメモ：東京で会議',
      'مرحبا بالعالم',
      'emoji 🧠💾🚀 and a ZWJ family 👩‍👩‍👧',
      'combining: e\u0301 vs é, math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
    ];

    it('stores and returns unicode content, metadata and scope values unchanged', async () => {
      const records = texts.map((content, i) =>
        record({
          user_id: 'u-unicode',
          content,
          session_id: 'sesión-日本',
          project: 'проект',
          metadata: { label: `ラベル-${i}`, note: content },
        }),
      );
      await store.upsert(records);
      for (const r of records) {
        expect(await store.get('u-unicode', r.id)).toMatchObject({
          content: r.content,
          session_id: 'sesión-日本',
          project: 'проект',
          metadata: { label: r.metadata.label, note: r.content },
        });
      }
      const byLabel = await store.list(
        { user_id: 'u-unicode', where: parseWhere({ label: 'ラベル-3' }) },
        { limit: 10, offset: 0 },
      );
      expect(byLabel.items.map((m) => m.content)).toEqual([texts[3]]);
      const byScope = await store.list(
        { user_id: 'u-unicode', where: parseWhere({ session_id: 'sesión-日本', project: 'проект' }) },
        { limit: 10, offset: 0 },
      );
      expect(byScope.total).toBe(texts.length);
      const hit = await store.search(records[1]!.embedding, 1, { user_id: 'u-unicode' });
      expect(hit[0]).toMatchObject({ id: records[1]!.id, content: texts[1] });
    });
  });

  describe('list', () => {
    const user = 'u-list';
    let stored: MemoryRecord[];

    beforeAll(async () => {
      stored = Array.from({ length: 11 }, (_, i) =>
        record({ user_id: user, content: `entry ${i}`, session_id: i % 2 ? 'odd' : 'even' }),
      );
      // Three memories share one timestamp: ties are broken by id, descending.
      const tie = new Date(clock + 5000).toISOString();
      clock += 10_000;
      for (const r of stored.slice(8)) Object.assign(r, { created_at: tie, updated_at: tie });
      await store.upsert([...stored].reverse());
      await store.upsert([record({ user_id: 'u-list-other', content: 'not mine' })]);
    });

    const newestFirst = () =>
      [...stored].sort(
        (a, b) =>
          Date.parse(b.created_at) - Date.parse(a.created_at) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
      );

    it('lists newest first (created_at, then id, descending) with the total', async () => {
      const page = await store.list({ user_id: user }, { limit: 50, offset: 0 });
      expect(page.total).toBe(11);
      expect(ids(page.items)).toEqual(ids(newestFirst()));
    });

    it('pages are stable: walking pages of 3 yields every memory once, in order', async () => {
      const seen: string[] = [];
      for (let offset = 0; offset < 11; offset += 3) {
        const page = await store.list({ user_id: user }, { limit: 3, offset });
        expect(page.total).toBe(11);
        expect(page.items.length).toBe(Math.min(3, 11 - offset));
        seen.push(...ids(page.items));
      }
      expect(seen).toEqual(ids(newestFirst()));
    });

    it('an offset past the end gives no items and still the total', async () => {
      expect(await store.list({ user_id: user }, { limit: 5, offset: 100 })).toEqual({
        items: [],
        total: 11,
      });
    });

    it('lists within a filter, newest first', async () => {
      const page = await store.list(
        { user_id: user, where: parseWhere({ session_id: 'odd' }) },
        { limit: 50, offset: 0 },
      );
      expect(ids(page.items)).toEqual(ids(newestFirst().filter((r) => r.session_id === 'odd')));
      expect(page.total).toBe(5);
    });

    it('lists nothing for a user without memories', async () => {
      expect(await store.list({ user_id: 'u-nobody' }, { limit: 10, offset: 0 })).toEqual({
        items: [],
        total: 0,
      });
    });
  });

  describe('filters', () => {
    const user = 'u-filter';
    // name → memory; scope fields and typed metadata chosen so that every operator has matches and misses.
    const fixture: Record<string, RecordInput> = {
      a: {
        user_id: user,
        content: 'a',
        session_id: 's1',
        project: 'alpha',
        session_type: 'work',
        metadata: { n: 1, tag: 'x', flag: true, score: 0.5 },
      },
      b: {
        user_id: user,
        content: 'b',
        session_id: 's1',
        project: 'beta',
        content_type: 'insight',
        metadata: { n: '1', tag: 'y', flag: false, score: 2 },
      },
      c: {
        user_id: user,
        content: 'c',
        session_id: 's2',
        project: 'alpha',
        session_type: 'chat',
        metadata: { n: 2, tag: 'x', score: 10 },
      },
      d: { user_id: user, content: 'd', session_id: 's2', content_type: 'reflection', metadata: { n: 3 } },
      e: { user_id: user, content: 'e', metadata: {} },
      f: {
        user_id: user,
        content: 'f',
        session_id: 's3',
        project: 'gamma',
        content_type: 'conversation',
        metadata: { tag: 'z', flag: true, score: -1, label: '日本語' },
      },
    };
    const names = new Map<string, string>();
    const memories: MemoryRecord[] = [];

    beforeAll(async () => {
      for (const [name, input] of Object.entries(fixture)) {
        const r = record(input);
        names.set(r.id, name);
        memories.push(r);
      }
      // Another user with the same shapes: never returned, whatever the filter.
      const other = Object.values(fixture).map((input) => record({ ...input, user_id: 'u-filter-other' }));
      await store.upsert([...memories, ...other]);
    });

    const cases: [string, Record<string, unknown>, string[]][] = [
      ['scope $eq (plain value)', { session_id: 's1' }, ['a', 'b']],
      ['scope $eq', { session_id: { $eq: 's1' } }, ['a', 'b']],
      ['scope $ne skips memories without a session', { session_id: { $ne: 's1' } }, ['c', 'd', 'f']],
      ['scope $in', { session_id: { $in: ['s1', 's3'] } }, ['a', 'b', 'f']],
      ['scope $nin skips memories without a session', { session_id: { $nin: ['s1'] } }, ['c', 'd', 'f']],
      ['project by name', { project: 'alpha' }, ['a', 'c']],
      ['project $ne skips memories without a project', { project: { $ne: 'alpha' } }, ['b', 'f']],
      ['project $in', { project: { $in: ['beta', 'gamma'] } }, ['b', 'f']],
      ['project $nin', { project: { $nin: ['beta'] } }, ['a', 'c', 'f']],
      ['an unknown project matches nothing', { project: 'nonexistent' }, []],
      [
        '$ne an unknown project matches every memory with a project',
        { project: { $ne: 'nonexistent' } },
        ['a', 'b', 'c', 'f'],
      ],
      ['content_type $eq', { content_type: 'note' }, ['a', 'c', 'e']],
      ['content_type $in', { content_type: { $in: ['insight', 'reflection'] } }, ['b', 'd']],
      ['session_type $eq', { session_type: 'work' }, ['a']],
      ['session_type $ne skips memories without one', { session_type: { $ne: 'work' } }, ['c']],
      ['metadata number 1 does not match string "1"', { n: 1 }, ['a']],
      ['metadata string "1" does not match number 1', { n: '1' }, ['b']],
      ['metadata $ne skips memories without the key', { n: { $ne: 1 } }, ['b', 'c', 'd']],
      ['metadata $in is typed', { n: { $in: [1, 2] } }, ['a', 'c']],
      ['metadata $in with strings', { n: { $in: ['1'] } }, ['b']],
      ['metadata $nin skips memories without the key', { n: { $nin: [1, 2] } }, ['b', 'd']],
      ['$gt compares numbers only', { n: { $gt: 1 } }, ['c', 'd']],
      ['$gte', { n: { $gte: 1 } }, ['a', 'c', 'd']],
      ['$lt', { n: { $lt: 3 } }, ['a', 'c']],
      ['$lte', { n: { $lte: 3 } }, ['a', 'c', 'd']],
      ['a range on decimals', { score: { $gt: 0.4, $lt: 5 } }, ['a', 'b']],
      ['$lt on negatives', { score: { $lt: 0 } }, ['f']],
      ['boolean true', { flag: true }, ['a', 'f']],
      ['boolean false', { flag: false }, ['b']],
      ['boolean $ne skips memories without the key', { flag: { $ne: true } }, ['b']],
      ['the string "true" does not match boolean true', { flag: 'true' }, []],
      ['metadata $nin', { tag: { $nin: ['x'] } }, ['b', 'f']],
      ['unicode metadata value', { label: '日本語' }, ['f']],
      ['$ne on a key no memory has matches nothing', { missing: { $ne: 'x' } }, []],
      ['$nin on a key no memory has matches nothing', { missing: { $nin: ['x'] } }, []],
      ['$and', { $and: [{ session_id: 's1' }, { tag: 'x' }] }, ['a']],
      ['$or', { $or: [{ project: 'beta' }, { n: { $gte: 3 } }] }, ['b', 'd']],
      [
        'nested $or of $and',
        { $or: [{ $and: [{ content_type: 'note' }, { score: { $gte: 1 } }] }, { flag: false }] },
        ['b', 'c'],
      ],
      ['several keys are ANDed', { content_type: 'note', tag: 'x' }, ['a', 'c']],
      ['user_id in where cannot widen the scope to another user', { user_id: 'u-filter-other' }, []],
    ];

    it.each(cases)('%s: list returns exactly the matching memories', async (_label, where, expected) => {
      const node: FilterNode = parseWhere(where);
      // The reference semantics (memory/filter.ts) agree with the expectation written here.
      expect(sorted(memories.filter((m) => matchesFilter(m, node)).map((m) => names.get(m.id)!))).toEqual(
        expected,
      );
      const page = await store.list({ user_id: user, where: node }, { limit: 100, offset: 0 });
      expect(sorted(page.items.map((m) => names.get(m.id) ?? `foreign:${m.user_id}`))).toEqual(expected);
      expect(page.total).toBe(expected.length);
    });

    it.each(cases)('%s: search returns exactly the matching memories', async (_label, where, expected) => {
      const hits = await store.search(randomUnitVector(vectorRandom), 100, {
        user_id: user,
        where: parseWhere(where),
      });
      expect(sorted(hits.map((m) => names.get(m.id) ?? `foreign:${m.user_id}`))).toEqual(expected);
    });

    it('stats count within a filter', async () => {
      const stats = await store.stats({ user_id: user, where: parseWhere({ n: { $gte: 1 } }) });
      expect(stats).toEqual({
        total: 3,
        by_content_type: { note: 2, reflection: 1 },
        by_session: { s1: 1, s2: 2 },
        by_project: { alpha: 2 },
      });
    });
  });

  describe('filters on numbers beyond 64-bit integers', () => {
    const user = 'u-filter-big';
    // JSON integers: signed 64-bit below 2^63, unsigned 64-bit from 2^63 up to 2^64, floats above.
    const values = {
      minusHuge: -1e19,
      belowTwo63: 2 ** 63 - 1024,
      twoTo63: 2 ** 63,
      e19: 1e19,
      twoTo64: 2 ** 64,
    };
    const names = new Map<string, string>();

    beforeAll(async () => {
      const records = Object.entries(values).map(([name, big]) => {
        const r = record({ user_id: user, content: name, metadata: { big } });
        names.set(r.id, name);
        return r;
      });
      await store.upsert(records);
    });

    const listed = async (where: Record<string, unknown>) =>
      sorted(
        (await store.list({ user_id: user, where: parseWhere(where) }, { limit: 10, offset: 0 })).items.map(
          (m) => names.get(m.id)!,
        ),
      );

    it('stores them and compares operands outside 2^63..2^64 the same on both backends', async () => {
      expect(await listed({ big: { $gt: 2 ** 62 } })).toEqual(['belowTwo63', 'e19', 'twoTo63', 'twoTo64']);
      expect(await listed({ big: { $gte: 2 ** 64 } })).toEqual(['twoTo64']);
      expect(await listed({ big: { $lt: -1e18 } })).toEqual(['minusHuge']);
      expect(await listed({ big: 2 ** 63 - 1024 })).toEqual(['belowTwo63']);
    });

    it('compares operands from 2^63 up to 2^64 on PostgreSQL, and refuses them clearly on Chroma', async () => {
      const inRange = [{ big: { $gt: 2 ** 63 } }, { big: 1e19 }, { big: { $in: [5, 1e19] } }];
      for (const where of inRange) {
        if (backend.name === 'PgvectorMemoryStore') {
          await expect(listed(where)).resolves.toEqual(expect.any(Array));
        } else {
          await expect(listed(where)).rejects.toMatchObject({ code: 'unsupported_filter', httpStatus: 400 });
        }
      }
      if (backend.name === 'PgvectorMemoryStore')
        expect(await listed({ big: { $gt: 2 ** 63 } })).toEqual(['e19', 'twoTo64']);
    });
  });

  describe('fractional numbers of 16-17 significant digits', () => {
    const user = 'u-float-exact';
    // Chroma's server parses about 1 in 10 of such numbers to a neighbouring double; the values
    // span magnitudes and signs, and each memory holds 25 of them.
    const random = seededRandom(1729);
    const values = Array.from({ length: 200 }, (_, i) => (random() - 0.5) * 10 ** ((i % 12) - 4));
    const keyOf = (i: number) => `f${i % 25}`;
    const records = Array.from({ length: values.length / 25 }, (_, r) =>
      record({
        user_id: user,
        content: `exact numbers ${r}`,
        metadata: Object.fromEntries(values.slice(r * 25, r * 25 + 25).map((v, i) => [keyOf(i), v])),
      }),
    );

    beforeAll(async () => {
      await store.upsert(records);
    });

    it('come back exactly as written, through get, list and search', async () => {
      const written = records.map((r) => ({ id: r.id, metadata: r.metadata }));
      const got = await Promise.all(records.map((r) => store.get(user, r.id)));
      expect(got.map((m) => ({ id: m?.id, metadata: m?.metadata }))).toEqual(written);
      const listed = await store.list({ user_id: user }, { limit: 100, offset: 0 });
      const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
      expect(listed.items.map((m) => ({ id: m.id, metadata: m.metadata })).sort(byId)).toEqual(
        [...written].sort(byId),
      );
      const hits = await store.search(records[0]!.embedding, 10, { user_id: user });
      for (const hit of hits) expect(hit.metadata).toEqual(written.find((m) => m.id === hit.id)!.metadata);
      expect(hits).toHaveLength(records.length);
    });

    it('an equality filter on each value written finds its memory', async () => {
      for (const [r, memory] of records.entries()) {
        for (const i of [0, 7, 24]) {
          const where = parseWhere({ [keyOf(i)]: values[r * 25 + i]! });
          const found = await store.list({ user_id: user, where }, { limit: 10, offset: 0 });
          expect(ids(found.items)).toEqual([memory.id]);
        }
      }
    });

    it('a rewrite that turns a number into an integer or text drops its exact copy with it', async () => {
      const first = records[0]!;
      const rewritten = { ...first, metadata: { ...first.metadata, f0: 5, f1: 'now text' } };
      await store.upsert([rewritten]);
      expect((await store.get(user, first.id))?.metadata).toEqual(rewritten.metadata);
      await store.upsert([first]);
      expect((await store.get(user, first.id))?.metadata).toEqual(first.metadata);
    });
  });

  describe('search', () => {
    const user = 'u-search';
    let base: Float32Array;
    let records: MemoryRecord[];

    beforeAll(async () => {
      // Vectors at known angles from `base`: similarity falls as the index grows.
      const random = seededRandom(11);
      base = randomUnitVector(random);
      // A direction orthogonal to `base`, so that similarity to `base` is exactly cos(t).
      const noise = randomUnitVector(random);
      const along = cosine(noise, base);
      for (let d = 0; d < DIM; d += 1) noise[d] = noise[d]! - along * base[d]!;
      records = [0, 0.2, 0.4, 0.6, 0.8].map((t, i) => {
        const v = new Float32Array(DIM);
        for (let d = 0; d < DIM; d += 1) v[d] = Math.cos(t) * base[d]! + Math.sin(t) * noise[d]!;
        return record({
          user_id: user,
          content: `angle ${i}`,
          embedding: v,
          session_id: i < 3 ? 'near' : 'far',
        });
      });
      await store.upsert(records);
      // The same vector for another user is never returned.
      await store.upsert([
        record({ user_id: 'u-search-other', content: 'angle 0', embedding: records[0]!.embedding }),
      ]);
    });

    it('returns the nearest memories best first, with cosine similarity', async () => {
      const hits = await store.search(base, 5, { user_id: user });
      expect(ids(hits)).toEqual(ids(records));
      hits.forEach((hit, i) =>
        expect(hit.similarity).toBeCloseTo(cosine(base, records[i]!.embedding as Float32Array), 4),
      );
      expect(hits[0]!.similarity).toBeCloseTo(1, 4);
      expect(hits[0]).toMatchObject({ user_id: user, content: 'angle 0', session_id: 'near' });
    });

    it('returns at most k hits', async () => {
      expect(ids(await store.search(base, 2, { user_id: user }))).toEqual(ids(records.slice(0, 2)));
    });

    it('searches within the filter only', async () => {
      const hits = await store.search(base, 5, { user_id: user, where: parseWhere({ session_id: 'far' }) });
      expect(ids(hits)).toEqual(ids(records.slice(3)));
    });

    it('returns nothing for a user without memories', async () => {
      expect(await store.search(base, 5, { user_id: 'u-search-nobody' })).toEqual([]);
    });
  });

  describe('delete', () => {
    it("deletes by id once, and never another user's memory", async () => {
      const mine = record({ user_id: 'u-del', content: 'to delete' });
      const theirs = record({ user_id: 'u-del-other', content: 'keep me' });
      await store.upsert([mine, theirs]);
      expect(await store.delete('u-del', theirs.id)).toBe(false);
      expect(await store.get('u-del-other', theirs.id)).not.toBeNull();
      expect(await store.delete('u-del', mine.id)).toBe(true);
      expect(await store.get('u-del', mine.id)).toBeNull();
      expect(await store.delete('u-del', mine.id)).toBe(false);
      expect(await store.delete('u-del', 'not-a-uuid')).toBe(false);
    });

    it('a deleted memory no longer dedups: the same content is created again', async () => {
      const r = record({ user_id: 'u-del-dedup', content: 'comes back' });
      await store.upsert([r]);
      await store.delete('u-del-dedup', r.id);
      const again = record({ user_id: 'u-del-dedup', content: 'comes back' });
      expect(await store.upsert([again])).toEqual([
        { requested_id: again.id, id: again.id, status: 'created' },
      ]);
    });

    it("deletes by scope only the matching memories of that user, never other scopes' or users' rows", async () => {
      const rows = [
        record({ user_id: 'u-scope', content: '1', session_id: 's1', project: 'p' }),
        record({ user_id: 'u-scope', content: '2', session_id: 's1' }),
        record({ user_id: 'u-scope', content: '3', session_id: 's2', project: 'p' }),
        record({ user_id: 'u-scope', content: '4' }),
        record({ user_id: 'u-scope-other', content: '5', session_id: 's1', project: 'p' }),
      ];
      await store.upsert(rows);
      // Asked which of some ids it removed: of the session's two, one other scope's, another user's, an
      // id nobody holds and a string that is no id, only the session's own.
      const asked = [rows[1]!.id, rows[2]!.id, rows[4]!.id, rows[0]!.id, randomUUID(), 'not-an-id'];
      const removed = await store.deleteByScope(
        { user_id: 'u-scope', where: parseWhere({ session_id: 's1' }) },
        asked,
      );
      expect(removed.count).toBe(2);
      expect(removed.among.sort()).toEqual([rows[0]!.id, rows[1]!.id].sort());
      const left = await store.list({ user_id: 'u-scope' }, { limit: 10, offset: 0 });
      expect(sorted(ids(left.items))).toEqual(sorted([rows[2]!.id, rows[3]!.id]));
      expect(await store.get('u-scope-other', rows[4]!.id)).not.toBeNull();

      expect(await store.deleteByScope({ user_id: 'u-scope', where: parseWhere({ project: 'p' }) })).toEqual({
        count: 1,
        among: [],
      });
      expect(
        (await store.deleteByScope({ user_id: 'u-scope', where: parseWhere({ project: 'p' }) })).count,
      ).toBe(0);
      expect((await store.deleteByScope({ user_id: 'u-scope' })).count).toBe(1);
      expect((await store.list({ user_id: 'u-scope' }, { limit: 10, offset: 0 })).total).toBe(0);
      expect((await store.list({ user_id: 'u-scope-other' }, { limit: 10, offset: 0 })).total).toBe(1);
    });
  });

  describe('stats', () => {
    it('counts per content_type, session and project; memories without a session or project are only in the total', async () => {
      const user = 'u-stats';
      await store.upsert([
        record({ user_id: user, content: '1', content_type: 'note', session_id: 's1', project: 'p1' }),
        record({ user_id: user, content: '2', content_type: 'note', session_id: 's1' }),
        record({ user_id: user, content: '3', content_type: 'insight', session_id: 's2', project: 'p1' }),
        record({ user_id: user, content: '4', content_type: 'insight', project: 'p2' }),
        record({ user_id: user, content: '5', content_type: 'reflection' }),
        record({
          user_id: 'u-stats-other',
          content: '6',
          content_type: 'note',
          session_id: 's1',
          project: 'p1',
        }),
      ]);
      expect(await store.stats({ user_id: user })).toEqual({
        total: 5,
        by_content_type: { note: 2, insight: 2, reflection: 1 },
        by_session: { s1: 2, s2: 1 },
        by_project: { p1: 2, p2: 1 },
      });
    });

    it('gives zeros for a user without memories', async () => {
      expect(await store.stats({ user_id: 'u-stats-nobody' })).toEqual({
        total: 0,
        by_content_type: {},
        by_session: {},
        by_project: {},
      });
    });
  });

  describe('status', () => {
    it('reports reachable, the memory count, the index and versions', async () => {
      await store.upsert([record({ user_id: 'u-status', content: 'counted' })]);
      const status = await store.status();
      expect(status).toMatchObject({ backend: store.backend, reachable: true });
      expect(status.memory_count).toBeGreaterThanOrEqual(1);
      expect(status.index).toMatch(/hnsw/i);
      expect(Object.keys(status.versions ?? {}).length).toBeGreaterThan(0);
      expect(status.error).toBeUndefined();
    });
  });

  describe('when the server does not answer', () => {
    let down: MemoryStore;
    beforeAll(() => {
      down = backend.createUnreachable();
    });
    afterAll(async () => {
      await down.close();
    });

    it('status() reports reachable: false with the error instead of throwing', async () => {
      const status = await down.status();
      expect(status).toMatchObject({ backend: down.backend, reachable: false });
      expect(status.error).toEqual(expect.any(String));
      expect(status.error!.length).toBeGreaterThan(0);
    });

    it('calls fail with UnavailableError (backend_unavailable)', async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ['upsert', () => down.upsert([record({ user_id: 'u-down', content: 'lost' })])],
        ['search', () => down.search(randomUnitVector(vectorRandom), 5, { user_id: 'u-down' })],
        ['list', () => down.list({ user_id: 'u-down' }, { limit: 5, offset: 0 })],
        ['get', () => down.get('u-down', randomUUID())],
      ];
      const outcomes: [string, string, unknown][] = [];
      for (const [name, call] of calls) {
        const error: unknown = await call().then(
          () => new Error('resolved'),
          (e: unknown) => e,
        );
        outcomes.push([
          name,
          error instanceof UnavailableError ? 'UnavailableError' : String(error),
          (error as { code?: unknown }).code,
        ]);
      }
      expect(outcomes).toEqual(calls.map(([name]) => [name, 'UnavailableError', 'backend_unavailable']));
    });
  });

  describe('ranking over 10k stored vectors', () => {
    const user = 'u-rank';
    const COUNT = 10_000;
    const SMALL_EVERY = 20; // every 20th vector is also in the small session: 500 of 10k
    const vectors: Float32Array[] = [];
    const rankIds: string[] = [];
    const random = seededRandom(2025);

    beforeAll(async () => {
      const started = Date.now();
      for (let i = 0; i < COUNT; i += 1) {
        vectors.push(randomUnitVector(random));
        rankIds.push(randomUUID());
      }
      for (let start = 0; start < COUNT; start += 1000) {
        const batch = vectors.slice(start, start + 1000).map((embedding, j) => {
          const i = start + j;
          return record({
            id: rankIds[i]!,
            user_id: user,
            content: `vector ${i}`,
            session_id: i % SMALL_EVERY === 0 ? 'small' : 'bulk',
            metadata: { i },
            embedding,
          });
        });
        const results = await store.upsert(batch);
        expect(results.every((r) => r.status === 'created')).toBe(true);
      }
      console.info(
        `${backend.name}: stored ${COUNT} vectors in batches of 1000 in ${Date.now() - started} ms`,
      );
    }, 600_000);

    /** Every stored vector with its similarity to q, best first (float64 over the stored float32 values). */
    function bruteForce(q: Float32Array, inScope: (i: number) => boolean): { id: string; sim: number }[] {
      const all: { id: string; sim: number }[] = [];
      for (let i = 0; i < COUNT; i += 1)
        if (inScope(i)) all.push({ id: rankIds[i]!, sim: cosine(q, vectors[i]!) });
      return all.sort((a, b) => b.sim - a.sim);
    }

    /**
     * The store's top-k equals brute force: same ids in the same order, except that two neighbours
     * closer than float32 rounding (1e-6) may swap.
     */
    function expectExactTopK(
      hits: { id: string; similarity: number }[],
      truth: { id: string; sim: number }[],
      k: number,
    ): void {
      const simOf = new Map(truth.map((t) => [t.id, t.sim]));
      expect(hits).toHaveLength(k);
      expect(new Set(ids(hits)).size).toBe(k);
      hits.forEach((hit, i) => {
        if (hit.id !== truth[i]!.id) expect(Math.abs(simOf.get(hit.id)! - truth[i]!.sim)).toBeLessThan(1e-6);
        expect(hit.similarity).toBeCloseTo(truth[i]!.sim, 4);
      });
    }

    it('top-10 within a small filtered scope (500 of 10k: exact search) equals brute force', async () => {
      const queries = Array.from({ length: 20 }, () => randomUnitVector(random));
      for (const q of queries) {
        const hits = await store.search(q, 10, { user_id: user, where: parseWhere({ session_id: 'small' }) });
        expectExactTopK(
          hits,
          bruteForce(q, (i) => i % SMALL_EVERY === 0),
          10,
        );
      }
    });

    const exactAll = backend.createExact ? it : it.skip;
    exactAll('top-10 over all 10k with the exact-scan option equals brute force', async () => {
      const exact = backend.createExact!();
      try {
        for (const q of Array.from({ length: 10 }, () => randomUnitVector(random))) {
          expectExactTopK(
            await exact.search(q, 10, { user_id: user }),
            bruteForce(q, () => true),
            10,
          );
        }
      } finally {
        await exact.close();
      }
    });

    it(`recall@10 ≥ 0.95 over 50 queries across all 10k with the ANN index (${backend.ann})`, async () => {
      const queries = Array.from({ length: 50 }, () => randomUnitVector(random));
      let found = 0;
      const started = Date.now();
      for (const q of queries) {
        const truth = new Set(
          bruteForce(q, () => true)
            .slice(0, 10)
            .map((t) => t.id),
        );
        const hits = await store.search(q, 10, { user_id: user });
        expect(hits).toHaveLength(10);
        found += hits.filter((h) => truth.has(h.id)).length;
      }
      const recall = found / (queries.length * 10);
      console.info(
        `${backend.name}: recall@10 = ${recall.toFixed(3)} (${backend.ann}), ${((Date.now() - started) / 50).toFixed(1)} ms/query`,
      );
      expect(recall).toBeGreaterThanOrEqual(0.95);
    });

    const explained = backend.explain ? it : it.skip;
    explained('searches the full 10k through the HNSW index and the small scope by exact scan', async () => {
      const q = randomUnitVector(random);
      const full = await backend.explain!(store, q, 10, { user_id: user });
      expect(full.mode).toBe('hnsw');
      expect(full.plan).toMatch(/Index Scan using memories_embedding_hnsw_idx/);
      const small = await backend.explain!(store, q, 10, {
        user_id: user,
        where: parseWhere({ session_id: 'small' }),
      });
      expect(small.mode).toBe('exact');
      expect(small.plan).not.toMatch(/memories_embedding_hnsw_idx/);
    });
  });
});
