import { ChromaMapping } from './chroma-mapping.schema';
import { memoryIdFor, RecordMapper, uuidV5 } from './record-mapper';

const STARTED = '2025-01-01T00:00:00.000Z';

describe('RecordMapper', () => {
  describe('our own Chroma layout', () => {
    const mapper = new RecordMapper('memories', undefined, STARTED, '1');
    const id = '6f9619ff-8b86-4011-b42d-00cf4fc964ff';
    const metadata = {
      user_id: '1',
      session_id: 's1',
      'has:session_id': true,
      session_type: 'philosophy',
      project: 'alpha',
      content_type: 'reflection',
      created_at: '2024-05-01T10:00:00.000Z',
      created_at_ms: Date.parse('2024-05-01T10:00:00.000Z'),
      updated_at: '2024-05-02T10:00:00.000Z',
      content_hash: 'stale',
      embedding_model: 'Xenova/all-MiniLM-L6-v2',
      'meta:session_type': 'from-metadata',
      mood: 'calm',
      'has:mood': true,
    };

    it('maps scope fields, metadata (unescaped) and timestamps back, keeping the id', () => {
      const outcome = mapper.map({ id, document: 'Wisdom', metadata });
      expect(outcome).toEqual({
        ok: true,
        record: {
          sourceId: id,
          embeddingModel: 'Xenova/all-MiniLM-L6-v2',
          memory: {
            id,
            user_id: '1',
            session_id: 's1',
            session_type: 'philosophy',
            project: 'alpha',
            content: 'Wisdom',
            content_type: 'reflection',
            metadata: { session_type: 'from-metadata', mood: 'calm' },
            // Recomputed from the content: the dedup key must match what is stored.
            content_hash: expect.stringMatching(/^[0-9a-f]{64}$/),
            embedding_model: 'Xenova/all-MiniLM-L6-v2',
            created_at: '2024-05-01T10:00:00.000Z',
            updated_at: '2024-05-02T10:00:00.000Z',
          },
        },
      });
    });

    it('skips records it cannot store, with a reason', () => {
      expect(mapper.map({ id, document: '  ', metadata })).toMatchObject({
        ok: false,
        reason: 'missing_document',
      });
      expect(mapper.map({ id, document: 'x'.repeat(10_001), metadata })).toMatchObject({
        ok: false,
        reason: 'invalid_content',
      });
      expect(mapper.map({ id, document: 'x', metadata: { content_type: 'note' } })).toMatchObject({
        ok: false,
        reason: 'missing_user_id',
      });
      expect(
        mapper.map({ id, document: 'x', metadata: { ...metadata, content_type: 'not valid!' } }),
      ).toMatchObject({
        ok: false,
        reason: 'invalid_content_type',
      });
      expect(mapper.map({ id, document: 'x', metadata: { ...metadata, 'bad key': 1 } })).toMatchObject({
        ok: false,
        reason: 'invalid_metadata',
      });
    });

    it('skips a record whose timestamp cannot be stored, naming the key, rather than failing or replacing it', () => {
      const { created_at: _iso, ...msOnly } = metadata;
      for (const [changed, key] of [
        [{ ...metadata, created_at: '+020000-01-01T00:00:00.000Z' }, 'created_at'],
        [{ ...metadata, updated_at: 1e17 }, 'updated_at'],
        // Beyond ±8.64e15 ms, where `new Date(ms).toISOString()` throws.
        [{ ...msOnly, created_at_ms: 1e17 }, 'created_at_ms'],
      ] as const) {
        expect(mapper.map({ id, document: 'x', metadata: changed })).toEqual({
          ok: false,
          reason: 'invalid_timestamp',
          message: expect.stringContaining(`"${key}"`),
        });
      }
    });
  });

  describe('a foreign collection through a mapping', () => {
    const mapping = ChromaMapping.parse({
      user_id: 'owner',
      session_id: 'conversation',
      project: 'workspace',
      content_type: 'kind',
      created_at: 'ts',
      defaults: { content_type: 'note' },
      metadata: ['lang'],
    });
    const mapper = new RecordMapper('docs', mapping, STARTED, '1');

    it('reads scope fields from the mapped keys, numbers as strings, and keeps only the listed metadata', () => {
      const outcome = mapper.map({
        id: 'doc-1',
        document: 'hello',
        metadata: {
          owner: 7,
          conversation: 12,
          workspace: 'home',
          ts: 1_700_000_000,
          lang: 'en',
          other: 'x',
        },
      });
      expect(outcome).toMatchObject({
        ok: true,
        record: {
          sourceId: 'doc-1',
          embeddingModel: null,
          memory: {
            id: uuidV5('docs/doc-1', 'b3e0c6a2-5f1d-4e8a-9c47-2d6f8a1e0b53'),
            user_id: '7',
            session_id: '12',
            project: 'home',
            content_type: 'note',
            metadata: { lang: 'en' },
            created_at: new Date(1_700_000_000_000).toISOString(),
          },
        },
      });
    });

    it('falls back to the migration start for missing timestamps and to defaults for missing keys', () => {
      const outcome = mapper.map({ id: 'doc-2', document: 'hello', metadata: { owner: 'u' } });
      expect(outcome).toMatchObject({
        ok: true,
        record: {
          memory: {
            user_id: 'u',
            session_id: null,
            project: null,
            content_type: 'note',
            created_at: STARTED,
          },
        },
      });
    });

    it('skips a record whose timestamp is outside the years 1 to 9999, and maps the boundaries', () => {
      const at = (ts: unknown) => mapper.map({ id: 'doc-6', document: 'hello', metadata: { owner: 1, ts } });
      // 1e17 ms throws in toISOString; 1e15 ms is year 33658, which PostgreSQL refuses.
      for (const ts of [
        1e17,
        -1e17,
        1e15,
        '100000000000000000',
        '9'.repeat(400),
        '+020000-01-01T00:00:00Z',
      ]) {
        expect(at(ts)).toEqual({
          ok: false,
          reason: 'invalid_timestamp',
          message: 'metadata key "ts" holds a time outside the years 1 to 9999',
        });
      }
      for (const iso of ['0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z']) {
        expect(at(Date.parse(iso))).toMatchObject({ ok: true, record: { memory: { created_at: iso } } });
      }
    });

    it('skips a record without the user key when no default is given', () => {
      expect(mapper.map({ id: 'doc-3', document: 'hello', metadata: {} })).toMatchObject({
        ok: false,
        reason: 'missing_user_id',
      });
    });

    it('gives every record to the default user when the mapping names no user key', () => {
      const owned = new RecordMapper('docs', ChromaMapping.parse({}), STARTED, '42');
      expect(owned.map({ id: 'doc-4', document: 'hello', metadata: { topic: 'x' } })).toMatchObject({
        ok: true,
        record: { memory: { user_id: '42', metadata: { topic: 'x' } } },
      });
    });

    it('names a reserved metadata key instead of storing it', () => {
      const keepAll = new RecordMapper('docs', ChromaMapping.parse({ user_id: 'owner' }), STARTED, '1');
      expect(keepAll.map({ id: 'doc-5', document: 'hello', metadata: { owner: 1, id: 'x' } })).toMatchObject({
        ok: false,
        reason: 'invalid_metadata',
        message: expect.stringContaining('"id"'),
      });
    });
  });

  it('keeps lower-case UUIDs only: ids that differ in case get different memory ids', () => {
    const lower = '00000000-0000-4000-8000-5555555555ab';
    const upper = '00000000-0000-4000-8000-5555555555AB';
    expect(memoryIdFor('a', lower)).toBe(lower);
    expect(memoryIdFor('a', upper)).toBe(uuidV5(`a/${upper}`, 'b3e0c6a2-5f1d-4e8a-9c47-2d6f8a1e0b53'));
    expect(memoryIdFor('a', upper)).not.toBe(memoryIdFor('a', lower));
  });

  it('derives stable UUIDs for ids that are not UUIDs, and keeps UUIDs', () => {
    expect(memoryIdFor('a', 'doc-1')).toBe(memoryIdFor('a', 'doc-1'));
    expect(memoryIdFor('a', 'doc-1')).not.toBe(memoryIdFor('b', 'doc-1'));
    expect(memoryIdFor('a', 'doc-1')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    // The RFC 4122 example: uuid v5 of "www.example.com" in the DNS namespace.
    expect(uuidV5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8')).toBe(
      '2ed6657d-e927-568b-95e1-2665a8aea6a2',
    );
  });

  it('rejects mappings with unknown keys or wrong types', () => {
    expect(ChromaMapping.safeParse({ owner: 'user' }).success).toBe(false);
    expect(ChromaMapping.safeParse({ user_id: 5 }).success).toBe(false);
    expect(ChromaMapping.safeParse({ metadata: 'some' }).success).toBe(false);
  });
});
