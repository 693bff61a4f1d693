import pino from 'pino';
import {
  createMetrics,
  type Embedder,
  type MemoryRecord,
  type MemoryStore,
  type QueuedMemory,
  type Tombstones,
  ValidationError,
} from 'memory-core';
import { MicroBatcher } from './micro-batcher';

class FakeEmbedder implements Embedder {
  readonly info = { model: 'fake', dtype: 'q8', dimension: 3 };
  calls: string[][] = [];
  failNext = false;
  async embed(texts: string[]) {
    this.calls.push(texts);
    if (this.failNext) {
      this.failNext = false;
      throw new Error('model failed');
    }
    return texts.map((t) => new Float32Array([t.length, 1, 0]));
  }
  async close() {}
}

/** Only what the batcher uses: upsert and delete. */
class FakeStore {
  readonly backend = 'postgres' as const;
  rows = new Map<string, MemoryRecord>();
  upserts: MemoryRecord[][] = [];
  async upsert(records: MemoryRecord[]) {
    this.upserts.push(records);
    if (records.some((r) => r.content.startsWith('bad')))
      throw new ValidationError('the store refused a record');
    for (const r of records) this.rows.set(r.id, r);
    return records.map((r) => ({ requested_id: r.id, id: r.id, status: 'created' as const }));
  }
  async delete(_userId: string, id: string) {
    return this.rows.delete(id);
  }
  async get(_userId: string, id: string) {
    return this.rows.get(id) ?? null;
  }
}

class FakeTombstones {
  deleted = new Set<string>();
  /** Sessions deleted (covering every memory of theirs). */
  deletedSessions = new Set<string>();
  /** Ids that become deleted right after the store's write (a delete racing the write). */
  deletedDuringWrite = new Set<string>();
  checks = 0;
  async deletedAmong(candidates: { id: string; session_id: string | null }[]) {
    this.checks += 1;
    if (this.checks % 2 === 0) for (const id of this.deletedDuringWrite) this.deleted.add(id);
    return new Set(
      candidates
        .filter(
          (c) => this.deleted.has(c.id) || (c.session_id !== null && this.deletedSessions.has(c.session_id)),
        )
        .map((c) => c.id),
    );
  }
}

let n = 0;
const memory = (content: string): QueuedMemory => ({
  id: `00000000-0000-4000-8000-${String((n += 1)).padStart(12, '0')}`,
  content,
  session_id: null,
  session_type: null,
  project: null,
  content_type: 'note',
  metadata: {},
  created_at: new Date().toISOString(),
});

function setup(options: { maxBatch?: number; waitMs?: number } = {}) {
  const embedder = new FakeEmbedder();
  const store = new FakeStore();
  const tombstones = new FakeTombstones();
  const batcher = new MicroBatcher(
    embedder,
    store as unknown as MemoryStore,
    tombstones as unknown as Tombstones,
    createMetrics('test'),
    pino({ level: 'silent' }),
    { maxBatch: options.maxBatch ?? 64, waitMs: options.waitMs ?? 5 },
  );
  return { embedder, store, tombstones, batcher };
}

describe('MicroBatcher', () => {
  it('embeds texts of concurrent jobs in one model call and writes them in one upsert', async () => {
    const { embedder, store, batcher } = setup();
    const results = await Promise.all([
      batcher.submit('1', [memory('a')]),
      batcher.submit('2', [memory('bb'), memory('ccc')]),
      batcher.submit('1', [memory('dddd')]),
    ]);
    expect(embedder.calls).toEqual([['a', 'bb', 'ccc', 'dddd']]);
    expect(store.upserts).toHaveLength(1);
    expect(results.map((r) => r.map((o) => o.status))).toEqual([
      ['created'],
      ['created', 'created'],
      ['created'],
    ]);
    // Each memory keeps its own user and its own vector.
    expect(store.upserts[0]!.map((r) => [r.user_id, r.embedding[0]])).toEqual([
      ['1', 1],
      ['2', 2],
      ['2', 3],
      ['1', 4],
    ]);
  });

  it('sends a lone memory at once when the worker is idle, without waiting waitMs', async () => {
    const { embedder, batcher } = setup({ waitMs: 60_000 });
    const waited = new Promise((resolve) => setTimeout(() => resolve('waited'), 1_000).unref());
    const outcome = await Promise.race([batcher.submit('1', [memory('alone')]), waited]);
    expect(outcome).toEqual([expect.objectContaining({ status: 'created' })]);
    expect(embedder.calls).toEqual([['alone']]);
  });

  it('waits waitMs for companions while the worker is busy', async () => {
    const { embedder, batcher } = setup({ waitMs: 300 });
    await batcher.submit('1', [memory('first')]);
    // Right after a batch: the next memory waits, and one submitted 50 ms later joins its call.
    const second = batcher.submit('1', [memory('second')]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const third = batcher.submit('2', [memory('third')]);
    await Promise.all([second, third]);
    expect(embedder.calls).toEqual([['first'], ['second', 'third']]);
    // Once the worker has been idle for waitMs, a memory goes at once again.
    await new Promise((resolve) => setTimeout(resolve, 350));
    const started = performance.now();
    await batcher.submit('1', [memory('later')]);
    expect(performance.now() - started).toBeLessThan(250);
    expect(embedder.calls.at(-1)).toEqual(['later']);
  });

  it('never puts more than maxBatch texts in one call', async () => {
    const { embedder, batcher } = setup({ maxBatch: 4 });
    await batcher.submit(
      '1',
      Array.from({ length: 10 }, (_, i) => memory(`m${i}`)),
    );
    expect(embedder.calls.map((c) => c.length)).toEqual([4, 4, 2]);
  });

  it("takes waiting memories by their job's priority, lower first, and in the order they came within one", async () => {
    const { embedder, batcher } = setup({ maxBatch: 4 });
    // Hold the first model call, as a worker busy with a bulk load's batch is.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const embed = embedder.embed.bind(embedder);
    embedder.embed = async (texts) => {
      if (embedder.calls.length === 0) await held;
      return embed(texts);
    };
    const texts = (prefix: string, count: number) =>
      Array.from({ length: count }, (_, i) => memory(`${prefix}${i}`));
    const bulk = batcher.submit('1', texts('bulk', 10), { priority: 100 });
    await new Promise((resolve) => setImmediate(resolve));
    const later = batcher.submit('1', texts('later', 2), { priority: 100 });
    const small = batcher.submit('2', texts('small', 2), { priority: 2 });
    const single = batcher.submit('3', texts('single', 1));
    const retried = batcher.submit('2', texts('again', 1), { priority: 2, retried: true });
    release();
    await Promise.all([bulk, later, small, single, retried]);
    expect(embedder.calls).toEqual([
      ['bulk0', 'bulk1', 'bulk2', 'bulk3'],
      ['single0', 'small0', 'small1', 'again0'],
      ['bulk4', 'bulk5', 'bulk6', 'bulk7'],
      ['bulk8', 'bulk9', 'later0', 'later1'],
    ]);
  });

  it('drops memories a delete covered before they are embedded or written', async () => {
    const { embedder, store, tombstones, batcher } = setup();
    const [kept, gone] = [memory('kept'), memory('gone')];
    tombstones.deleted.add(gone.id);
    const outcomes = await batcher.submit('1', [kept, gone]);
    expect(outcomes.map((o) => o.status)).toEqual(['created', 'deleted']);
    expect(embedder.calls).toEqual([['kept']]);
    expect([...store.rows.keys()]).toEqual([kept.id]);
  });

  it("removes the rows an earlier attempt wrote of memories a delete covers: any of a deleted id, only its session's for a session", async () => {
    const { batcher, store, tombstones } = setup();
    const byId = memory('deleted by id');
    const inSession = { ...memory('its session deleted'), session_id: 's-gone' };
    const movedFrom = { ...memory('an update into a deleted session'), session_id: 's-gone' };
    // Rows an earlier attempt wrote (its removal after the write failed), and an older version of the
    // updated memory in another session.
    for (const [m, session] of [
      [byId, null],
      [inSession, 's-gone'],
      [movedFrom, 's-kept'],
    ] as const) {
      store.rows.set(m.id, {
        ...m,
        session_id: session,
        user_id: '1',
        embedding: [1, 0, 0],
      } as unknown as MemoryRecord);
    }
    tombstones.deleted.add(byId.id);
    tombstones.deletedSessions.add('s-gone');
    // A first attempt wrote nothing: it leaves the rows alone.
    await batcher.submit('1', [byId, inSession, movedFrom]);
    expect(store.rows.size).toBe(3);
    const outcomes = await batcher.submit('1', [byId, inSession, movedFrom], { retried: true });
    expect(outcomes.map((o) => o.status)).toEqual(['deleted', 'deleted', 'deleted']);
    expect([...store.rows.keys()]).toEqual([movedFrom.id]);
    expect(store.upserts).toEqual([]);
  });

  it('removes a memory whose delete raced the write', async () => {
    const { store, tombstones, batcher } = setup();
    const racing = memory('racing');
    tombstones.deletedDuringWrite.add(racing.id);
    const [outcome] = await batcher.submit('1', [racing]);
    expect(outcome!.status).toBe('deleted');
    expect(store.upserts).toHaveLength(1);
    expect(store.rows.has(racing.id)).toBe(false);
  });

  it('fails the jobs of a batch whose model call failed, and goes on with the next', async () => {
    const { embedder, batcher } = setup();
    embedder.failNext = true;
    await expect(batcher.submit('1', [memory('x')])).rejects.toThrow('model failed');
    await expect(batcher.submit('1', [memory('y')])).resolves.toHaveLength(1);
  });

  it('fails only the job whose record the store refuses, not the jobs batched with it', async () => {
    const { store, batcher } = setup();
    const [good, bad, alsoGood] = await Promise.allSettled([
      batcher.submit('1', [memory('good one')]),
      batcher.submit('1', [memory('bad one')]),
      batcher.submit('2', [memory('good two')]),
    ]);
    expect(good).toMatchObject({ status: 'fulfilled', value: [{ status: 'created' }] });
    expect(alsoGood).toMatchObject({ status: 'fulfilled', value: [{ status: 'created' }] });
    expect(bad).toMatchObject({ status: 'rejected', reason: expect.any(ValidationError) });
    expect([...store.rows.values()].map((r) => r.content).sort()).toEqual(['good one', 'good two']);
  });
});
