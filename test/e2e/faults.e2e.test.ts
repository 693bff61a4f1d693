import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { createTestSchema, servers } from '../setup/servers';
import { createStack, waitForJob, type Stack } from '../setup/service-processes';
import { TcpProxy } from '../setup/tcp-proxy';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('PostgreSQL goes down and comes back while the services run', () => {
  const proxy = new TcpProxy(15_439, {
    host: '127.0.0.1',
    port: Number(new URL(servers.databaseUrl).port || 5432),
  });
  let stack: Stack;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;

  beforeAll(async () => {
    await proxy.up();
    schema = await createTestSchema('pgdown');
    const url = new URL(servers.databaseUrl);
    url.port = String(proxy.port);
    stack = createStack({
      backend: 'postgres',
      schema: schema.schema,
      env: { DATABASE_URL: url.toString() },
    });
    await stack.start();
  });

  afterAll(async () => {
    await proxy.up();
    await stack?.dispose();
    await schema?.drop();
    await proxy.down();
  });

  it('answers 503 while it is down, retries queued jobs, and never switches backend', async () => {
    const before = await stack.call('POST', '/api/memory/store?wait=true', {
      content: 'stored before the outage',
    });
    expect(before.status).toBe(201);

    await proxy.down();
    const search = await stack.call('POST', '/api/memory/search', { query: 'outage' });
    expect(search.status).toBe(503);
    expect(search.body.error.code).toBe('backend_unavailable');
    const get = await stack.call('GET', `/api/memory/${before.body.id}`);
    expect(get.status).toBe(503);

    // Accepted while the store is down: queued, and put back in the queue without using its attempts
    // (an outage longer than the attempts' backoff used to fail every job accepted meanwhile).
    const queued = await stack.call('POST', '/api/memory/store', { content: 'accepted during the outage' });
    expect(queued.status).toBe(202);
    const deferrals = async () => {
      const text = await (await fetch(`http://127.0.0.1:${stack.ports.worker}/metrics`)).text();
      return Number(/memory_jobs_deferred_total\{[^}]*name="store-memory"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    await until('the job put back three times', async () => (await deferrals()) >= 3);
    const view = await stack.call('GET', `/api/memory/jobs/${queued.body.job_id}`);
    expect(view.body).toMatchObject({ attempts_made: 0, failed_reason: null });
    expect(view.body.state).not.toBe('failed');
    // While it waits, its view says why, and until when.
    let waiting = view.body;
    await until('the job seen waiting', async () => {
      waiting = (await stack.call('GET', `/api/memory/jobs/${queued.body.job_id}`)).body;
      return waiting.state === 'delayed';
    });
    expect(waiting.deferred).toEqual({ reason: 'backend_unavailable', retry_at: expect.any(String) });
    expect(Date.parse(waiting.deferred.retry_at)).toBeGreaterThan(Date.now() - 2_000);
    const status = await stack.call('GET', '/api/memory/status');
    expect(status.body).toMatchObject({
      backend: 'postgres',
      status: 'degraded',
      store: { reachable: false },
    });
    expect((await fetch(`${stack.gatewayUrl}/readyz`)).status).toBe(503);

    await proxy.up();
    const done = await waitForJob(stack, queued.body.job_id, 60_000);
    expect(done).toMatchObject({ state: 'completed', deferred: null });
    const found = await stack.call('POST', '/api/memory/search', {
      query: 'accepted during the outage',
      n_results: 5,
    });
    expect(found.status).toBe(200);
    expect(found.body.backend).toBe('postgres');
    // SERVER_TIMING is off by default.
    expect(found.headers.get('server-timing')).toBeNull();
    expect(
      found.body.results.filter((r: { content: string }) => r.content === 'accepted during the outage'),
    ).toHaveLength(1);
  });
});

describe('Redis crashes (SIGKILL) and restarts with its AOF while jobs wait', () => {
  const port = 16_390 + Math.floor(Math.random() * 50);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'redis-fault-'));
  let redis: ChildProcess | undefined;
  let stack: Stack;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;

  const startRedis = async () => {
    redis = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      {
        stdio: 'ignore',
      },
    );
    await until('redis', async () => {
      const probe = new Redis(`redis://127.0.0.1:${port}`, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on('error', () => undefined);
      const ok = await probe
        .connect()
        .then(() => probe.ping())
        .then(
          () => true,
          () => false,
        );
      probe.disconnect();
      return ok;
    });
  };

  beforeAll(async () => {
    await startRedis();
    schema = await createTestSchema('redisdown');
    stack = createStack({
      backend: 'postgres',
      schema: schema.schema,
      env: { REDIS_URL: `redis://127.0.0.1:${port}` },
    });
    await stack.start();
  });

  afterAll(async () => {
    await stack?.dispose();
    redis?.kill('SIGKILL');
    await schema?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses no accepted memory and stores none twice', async () => {
    await stack.services.worker.stop();
    const accepted: string[] = [];
    for (let i = 0; i < 30; i += 1) {
      const { status, body } = await stack.call('POST', '/api/memory/store', {
        content: `accepted before the crash ${i}`,
        session_id: 'crash',
      });
      expect(status).toBe(202);
      accepted.push(body.memory_id);
    }
    const exited = new Promise((resolve) => redis!.once('exit', resolve));
    redis!.kill('SIGKILL');
    await exited;

    const during = await stack.call('POST', '/api/memory/store', { content: 'while redis is down' });
    expect(during.status).toBe(503);
    expect(during.body.error.code).toBe('queue_unavailable');

    await startRedis();
    await stack.services.worker.start();
    const client = new Client({ connectionString: servers.databaseUrl });
    await client.connect();
    try {
      const rows = await until('all accepted memories', async () => {
        const { rows } = await client.query(
          `SELECT id::text FROM ${schema.schema}.memories WHERE session_id = 'crash'`,
        );
        return rows.length >= accepted.length && rows;
      });
      await sleep(500);
      const { rows: final } = await client.query(
        `SELECT id::text FROM ${schema.schema}.memories WHERE session_id = 'crash'`,
      );
      expect(final).toHaveLength(accepted.length);
      expect(new Set(rows.map((r: { id: string }) => r.id))).toEqual(new Set(accepted));
    } finally {
      await client.end();
    }
    // The gateway reconnected by itself.
    const after = await stack.call('POST', '/api/memory/store?wait=true', { content: 'after the restart' });
    expect(after.status).toBe(201);
  });
});
