import pino from 'pino';
import type { Embedder } from '../embedding/embedder';
import type { MemoryRecord } from '../memory/memory.schemas';
import type { UpsertResult } from '../storage/memory-store';
import { ChromaMigration, type MigrationTarget } from './chroma-migration';
import type { MigrationSource } from './chroma-collection.source';
import { InMemoryMigrationCheckpoints } from './migration-checkpoints';
import type { SourceRow } from './record-mapper';

const logger = pino({ level: 'silent' });
const MODEL = 'test-model';
const unit = (seed: number) => {
  const v = Array.from({ length: 384 }, (_, i) => Math.sin(seed * 31 + i));
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

function fakeSource(rows: SourceRow[]): MigrationSource {
  return {
    describe: async (name) => ({ name, count: rows.length, metadata: null }),
    count: async () => rows.length,
    page: async (_c, offset, limit, options) =>
      rows
        .slice(offset, offset + limit)
        .map((r) => (options.embeddings ? r : { ...r, embedding: undefined })),
    getByIds: async (_c, ids) => rows.filter((r) => ids.includes(r.id)),
  };
}

function fakeTarget() {
  const rows = new Map<string, MemoryRecord>();
  const target: MigrationTarget = {
    initialize: async () => undefined,
    status: async () => ({ backend: 'postgres', reachable: true }),
    upsert: async (records): Promise<UpsertResult[]> =>
      records.map((r) => {
        const status = rows.has(r.id) ? 'updated' : 'created';
        rows.set(r.id, { ...r, embedding: Array.from(r.embedding) });
        return { requested_id: r.id, id: r.id, status };
      }),
    findByIds: async (ids) => ids.flatMap((id) => rows.get(id) ?? []),
    deleteByMigration: async (id) => {
      const mine = [...rows.values()].filter((r) => r.migration_id === id);
      mine.forEach((r) => rows.delete(r.id));
      return mine.length;
    },
  };
  return { target, rows };
}

const embedder: Embedder = {
  info: { model: MODEL, dtype: 'q8', dimension: 384 },
  embed: async (texts) => texts.map((t) => Float32Array.from(unit(t.length))),
  close: async () => undefined,
};

const row = (i: number, overrides: Partial<SourceRow> = {}): SourceRow => ({
  id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
  document: `memory number ${i}`,
  metadata: {
    user_id: '1',
    content_type: 'note',
    embedding_model: MODEL,
    created_at: '2024-01-01T00:00:00.000Z',
  },
  embedding: unit(i),
  ...overrides,
});

describe('ChromaMigration (fakes)', () => {
  it('copies vectors of the same model and embeds missing, other-dimension and other-model ones', async () => {
    const rows = [
      row(1),
      row(2, { embedding: null }),
      row(3, { embedding: [0.1, 0.2] }),
      row(4, { metadata: { user_id: '1', embedding_model: 'another-model' } }),
    ];
    const { target, rows: stored } = fakeTarget();
    const migration = new ChromaMigration({
      source: fakeSource(rows),
      target,
      checkpoints: new InMemoryMigrationCheckpoints(),
      embedder,
      logger,
      defaults: { collection: 'c', userId: '1' },
    });
    const result = await migration.run({ migration_id: 'm1', batch_size: 3 });
    expect(result.stats).toMatchObject({
      read: 4,
      written: 4,
      copied_embeddings: 1,
      re_embedded: 3,
      re_embedded_by_reason: { missing: 1, dimension: 1, model: 1 },
    });
    expect(result.verification).toMatchObject({ verified: true, sample: { size: 4, vectors_compared: 4 } });
    expect([...stored.values()].every((r) => r.migration_id === 'm1' && r.embedding_model === MODEL)).toBe(
      true,
    );
  });

  it('fails clearly when vectors must be made but no embedder was given', async () => {
    const migration = new ChromaMigration({
      source: fakeSource([row(1, { embedding: null })]),
      target: fakeTarget().target,
      checkpoints: new InMemoryMigrationCheckpoints(),
      logger,
      defaults: { collection: 'c', userId: '1' },
    });
    await expect(migration.run({ migration_id: 'm2' })).rejects.toMatchObject({ code: 'embedder_required' });
  });

  it('stops at the next batch once a rollback asked it to', async () => {
    const checkpoints = new InMemoryMigrationCheckpoints();
    const { target, rows: stored } = fakeTarget();
    const migration = new ChromaMigration({
      source: fakeSource(Array.from({ length: 10 }, (_, i) => row(i))),
      target,
      checkpoints,
      embedder,
      logger,
      defaults: { collection: 'c', userId: '1' },
    });
    await expect(
      migration.run(
        { migration_id: 'm3', batch_size: 2 },
        {
          onProgress: async (p) => {
            if (p.done === 4) await checkpoints.requestCancel('m3');
          },
        },
      ),
    ).rejects.toMatchObject({ code: 'migration_cancelled' });
    expect(stored.size).toBe(4);
    expect(await migration.rollback('m3')).toEqual({ migration_id: 'm3', removed: 4 });
    expect(stored.size).toBe(0);
  });
});
