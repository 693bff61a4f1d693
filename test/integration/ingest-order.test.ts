import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import {
  MemoryInput,
  QueueName,
  Tombstones,
  defaultJobOptions,
  validate,
  type MemoryStore,
} from 'memory-core';
import { IngestService } from '../../services/api-gateway/src/ingest.service';
import { servers, uniqueName } from '../setup/servers';

const logger = pino({ level: 'silent' });

/**
 * The order in which the gateway's store jobs leave a real queue in Redis: smaller jobs first
 * (`storeJobPriority`), so that an app's single store does not wait behind a bulk load. The test
 * takes the jobs as a worker would, one at a time.
 */
describe('the order of queued store jobs', () => {
  let connection: Redis;
  let queue: Queue;
  let events: QueueEvents;
  let worker: Worker;
  let service: IngestService;
  const prefix = `{${uniqueName('order')}}`;
  const caller = { userId: 'orderly', requestId: 'r-1' };
  const inputs = (label: string, n: number) =>
    Array.from({ length: n }, (_, i) => validate(MemoryInput, { content: `${label} ${i}` }));

  beforeAll(async () => {
    connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(QueueName.Ingest, { connection, prefix, defaultJobOptions });
    events = new QueueEvents(QueueName.Ingest, { connection: { url: servers.redisUrl }, prefix });
    worker = new Worker(QueueName.Ingest, null, { connection: { url: servers.redisUrl }, prefix });
    service = new IngestService(
      { ingest: queue, all: [queue] },
      events,
      connection,
      prefix,
      {} as MemoryStore,
      new Tombstones(connection, prefix),
      logger,
    );
  });
  afterAll(async () => {
    await Promise.all([worker.close(), events.close()]);
    await queue.obliterate({ force: true });
    await queue.close();
    await connection.quit();
  });

  async function takeAll(): Promise<Job[]> {
    const taken: Job[] = [];
    for (;;) {
      const token = randomUUID();
      const job = (await worker.getNextJob(token, { block: false })) as Job | undefined;
      if (!job) return taken;
      taken.push(job);
      await job.moveToCompleted({ memories: [] }, token, false);
    }
  }

  it('hands out single stores first, then batches smallest first, each size in the order it came', async () => {
    const bulk = await service.storeBatch(inputs('bulk', 100), caller);
    const single = await service.storeOne(inputs('single', 1)[0]!, caller);
    const small = await service.storeBatch(inputs('small', 3), caller);
    const bulkAgain = await service.storeBatch(inputs('bulk again', 100), caller);
    const one = await service.storeBatch(inputs('batch of one', 1), caller);
    const singleAgain = await service.storeOne(inputs('single again', 1)[0]!, caller);
    // A queued batch waits, as far as its client can tell, whatever BullMQ calls its state.
    expect((await service.job(bulk.job.id!, { userId: caller.userId, operator: false })).state).toBe(
      'waiting',
    );

    const order = (await takeAll()).map((job) => job.id);
    expect(order).toEqual([single, singleAgain, one, small, bulk, bulkAgain].map((queued) => queued.job.id));
  });

  it('puts a batch deferred while the store was down back in its place, behind smaller jobs', async () => {
    const bulk = await service.storeBatch(inputs('deferred bulk', 100), caller);
    const token = randomUUID();
    const taken = (await worker.getNextJob(token, { block: false })) as Job;
    expect(taken.id).toBe(bulk.job.id);
    // What the store processor does while the store does not answer.
    await taken.moveToDelayed(Date.now() + 50, token);
    const small = await service.storeBatch(inputs('small after', 2), caller);
    const single = await service.storeOne(inputs('single after', 1)[0]!, caller);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await takeAll()).map((job) => job.id)).toEqual([single, small, bulk].map((q) => q.job.id));
  });
});
