import { createHash, randomUUID } from 'node:crypto';
import { Queue, QueueEvents, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { v5 as uuidv5 } from 'uuid';
import {
  MemoryInput,
  PgvectorMemoryStore,
  QueueName,
  Tombstones,
  defaultJobOptions,
  storeJobContents,
  validate,
} from 'memory-core';
import { IDEMPOTENCY_NAMESPACE, IngestService } from '../../services/api-gateway/src/ingest.service';
import { createTestSchema, servers, uniqueName } from '../setup/servers';

const logger = pino({ level: 'silent' });

/**
 * An Idempotency-Key's life: the gateway's IngestService against a real queue in Redis and a real
 * PostgreSQL store. The key's record lasts 24 h; the tests end it by deleting it, as its expiry would.
 */
describe('an Idempotency-Key', () => {
  let schema: { schema: string; drop: () => Promise<void> };
  let store: PgvectorMemoryStore;
  let connection: Redis;
  let queue: Queue;
  let events: QueueEvents;
  let worker: Worker;
  let tombstones: Tombstones;
  let service: IngestService;
  const prefix = `{${uniqueName('idem')}}`;
  const caller = { userId: 'keyed', requestId: 'r-1' };

  beforeAll(async () => {
    schema = await createTestSchema('idem');
    store = new PgvectorMemoryStore({ connectionString: servers.databaseUrl, schema: schema.schema }, logger);
    await store.initialize();
    connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(QueueName.Ingest, { connection, prefix, defaultJobOptions });
    events = new QueueEvents(QueueName.Ingest, { connection: { url: servers.redisUrl }, prefix });
    worker = new Worker(QueueName.Ingest, null, { connection: { url: servers.redisUrl }, prefix });
    tombstones = new Tombstones(connection, prefix);
    service = new IngestService(
      { ingest: queue, all: [queue] },
      events,
      connection,
      prefix,
      store,
      tombstones,
      logger,
    );
  });
  afterAll(async () => {
    await Promise.all([worker.close(), events.close()]);
    await queue.obliterate({ force: true });
    await queue.close();
    await Promise.all([store.close(), connection.quit()]);
    await schema.drop();
  });
  beforeEach(() => queue.drain(true));

  const input = (content: string) => validate(MemoryInput, { content, session_id: 's' });
  const keyed = () => ({ ...caller, idempotencyKey: `key-${randomUUID()}` });
  const contents = (job: Job) => storeJobContents(job).memories.map((m) => m.content);

  /** The Redis key of an Idempotency-Key's record, for a single store or a batch. */
  const recordKey = (idempotencyKey: string, kind: 'store' | 'batch' = 'store') =>
    `${prefix}:idempotency:${createHash('sha256').update(`${caller.userId}:${kind}:${idempotencyKey}`).digest('hex')}`;

  /** The key's record in Redis, and the body fingerprint it holds. */
  async function recordOf(
    idempotencyKey: string,
    kind: 'store' | 'batch' = 'store',
  ): Promise<{ key: string; fingerprint: string }> {
    const key = recordKey(idempotencyKey, kind);
    const value = await connection.get(key);
    expect(value).toMatch(/^[a-z]+:[0-9a-f]{64}$/);
    return { key, fingerprint: value!.replace(/^[a-z]+:/, '') };
  }

  /** Ends every key's record, as its expiry after 24 h would. */
  async function expireRecords(): Promise<void> {
    const records = await connection.keys(`${prefix}:idempotency:*`);
    expect(records.length).toBeGreaterThan(0);
    await connection.del(...records);
  }

  it('answers a retry with the same memory and job, and another body with a 409, while its record lives', async () => {
    const c = keyed();
    const first = await service.storeOne(input('the first body'), c);
    const retry = await service.storeOne(input('the first body'), c);
    expect(retry.memoryId).toBe(first.memoryId);
    expect(retry.job.id).toBe(first.job.id);
    await expect(service.storeOne(input('another body'), c)).rejects.toMatchObject({
      httpStatus: 409,
      code: 'idempotency_key_reused',
    });
  });

  it('takes another body as a new request once its record has expired', async () => {
    const c = keyed();
    const first = await service.storeOne(input('before the record expired'), c);
    await expireRecords();
    const second = await service.storeOne(input('after the record expired'), c);
    expect(second.memoryId).not.toBe(first.memoryId);
    expect(second.job.id).not.toBe(first.job.id);
    expect(contents((await queue.getJob(second.job.id!))!)).toEqual(['after the record expired']);
    expect(contents((await queue.getJob(first.job.id!))!)).toEqual(['before the record expired']);
  });

  it('still maps the same body to the same memory and job once its record has expired', async () => {
    const c = keyed();
    const first = await service.storeOne(input('sent again a day later'), c);
    await expireRecords();
    const again = await service.storeOne(input('sent again a day later'), c);
    expect(again.memoryId).toBe(first.memoryId);
    expect(again.job.id).toBe(first.job.id);
  });

  it('does not run an old failed job, with its old body, in place of a new body under the same key', async () => {
    const c = keyed();
    const first = await service.storeOne(input('its job failed for good'), c);
    const token = randomUUID();
    const taken = (await worker.getNextJob(token)) as Job;
    expect(taken.id).toBe(first.job.id);
    await taken.moveToFailed(new UnrecoverableError('the worker gave up'), token, false);
    expect(await queue.getJobState(first.job.id!)).toBe('failed');
    await expireRecords();

    const second = await service.storeOne(input('a new body under the old key'), c);
    expect(second.job.id).not.toBe(first.job.id);
    expect(await queue.getJobState(first.job.id!)).toBe('failed');
    expect(contents((await queue.getJob(second.job.id!))!)).toEqual(['a new body under the old key']);
  });

  it("does not let a delete of the old memory drop a new body's memory under the same key", async () => {
    const c = keyed();
    const first = await service.storeOne(input('deleted by its owner'), c);
    expect(await service.deleteOne(first.memoryId, caller)).toBe(true);
    await expireRecords();
    const second = await service.storeOne(input('stored later under the same key'), c);
    const candidate = {
      id: second.memoryId,
      user_id: caller.userId,
      session_id: 's',
      created_at: new Date().toISOString(),
    };
    expect(await tombstones.deletedAmong([candidate])).toEqual(new Set());
  });

  it("keeps a batch's ids from an earlier gateway while its bare-fingerprint record lives", async () => {
    const c = keyed();
    const body = [input('an earlier batch a'), input('an earlier batch b')];
    const first = await service.storeBatch(body, c);
    const record = await recordOf(c.idempotencyKey, 'batch');
    await connection.set(record.key, record.fingerprint, 'KEEPTTL');

    const retry = await service.storeBatch(body, c);
    const batchId = uuidv5(`${caller.userId}:batch:${c.idempotencyKey}`, IDEMPOTENCY_NAMESPACE);
    expect(retry.memoryIds).toEqual([0, 1].map((i) => uuidv5(`${batchId}:${i}`, IDEMPOTENCY_NAMESPACE)));
    expect(retry.memoryIds.filter((id) => first.memoryIds.includes(id))).toEqual([]);
    const again = await service.storeBatch(body, c);
    expect(again.job.id).toBe(retry.job.id);
  });

  it('gives a batch under an expired key with another body ids of its own', async () => {
    const c = keyed();
    const first = await service.storeBatch([input('batch one a'), input('batch one b')], c);
    await expireRecords();
    const second = await service.storeBatch([input('batch two a'), input('batch two b')], c);
    expect(second.memoryIds.filter((id) => first.memoryIds.includes(id))).toEqual([]);
    expect(contents((await queue.getJob(second.job.id!))!)).toEqual(['batch two a', 'batch two b']);
  });

  it('takes the key for a request whose record expired between its two commands, so no other body takes it', async () => {
    const c = keyed();
    await service.storeOne(input('the first body'), c);
    // The first body's record expires after SET NX found it and before GET reads it.
    jest.spyOn(connection, 'get').mockImplementationOnce((async (key: string) => {
      await connection.del(key);
      return null;
    }) as never);
    const accepted = await service.storeOne(input('accepted once the record expired'), c);
    await expect(service.storeOne(input('a third body'), c)).rejects.toMatchObject({
      code: 'idempotency_key_reused',
    });
    const retry = await service.storeOne(input('accepted once the record expired'), c);
    expect(retry.memoryId).toBe(accepted.memoryId);
    expect(retry.job.id).toBe(accepted.job.id);
  });

  it("gives no key and body the ids of a longer key that an earlier gateway used (a key may hold ':')", async () => {
    const c = keyed();
    const first = await service.storeOne(input('body b'), c);
    const { fingerprint: bodyB } = await recordOf(c.idempotencyKey);
    const other = keyed();
    await service.storeOne(input('body c'), other);
    const { fingerprint: bodyC } = await recordOf(other.idempotencyKey);
    // An earlier gateway's record for the key that ends where the first key's id material ends.
    const lookalike = { ...caller, idempotencyKey: `${c.idempotencyKey}:${bodyB}` };
    await connection.set(recordKey(lookalike.idempotencyKey), bodyC);
    const second = await service.storeOne(input('body c'), lookalike);
    expect(second.memoryId).not.toBe(first.memoryId);
    expect(second.job.id).not.toBe(first.job.id);
  });

  it("keeps the id an earlier gateway gave a key, whose record holds the body's bare fingerprint", async () => {
    const c = keyed();
    await service.storeOne(input('first sent to an earlier gateway'), c);
    // The record as a gateway wrote it before ids took the body in: the fingerprint alone.
    const record = await recordOf(c.idempotencyKey);
    await connection.set(record.key, record.fingerprint, 'KEEPTTL');

    const retry = await service.storeOne(input('first sent to an earlier gateway'), c);
    expect(retry.memoryId).toBe(uuidv5(`${caller.userId}:store:${c.idempotencyKey}`, IDEMPOTENCY_NAMESPACE));
    // Its next retry reaches the job under that id: one memory, one job.
    const again = await service.storeOne(input('first sent to an earlier gateway'), c);
    expect(again.memoryId).toBe(retry.memoryId);
    expect(again.job.id).toBe(retry.job.id);
    await expect(service.storeOne(input('another body'), c)).rejects.toMatchObject({
      code: 'idempotency_key_reused',
    });
  });
});
