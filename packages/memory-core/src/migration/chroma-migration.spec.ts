import pino from 'pino';
import type { Embedder } from '../embedding/embedder';
import { ConflictError, UnavailableError, ValidationError } from '../errors';
import type { MemoryRecord } from '../memory/memory.schemas';
import type { UpsertResult } from '../storage/memory-store';
import {
  ChromaMigration,
  isTransientMigrationError,
  type ContentKey,
  type MigrationTarget,
} from './chroma-migration';
import type { MigrationSource } from './chroma-collection.source';
import { InMemoryMigrationCheckpoints } from './migration-checkpoints';
import { memoryIdFor, RecordMapper, type SourceRow } from './record-mapper';

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

const contentKey = (m: ContentKey) =>
  [m.user_id, m.session_id ?? '', m.project ?? '', m.content_hash].join('\0');

/** PostgreSQL as the port promises it: an existing id is updated, existing content is a duplicate. */
function fakeTarget() {
  const rows = new Map<string, MemoryRecord>();
  const holderOf = (key: string) => [...rows.values()].find((r) => contentKey(r) === key);
  /** The vector index's life: what the engine asked of it, in order. */
  const index = { present: true, events: [] as string[] };
  const target: MigrationTarget = {
    initialize: async () => undefined,
    status: async () => ({ backend: 'postgres', reachable: true, memory_count: rows.size }),
    dropVectorIndex: async () => {
      index.events.push('drop');
      const had = index.present;
      index.present = false;
      return had;
    },
    buildVectorIndex: async () => {
      index.events.push(index.present ? 'build (present)' : 'build');
      const ms = index.present ? 0 : 5;
      index.present = true;
      return ms;
    },
    upsert: async (records): Promise<UpsertResult[]> =>
      records.map((r) => {
        const holder = holderOf(contentKey(r));
        if (holder && holder.id !== r.id) return { requested_id: r.id, id: holder.id, status: 'duplicate' };
        const status = rows.has(r.id) ? 'updated' : 'created';
        rows.set(r.id, { ...r, embedding: Array.from(r.embedding) });
        return { requested_id: r.id, id: r.id, status };
      }),
    findByIds: async (ids) => ids.flatMap((id) => rows.get(id) ?? []),
    findByContent: async (keys) => keys.flatMap((k) => holderOf(contentKey(k)) ?? []),
    deleteByMigration: async (id) => {
      const mine = [...rows.values()].filter((r) => r.migration_id === id);
      mine.forEach((r) => rows.delete(r.id));
      return mine.length;
    },
  };
  return { target, rows, index };
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

  describe('writes to the collection while it runs', () => {
    /** A source whose `page` call number `call` deletes `id` from the collection as it returns. */
    const deletingSource = (rows: SourceRow[], call: number, id: string): MigrationSource => {
      const source = fakeSource(rows);
      let calls = 0;
      return {
        ...source,
        page: async (...args) => {
          const page = await source.page(...args);
          calls += 1;
          if (calls === call)
            rows.splice(
              rows.findIndex((r) => r.id === id),
              1,
            );
          return page;
        },
      };
    };
    const migrate = async (source: MigrationSource) => {
      const { target, rows: stored } = fakeTarget();
      const result = await new ChromaMigration({
        source,
        target,
        checkpoints: new InMemoryMigrationCheckpoints(),
        embedder,
        logger,
        defaults: { collection: 'c', userId: '1' },
      }).run({ migration_id: 'moving', batch_size: 2 });
      return { result, stored };
    };

    it('reports the record a delete shifted past the pages, by count and by id', async () => {
      const rows = [0, 1, 2, 3, 4, 5].map((i) => row(i));
      // Record 0 goes once the first page is read: every later offset starts one record further on,
      // so one record is never read (which one depends on how far the engine reads ahead).
      const { result, stored } = await migrate(deletingSource(rows, 1, row(0).id));
      const skipped = rows.filter((r) => !stored.has(r.id));
      expect(skipped).toHaveLength(1);
      expect(result.stats.written).toBe(5);
      expect(result.verification!.verified).toBe(false);
      expect(result.verification!.differences).toEqual(
        expect.arrayContaining([
          { kind: 'count', user_id: '1', scope: 'total', chroma: 5, postgres: 4 },
          { kind: 'missing', id: skipped[0]!.id },
          { kind: 'count', scope: 'migrated', chroma: 4, postgres: 5 },
        ]),
      );
    });

    it('reports copies whose record was deleted in Chroma after they were written', async () => {
      const rows = [0, 1, 2, 3].map((i) => row(i));
      // The last record goes as its page is read: every count of what Chroma still holds agrees.
      const { result } = await migrate(deletingSource(rows, 2, row(3).id));
      expect(result.stats.written).toBe(4);
      expect(result.verification).toMatchObject({
        verified: false,
        differences: [{ kind: 'count', scope: 'migrated', chroma: 3, postgres: 4 }],
      });
    });
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

  describe('the HNSW index during a bulk load', () => {
    const migrationOf = (target: MigrationTarget, checkpoints = new InMemoryMigrationCheckpoints()) =>
      new ChromaMigration({
        source: fakeSource(Array.from({ length: 10 }, (_, i) => row(i))),
        target,
        checkpoints,
        embedder,
        logger,
        defaults: { collection: 'c', userId: '1' },
      });

    it('loads an empty table without the index and builds it once, before verifying', async () => {
      const { target, index } = fakeTarget();
      const phases: string[] = [];
      const result = await migrationOf(target).run(
        { migration_id: 'b1', batch_size: 3 },
        { onProgress: (p) => void (phases.at(-1) !== p.phase && phases.push(p.phase)) },
      );
      expect(index.events).toEqual(['drop', 'build']);
      expect(index.present).toBe(true);
      expect(result.stats).toMatchObject({ written: 10, index_deferred: true, index_build_ms: 5 });
      expect(phases).toEqual(['counting', 'migrating', 'indexing', 'verifying', 'done']);
    });

    it('keeps the index of a table that already holds memories', async () => {
      const { target, rows, index } = fakeTarget();
      const other = row(99);
      rows.set('held', { ...(other as unknown as MemoryRecord), id: 'held', embedding: other.embedding! });
      const result = await migrationOf(target).run({ migration_id: 'b2', batch_size: 3 });
      expect(index.events).toEqual([]);
      expect(result.stats).toMatchObject({ written: 10, index_deferred: false, index_build_ms: 0 });
    });

    it('rebuilds the index when the migration fails for good, not when it pauses', async () => {
      const { target, index } = fakeTarget();
      const controller = new AbortController();
      const checkpoints = new InMemoryMigrationCheckpoints();
      await expect(
        migrationOf(target, checkpoints).run(
          { migration_id: 'b3', batch_size: 3 },
          { signal: controller.signal, onProgress: (p) => void (p.done === 3 && controller.abort()) },
        ),
      ).rejects.toMatchObject({ code: 'migration_paused' });
      expect(index).toMatchObject({ present: false, events: ['drop'] });

      // Resumed: still a bulk load (the table is no longer empty), built at the end.
      const resumed = await migrationOf(target, checkpoints).run({ migration_id: 'b3', batch_size: 3 });
      expect(resumed.stats).toMatchObject({ written: 10, index_deferred: true });
      expect(index).toMatchObject({ present: true, events: ['drop', 'drop', 'build'] });

      // A conflict is not retried: the index comes back before the error is reported.
      const { target: fresh, index: freshIndex } = fakeTarget();
      const conflict: MigrationTarget = {
        ...fresh,
        upsert: async (records) => {
          if (records.some((r) => r.id.endsWith('4')))
            throw new ConflictError('owned by another user', undefined, 'id_conflict');
          return fresh.upsert(records);
        },
      };
      await expect(migrationOf(conflict).run({ migration_id: 'b4', batch_size: 3 })).rejects.toMatchObject({
        code: 'id_conflict',
      });
      expect(freshIndex).toMatchObject({ present: true, events: ['drop', 'build'] });
    });

    it('leaves the index built after a rollback', async () => {
      const { target, index } = fakeTarget();
      const checkpoints = new InMemoryMigrationCheckpoints();
      await expect(
        migrationOf(target, checkpoints).run(
          { migration_id: 'b5', batch_size: 3 },
          { onProgress: async (p) => void (p.done === 6 && (await checkpoints.requestCancel('b5'))) },
        ),
      ).rejects.toMatchObject({ code: 'migration_cancelled' });
      await migrationOf(target, checkpoints).rollback('b5');
      expect(index.present).toBe(true);
      expect(index.events[0]).toBe('drop');
    });
  });
  describe('records that cannot be written as they are', () => {
    const migrationOf = (rows: SourceRow[], target = fakeTarget().target) =>
      new ChromaMigration({
        source: fakeSource(rows),
        target,
        checkpoints: new InMemoryMigrationCheckpoints(),
        embedder,
        logger,
        defaults: { collection: 'c', userId: '1' },
      });
    /** The dry run's counts and the run's, side by side, each against a fresh copy of `held`. */
    const dryRunAndRun = async (
      rows: SourceRow[],
      request: Record<string, unknown>,
      held: MemoryRecord[] = [],
    ) => {
      const targets = [fakeTarget(), fakeTarget()];
      for (const { rows: stored } of targets) held.forEach((r) => stored.set(r.id, r));
      const dry = await migrationOf(rows, targets[0]!.target).run({
        ...request,
        migration_id: 'dry',
        dry_run: true,
      });
      const real = await migrationOf(rows, targets[1]!.target).run({ ...request, migration_id: 'real' });
      return { dry, real, stored: targets[1]!.rows, dryStored: targets[0]!.rows };
    };

    it('skips a record whose timestamp cannot be stored, and migrates the rest', async () => {
      const foreign = (id: string, ts: number): SourceRow => ({
        id,
        document: `text of ${id}`,
        metadata: { owner: 1, ts },
        embedding: unit(id.length),
      });
      const rows = [foreign('a', 1_700_000_000), foreign('bad', 1e17), foreign('c', 1_700_000_030)];
      const mapping = { user_id: 'owner', created_at: 'ts', embedding_model: MODEL };
      const { dry, real, stored } = await dryRunAndRun(rows, { mapping });
      for (const result of [dry, real]) {
        expect(result.stats).toMatchObject({
          read: 3,
          skipped: 1,
          skipped_by_reason: { invalid_timestamp: 1 },
        });
        expect(result.skipped).toEqual([
          { id: 'bad', reason: 'invalid_timestamp', message: expect.stringContaining('"ts"') },
        ]);
      }
      expect(dry.stats.would_write).toBe(2);
      expect(real.stats.written).toBe(2);
      expect(real.verification!.verified).toBe(true);
      expect([...stored.values()].map((r) => r.content).sort()).toEqual(['text of a', 'text of c']);
    });

    it('does not retry a programming error as if it were transient; retries a lost connection', () => {
      expect(isTransientMigrationError(new RangeError('Invalid time value'))).toBe(false);
      expect(isTransientMigrationError(new TypeError('x is undefined'))).toBe(false);
      expect(isTransientMigrationError(new ValidationError('bad', undefined, 'invalid_data'))).toBe(false);
      expect(isTransientMigrationError(new UnavailableError('down', { code: 'backend_unavailable' }))).toBe(
        true,
      );
      expect(
        isTransientMigrationError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })),
      ).toBe(true);
    });

    it('keeps two records whose UUIDs differ only in case as two memories', async () => {
      const upper = row(1, { id: '00000000-0000-4000-8000-5555555555AB', document: 'upper' });
      const lower = row(2, { id: '00000000-0000-4000-8000-5555555555ab', document: 'lower' });
      const { real, stored } = await dryRunAndRun([upper, lower, row(3)], {});
      expect(real.stats).toMatchObject({ written: 3, skipped: 0 });
      expect(stored.size).toBe(3);
      expect(stored.get(lower.id)?.content).toBe('lower');
      expect(stored.get(memoryIdFor('c', upper.id))?.content).toBe('upper');
      expect(real.verification!.verified).toBe(true);
    });

    it.each([
      ['in one batch', 10],
      ['in different batches', 1],
    ])(
      'skips a second record that maps to a memory id already taken (%s), never overwriting',
      async (_, batchSize) => {
        // A Chroma id that is the derived memory id of another record's id.
        const first = row(1, { id: 'doc-1', document: 'first' });
        const second = row(2, { id: memoryIdFor('c', 'doc-1'), document: 'second' });
        const { dry, real, stored } = await dryRunAndRun([first, second, row(3)], { batch_size: batchSize });
        for (const result of [dry, real]) {
          expect(result.stats).toMatchObject({ read: 3, skipped: 1, skipped_by_reason: { duplicate_id: 1 } });
          expect(result.skipped).toEqual([
            { id: second.id, reason: 'duplicate_id', message: expect.stringContaining(second.id) },
          ]);
        }
        expect(dry.stats.would_write).toBe(2);
        expect(real.stats.written).toBe(2);
        expect(stored.size).toBe(2);
        expect(stored.get(second.id)?.content).toBe('first');
      },
    );

    it('counts in a dry run the duplicates of content PostgreSQL already holds, as the run does', async () => {
      const rows = [1, 2, 3, 4].map((i) => row(i, { metadata: { ...row(i).metadata, project: 'alpha' } }));
      const stored = (source: SourceRow, project: string): MemoryRecord => {
        const outcome = new RecordMapper('c', undefined, '2024-01-01T00:00:00.000Z', '1').map(source);
        if (!outcome.ok) throw new Error(outcome.message);
        return { ...outcome.record.memory, id: `held-${source.id}`, project, embedding: unit(99) };
      };
      // Row 2's content in its own scope is a duplicate; row 3's content in another project is not.
      const held = [stored(rows[1]!, 'alpha'), stored(rows[2]!, 'beta')];
      const { dry, real, dryStored } = await dryRunAndRun(rows, {}, held);
      expect(real.stats).toMatchObject({
        written: 3,
        skipped: 1,
        skipped_by_reason: { duplicate_content: 1 },
      });
      expect(dry.stats).toMatchObject({
        would_write: real.stats.written,
        skipped: real.stats.skipped,
        skipped_by_reason: real.stats.skipped_by_reason,
      });
      expect(dry.skipped).toEqual(real.skipped);
      expect(dryStored.size).toBe(held.length);
    });
  });
});
