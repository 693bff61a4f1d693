import { randomUUID } from 'node:crypto';
import {
  ChromaMemoryStore,
  createLogger,
  matchesFilter,
  parseWhere,
  UnavailableError,
  ValidationError,
  type Memory,
  type MemoryRecord,
  type Metadata,
} from 'memory-core';
import { rawChromaClient as rawClient, servers, uniqueName, seededRandom } from '../setup/servers';

jest.setTimeout(120_000);

const logger = createLogger({ service: 'test', level: 'silent' });

function randomVector(rand: () => number): Float32Array {
  const v = Float32Array.from({ length: 384 }, () => rand() * 2 - 1);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

let clock = Date.parse('2024-05-01T10:00:00.000Z');
function record(overrides: Partial<MemoryRecord> & { content: string }, rand = Math.random): MemoryRecord {
  const created = new Date((clock += 1000)).toISOString();
  return {
    id: randomUUID(),
    user_id: 'u1',
    session_id: null,
    session_type: null,
    project: null,
    content_type: 'note',
    metadata: {},
    content_hash: `hash-${overrides.content}`,
    embedding: randomVector(rand),
    embedding_model: 'test-model',
    created_at: created,
    updated_at: created,
    ...overrides,
  };
}

const withoutVector = ({ embedding: _e, migration_id: _m, ...memory }: MemoryRecord): Memory => memory;

describe('ChromaMemoryStore (real Chroma server)', () => {
  const collection = uniqueName('chroma_store');
  let store: ChromaMemoryStore;

  beforeAll(async () => {
    store = new ChromaMemoryStore(
      { url: servers.chromaUrl, collection, embeddingModel: 'test-model' },
      logger,
    );
    await store.initialize();
  });

  afterAll(async () => {
    await store.close();
    await rawClient().deleteCollection({ name: collection });
  });

  it('creates a cosine collection without an embedding function, idempotently', async () => {
    await store.initialize();
    const created = await rawClient().getCollection({ name: collection });
    expect(created.configuration.hnsw).toMatchObject({
      space: 'cosine',
      max_neighbors: 32,
      ef_construction: 200,
      ef_search: 400,
    });
    expect(created.configuration.embeddingFunction ?? null).toBeNull();
  });

  it('sets ef_search on an existing collection, and reports status without creating one', async () => {
    const name = uniqueName('chroma_ef');
    const other = new ChromaMemoryStore(
      { url: servers.chromaUrl, collection: name, hnsw: { efSearch: 123 } },
      logger,
    );
    expect(await other.status()).toMatchObject({
      reachable: true,
      memory_count: 0,
      index: expect.stringContaining('not created'),
    });
    await expect(rawClient().getCollection({ name })).rejects.toThrow();
    await rawClient().createCollection({
      name,
      embeddingFunction: null,
      configuration: { hnsw: { space: 'cosine' } },
    });
    try {
      await other.initialize();
      expect((await rawClient().getCollection({ name })).configuration.hnsw?.ef_search).toBe(123);
      expect((await other.status()).index).toContain('ef_search=123');
    } finally {
      await rawClient().deleteCollection({ name });
    }
  });

  it('refuses an existing collection with another distance', async () => {
    const name = uniqueName('chroma_l2');
    await rawClient().createCollection({
      name,
      embeddingFunction: null,
      configuration: { hnsw: { space: 'l2' } },
    });
    try {
      const l2 = new ChromaMemoryStore({ url: servers.chromaUrl, collection: name }, logger);
      await expect(l2.initialize()).rejects.toMatchObject({ code: 'collection_misconfigured' });
    } finally {
      await rawClient().deleteCollection({ name });
    }
  });

  it('round-trips every field, and lays metadata out as documented', async () => {
    const memory = record({
      content: 'Ünïcödé 記憶 🧠 — "quotes" and\nnew lines',
      user_id: 'u-roundtrip',
      session_id: 's1',
      session_type: 'philosophy',
      project: 'atlas',
      content_type: 'insight',
      metadata: { tag: 'a', count: 3, ratio: 0.25, flag: false, session_type: 'from-metadata', 'x.y-z': '1' },
    });
    expect(await store.upsert([memory])).toEqual([
      { requested_id: memory.id, id: memory.id, status: 'created' },
    ]);

    expect(await store.get('u-roundtrip', memory.id)).toEqual(withoutVector(memory));
    expect(await store.get('someone-else', memory.id)).toBeNull();

    const raw = await (await rawClient().getCollection({ name: collection })).get({ ids: [memory.id] });
    expect(raw.metadatas[0]).toEqual({
      tag: 'a',
      count: 3,
      ratio: 0.25,
      flag: false,
      'x.y-z': '1',
      'meta:session_type': 'from-metadata',
      'has:tag': true,
      'has:count': true,
      'has:ratio': true,
      'has:flag': true,
      'has:x.y-z': true,
      user_id: 'u-roundtrip',
      session_id: 's1',
      'has:session_id': true,
      session_type: 'philosophy',
      'has:session_type': true,
      project: 'atlas',
      'has:project': true,
      content_type: 'insight',
      created_at: memory.created_at,
      created_at_ms: Date.parse(memory.created_at),
      updated_at: memory.updated_at,
      content_hash: memory.content_hash,
      embedding_model: 'test-model',
    });
    expect(raw.documents[0]).toBe(memory.content);
  });

  it('leaves null scope fields out of Chroma metadata', async () => {
    const memory = record({ content: 'no scope', user_id: 'u-null' });
    await store.upsert([memory]);
    const raw = await (await rawClient().getCollection({ name: collection })).get({ ids: [memory.id] });
    expect(Object.keys(raw.metadatas[0] ?? {}).sort()).toEqual(
      [
        'content_hash',
        'content_type',
        'created_at',
        'created_at_ms',
        'embedding_model',
        'updated_at',
        'user_id',
      ].sort(),
    );
    expect(await store.get('u-null', memory.id)).toEqual(withoutVector(memory));
  });

  it('stores embeddings exactly as given and reports similarity = 1 - cosine distance', async () => {
    const rand = seededRandom(7);
    const a = record({ content: 'vector a', user_id: 'u-vec' }, rand);
    const b = record({ content: 'vector b', user_id: 'u-vec' }, rand);
    await store.upsert([a, b]);
    const raw = await (
      await rawClient().getCollection({ name: collection })
    ).get({
      ids: [a.id],
      include: ['embeddings'],
    });
    expect(Float32Array.from(raw.embeddings[0] ?? [])).toEqual(a.embedding);

    const hits = await store.search(a.embedding, 2, { user_id: 'u-vec' });
    expect(hits.map((h) => h.id)).toEqual([a.id, b.id]);
    const cosine = (x: Float32Array | number[], y: Float32Array | number[]) => {
      let dot = 0,
        nx = 0,
        ny = 0;
      for (let i = 0; i < x.length; i += 1) {
        dot += x[i]! * y[i]!;
        nx += x[i]! * x[i]!;
        ny += y[i]! * y[i]!;
      }
      return dot / Math.sqrt(nx * ny);
    };
    expect(hits[0]!.similarity).toBeCloseTo(1, 5);
    expect(hits[1]!.similarity).toBeCloseTo(cosine(a.embedding, b.embedding), 5);
  });

  it('updates in place: keeps created_at, drops metadata keys the new version lacks', async () => {
    const first = record({
      content: 'first words',
      user_id: 'u-upd',
      metadata: { keep: 1, drop: 'me' },
      project: 'p',
    });
    await store.upsert([first]);
    const later = new Date(Date.parse(first.created_at) + 60_000).toISOString();
    const second = {
      ...first,
      content: 'second words',
      content_hash: 'hash-second',
      metadata: { keep: 2 },
      project: null,
      created_at: later,
      updated_at: later,
    };
    expect(await store.upsert([second])).toEqual([
      { requested_id: first.id, id: first.id, status: 'updated' },
    ]);
    expect(await store.get('u-upd', first.id)).toEqual({
      ...withoutVector(second),
      created_at: first.created_at,
    });
    const filtered = await store.list(
      { user_id: 'u-upd', where: parseWhere({ drop: { $ne: 'x' } }) },
      { limit: 10, offset: 0 },
    );
    expect(filtered.total).toBe(0);
  });

  it('deduplicates the same content in the same user + session + project, in the batch and against stored rows', async () => {
    const base = { content: 'same text', user_id: 'u-dedup', session_id: 's', project: 'p' };
    const stored = record(base);
    await store.upsert([stored]);
    const again = record(base);
    const twiceInBatch = [record({ ...base, content: 'new text' }), record({ ...base, content: 'new text' })];
    const otherSession = record({ ...base, session_id: 's2' });
    const noSession = record({ ...base, session_id: null });
    const results = await store.upsert([again, ...twiceInBatch, otherSession, noSession]);
    expect(results).toEqual([
      { requested_id: again.id, id: stored.id, status: 'duplicate' },
      { requested_id: twiceInBatch[0]!.id, id: twiceInBatch[0]!.id, status: 'created' },
      { requested_id: twiceInBatch[1]!.id, id: twiceInBatch[0]!.id, status: 'duplicate' },
      { requested_id: otherSession.id, id: otherSession.id, status: 'created' },
      { requested_id: noSession.id, id: noSession.id, status: 'created' },
    ]);
    expect(await store.get('u-dedup', again.id)).toBeNull();
    expect((await store.stats({ user_id: 'u-dedup' })).total).toBe(4);
    // Writing the same record again (a retried job) is an update, not a duplicate.
    expect(await store.upsert([stored])).toEqual([
      { requested_id: stored.id, id: stored.id, status: 'updated' },
    ]);
  });

  it('lists newest first with offset and limit, and deletes only the given user rows', async () => {
    const mine = [1, 2, 3, 4, 5].map((i) =>
      record({ content: `list ${i}`, user_id: 'u-list', session_id: i % 2 ? 'odd' : 'even' }),
    );
    const theirs = record({ content: 'list theirs', user_id: 'u-other', session_id: 'odd' });
    await store.upsert([...mine, theirs]);
    const page = await store.list({ user_id: 'u-list' }, { limit: 2, offset: 1 });
    expect(page.total).toBe(5);
    expect(page.items.map((m) => m.content)).toEqual(['list 4', 'list 3']);
    expect(await store.stats({ user_id: 'u-list' })).toEqual({
      total: 5,
      by_content_type: { note: 5 },
      by_session: { odd: 3, even: 2 },
      by_project: {},
    });
    expect(await store.delete('u-other', mine[0]!.id)).toBe(false);
    expect(await store.delete('u-list', mine[0]!.id)).toBe(true);
    expect(await store.delete('u-list', mine[0]!.id)).toBe(false);
    expect(
      (await store.deleteByScope({ user_id: 'u-list', where: parseWhere({ session_id: 'odd' }) })).count,
    ).toBe(2);
    expect(
      (await store.list({ user_id: 'u-list' }, { limit: 10, offset: 0 })).items.map((m) => m.content),
    ).toEqual(['list 4', 'list 2']);
    expect(await store.get('u-other', theirs.id)).not.toBeNull();
  });

  it('reports status with counts, index and server version', async () => {
    const status = await store.status();
    expect(status).toMatchObject({
      backend: 'chroma',
      reachable: true,
      versions: { chroma: expect.any(String) },
    });
    expect(status.memory_count).toBeGreaterThan(0);
    expect(status.index).toContain('space=cosine');
  });

  it('turns input Chroma rejects into a ValidationError', async () => {
    await expect(store.search([1, 0, 0], 3, { user_id: 'u1' })).rejects.toBeInstanceOf(ValidationError);
    const rejected = await store.search([1, 0, 0], 3, { user_id: 'u1' }).catch((e: unknown) => e);
    expect(rejected).toMatchObject({
      code: 'backend_rejected',
      message: expect.stringMatching(/^Chroma rejected/),
    });
    // The client's message names the request's URL: an API caller never sees the internal address.
    expect((rejected as Error).message).not.toMatch(/https?:|127\.0\.0\.1/);
    await expect(store.upsert([record({ content: 'bad', embedding: [1, 2, 3] })])).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  describe('when the server does not answer', () => {
    const dead = new ChromaMemoryStore({ url: 'http://127.0.0.1:1', collection: 'memories' }, logger);

    it('fails with backend_unavailable', async () => {
      const error = await dead.initialize().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnavailableError);
      expect(error).toMatchObject({ code: 'backend_unavailable', httpStatus: 503 });
      await expect(dead.search([1], 1, { user_id: 'u1' })).rejects.toMatchObject({
        code: 'backend_unavailable',
      });
      await expect(dead.list({ user_id: 'u1' }, { limit: 1, offset: 0 })).rejects.toMatchObject({
        code: 'backend_unavailable',
      });
    });

    it('reports unreachable from status() instead of throwing', async () => {
      const status = await dead.status();
      expect(status).toMatchObject({ backend: 'chroma', reachable: false, error: expect.any(String) });
    });
  });
});

describe('ChromaMemoryStore filters agree with matchesFilter (property test, real Chroma server)', () => {
  const collection = uniqueName('chroma_filters');
  const seed = Number(process.env.FILTER_SEED ?? 20240501);
  const rand = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;

  // Small pools so that random filters hit often; strings that look like numbers and booleans,
  // integers and fractions on both sides of zero, and keys that are often missing.
  const strings = ['a', 'b', '1', 'true', ''] as const;
  const integers = [-2, -1, 0, 1, 2] as const;
  const fractions = [-1.5, -0.5, 0.5, 1.5, 2.25] as const;
  const numbers = [...integers, ...fractions];
  const keys = ['k1', 'k2', 'k3', 'num'] as const;
  const scopes = {
    session_id: ['s1', 's2', null],
    project: ['p1', 'p2', null],
    session_type: ['t1', null],
  } as const;
  const contentTypes = ['note', 'insight'] as const;

  const anyValue = () => {
    const kind = rand();
    return kind < 0.35 ? pick(strings) : kind < 0.85 ? pick(numbers) : rand() < 0.5;
  };

  function randomMetadata(): Metadata {
    const metadata: Metadata = {};
    for (const key of keys)
      if (rand() < 0.7) metadata[key] = key === 'num' && rand() < 0.8 ? pick(numbers) : anyValue();
    return metadata;
  }

  let store: ChromaMemoryStore;
  const dataset: MemoryRecord[] = [];

  beforeAll(async () => {
    store = new ChromaMemoryStore({ url: servers.chromaUrl, collection }, logger);
    await store.initialize();
    for (let i = 0; i < 300; i += 1) {
      dataset.push(
        record(
          {
            content: `memory ${i}`,
            user_id: i % 10 === 0 ? 'intruder' : 'owner',
            session_id: pick(scopes.session_id),
            project: pick(scopes.project),
            session_type: pick(scopes.session_type),
            content_type: pick(contentTypes),
            metadata: randomMetadata(),
          },
          rand,
        ),
      );
    }
    await store.upsert(dataset);
  });

  afterAll(async () => {
    await store.close();
    await rawClient().deleteCollection({ name: collection });
  });

  type Raw = Record<string, unknown>;

  function randomCondition(): Raw {
    if (rand() < 0.3) {
      const field = pick(['session_id', 'project', 'session_type', 'content_type'] as const);
      const pool =
        field === 'content_type' ? ['note', 'insight', 'other'] : ['s1', 's2', 'p1', 'p2', 't1', 'zz'];
      const op = pick(['$eq', '$ne', '$in', '$nin'] as const);
      return { [field]: { [op]: op === '$in' || op === '$nin' ? [pick(pool), pick(pool)] : pick(pool) } };
    }
    const field = pick([...keys, 'missing_key']);
    const op = pick(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin'] as const);
    if (op === '$gt' || op === '$gte' || op === '$lt' || op === '$lte')
      return { [field]: { [op]: pick(numbers) } };
    if (op === '$in' || op === '$nin') {
      const kind = rand();
      const values = Array.from({ length: 1 + Math.floor(rand() * 3) }, () =>
        kind < 0.4 ? pick(strings) : kind < 0.85 ? pick(numbers) : rand() < 0.5,
      );
      return { [field]: { [op]: values } };
    }
    return { [field]: { [op]: anyValue() } };
  }

  function randomWhere(depth = 0): Raw {
    const r = rand();
    if (depth >= 2 || r < 0.5) return randomCondition();
    const children = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => randomWhere(depth + 1));
    return { [r < 0.75 ? '$and' : '$or']: children };
  }

  const expected = (userId: string, where: ReturnType<typeof parseWhere> | undefined) =>
    dataset
      .filter((m) => m.user_id === userId && matchesFilter(m, where))
      .map((m) => m.id)
      .sort();

  const listIds = async (userId: string, where: ReturnType<typeof parseWhere> | undefined) =>
    (await store.list({ user_id: userId, where }, { limit: 500, offset: 0 })).items.map((m) => m.id).sort();

  it.each([
    ['$ne does not match a missing key', { missing_key: { $ne: 'a' } }],
    ['$nin does not match a missing key', { k1: { $nin: ['a', 'b'] } }],
    ['$ne on a null scope field', { session_id: { $ne: 's1' } }],
    ['$nin on a null scope field', { project: { $nin: ['p1'] } }],
    ['string "1" is not number 1', { k1: '1' }],
    ['number 1 is not string "1"', { k1: 1 }],
    ['true is not "true" nor 1', { k2: true }],
    ['$eq with a fraction does not match its integer part', { num: 1.5 }],
    ['$ne with a fraction keeps its integer part', { num: { $ne: -1.5 } }],
    ['$gt with a negative fraction', { num: { $gt: -1.5 } }],
    ['$gte with a fraction', { num: { $gte: 0.5 } }],
    ['$lt with a fraction', { num: { $lt: 1.5 } }],
    ['$lte with a negative fraction', { num: { $lte: -0.5 } }],
    ['$in mixing integers and fractions', { num: { $in: [1, 1.5, -0.5] } }],
    ['$nin mixing integers and fractions', { num: { $nin: [2, 2.25, 0.5] } }],
    ['$or of negatives', { $or: [{ k1: { $ne: 'a' } }, { k3: { $nin: [0, 1] } }] }],
  ])('%s', async (_name, where) => {
    const node = parseWhere(where);
    const want = expected('owner', node);
    expect(await listIds('owner', node)).toEqual(want);
  });

  it('list, stats and deleteByScope select exactly what matchesFilter selects, for 300 random filters', async () => {
    let nonEmpty = 0;
    for (let i = 0; i < 300; i += 1) {
      const raw = randomWhere();
      const node = parseWhere(raw);
      const want = expected('owner', node);
      if (want.length > 0) nonEmpty += 1;
      const got = await listIds('owner', node);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(
          `seed ${seed}, filter ${i}: ${JSON.stringify(raw)} → ${got.length} rows, expected ${want.length}`,
        );
      }
      if (i % 10 === 0)
        expect((await store.stats({ user_id: 'owner', where: node })).total).toBe(want.length);
    }
    // The generator must produce filters that select something, or the test proves little.
    expect(nonEmpty).toBeGreaterThan(100);
  });

  it('search returns only memories that match the filter, best first', async () => {
    for (let i = 0; i < 50; i += 1) {
      const node = parseWhere(randomWhere());
      const want = new Set(expected('owner', node));
      const hits = await store.search(randomVector(rand), 10, { user_id: 'owner', where: node });
      expect(hits.length).toBe(Math.min(10, want.size));
      for (const hit of hits) expect(want.has(hit.id)).toBe(true);
      const sims = hits.map((h) => h.similarity);
      expect(sims).toEqual([...sims].sort((a, b) => b - a));
    }
  });

  it('deleteByScope removes exactly the matching rows of that user', async () => {
    const node = parseWhere({ $or: [{ k1: { $ne: 'a' } }, { num: { $lt: 0.5 } }] });
    const want = expected('owner', node);
    const intruderBefore = expected('intruder', undefined).length;
    expect((await store.deleteByScope({ user_id: 'owner', where: node })).count).toBe(want.length);
    expect(await listIds('owner', node)).toEqual([]);
    expect((await listIds('intruder', undefined)).length).toBe(intruderBefore);
    expect((await store.stats({ user_id: 'owner' })).total).toBe(
      expected('owner', undefined).length - want.length,
    );
  });
});
