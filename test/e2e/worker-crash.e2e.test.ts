import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { createTestSchema, servers } from '../setup/servers';
import { createStack, waitForJob, type Stack } from '../setup/service-processes';

/**
 * At-least-once delivery made exactly-once in effect: a worker killed with SIGKILL in the middle of
 * 2,000 memories, then restarted, leaves every memory stored exactly once.
 */
describe('worker faults and shutdown (postgres backend)', () => {
  let stack: Stack;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;

  beforeAll(async () => {
    schema = await createTestSchema('crash');
    // A short lock lets the restarted worker take over the dead worker's jobs within seconds.
    stack = createStack({
      backend: 'postgres',
      schema: schema.schema,
      env: { WORKER_LOCK_DURATION_MS: '3000', WORKER_CONCURRENCY: '2', MICRO_BATCH_SIZE: '32' },
    });
    await stack.start();
  });

  afterAll(async () => {
    await stack?.dispose();
    await schema?.drop();
  });

  it('stores every memory exactly once after SIGKILL and restart, twice', async () => {
    const jobs: { job_id: string; memory_ids: string[] }[] = [];
    for (const part of [0, 1]) {
      const memories = Array.from({ length: 1000 }, (_, i) => ({
        content: `crash test memory ${part}-${i} with some words to embed`,
        session_id: `crash-${part}`,
        metadata: { part, i },
      }));
      const { status, body } = await stack.call('POST', '/api/memory/store/batch', { memories });
      expect(status).toBe(202);
      jobs.push(body);
    }

    // Kill once the first job has written part of its memories but not all.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { body } = await stack.call('GET', `/api/memory/jobs/${jobs[0]!.job_id}`);
      const done = (body.progress as { done?: number } | undefined)?.done ?? 0;
      if (done >= 100 && done < 1000) break;
      if (body.state === 'completed' || Date.now() > deadline)
        throw new Error(`missed the window: ${JSON.stringify(body.progress)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await stack.services.worker.stop('SIGKILL')).toBeNull();

    const client = new Client({ connectionString: servers.databaseUrl });
    await client.connect();
    const count = async () =>
      Number((await client.query(`SELECT count(*) FROM ${schema.schema}.memories`)).rows[0].count);
    const partial = await count();
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(2000);

    await stack.services.worker.start();
    // Kill it again while it runs a job it took over from the dead worker: a second death must not
    // fail that job for good.
    const connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue('memory-ingest', { connection, prefix: stack.queuePrefix });
    try {
      const takenOver = async () => {
        for (const { job_id: id } of jobs) {
          const job = await queue.getJob(id);
          if (job && job.stalledCounter >= 1 && (await job.getState()) === 'active') return true;
        }
        return false;
      };
      const until = Date.now() + 60_000;
      while (!(await takenOver())) {
        if (Date.now() > until) throw new Error('no job was taken over');
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      await queue.close();
      await connection.quit();
    }
    expect(await stack.services.worker.stop('SIGKILL')).toBeNull();
    await stack.services.worker.start();
    for (const job of jobs) expect((await waitForJob(stack, job.job_id, 180_000)).state).toBe('completed');

    const { rows } = await client.query(
      `SELECT id::text, count(*) OVER (PARTITION BY content) AS copies FROM ${schema.schema}.memories`,
    );
    await client.end();
    expect(rows).toHaveLength(2000);
    expect(rows.every((r: { copies: string }) => Number(r.copies) === 1)).toBe(true);
    expect(new Set(rows.map((r: { id: string }) => r.id))).toEqual(
      new Set(jobs.flatMap((j) => j.memory_ids)),
    );
  });

  it('finishes the jobs in flight on SIGTERM before it exits', async () => {
    const memories = Array.from({ length: 1000 }, (_, i) => ({
      content: `graceful memory ${i}`,
      session_id: 'graceful',
    }));
    const { body } = await stack.call('POST', '/api/memory/store/batch', { memories });
    for (;;) {
      const { body: job } = await stack.call('GET', `/api/memory/jobs/${body.job_id}`);
      if (job.state === 'active') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await stack.services.worker.stop('SIGTERM')).toBe(0);
    const { body: job } = await stack.call('GET', `/api/memory/jobs/${body.job_id}`);
    expect(job).toMatchObject({ state: 'completed', attempts_made: 1 });
    await stack.services.worker.start();
  });

  it('fails an invalid payload for good, without retries, with its reason visible', async () => {
    const connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue('memory-ingest', { connection, prefix: stack.queuePrefix });
    try {
      const job = await queue.add(
        'store-memory',
        { user_id: '1', memory: { id: 'not-a-uuid', content: '' } },
        { attempts: 5 },
      );
      const view = await waitForJob(stack, job.id!);
      expect(view.state).toBe('failed');
      expect(view.attempts_made).toBe(1);
      expect(view.failed_reason).toMatch(/invalid store-memory payload: memory\.id/);
    } finally {
      await queue.close();
      await connection.quit();
    }
  });
});
