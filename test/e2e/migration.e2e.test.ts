import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Client } from 'pg';
import { ChromaMemoryStore, contentHash, createLogger, type MemoryRecord } from 'memory-core';
import { createTestSchema, repoRoot, servers, testModel } from '../setup/servers';
import { createStack, ServiceProcess, waitForJob, type Stack } from '../setup/service-processes';

/**
 * The migration through the real services: the deployment runs on Chroma, a migration job moves its
 * memories to PostgreSQL on the worker (HTTP and CLI), survives a SIGKILLed worker, verifies, and the
 * backend is then switched explicitly and the services restarted.
 */

const TOTAL = 3_000;
const logger = createLogger({ service: 'migration-e2e', level: 'silent' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function randomUnit(): Float32Array {
  const v = Float32Array.from({ length: 384 }, () => Math.random() * 2 - 1);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** Runs one of the built command-line tools with the stack's environment. */
function cli(stack: Stack, tool: 'migrate' | 'backend', args: string[]) {
  const file = path.join(repoRoot, 'services/api-gateway/dist/cli', `${tool}.js`);
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [file, ...args],
      { env: stack.env, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('Chroma → PostgreSQL migration through the services', () => {
  let stack: Stack;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;
  let sql: Client;
  let records: MemoryRecord[];
  let migrationId: string;
  let restarted: ServiceProcess[] = [];

  /** Rows in the schema (0 while the migration has not created its tables). */
  const count = async (where = 'true') => {
    const table = `${schema.schema}.memories`;
    const { rows } = await sql.query('SELECT to_regclass($1) IS NOT NULL AS present', [table]);
    if (!rows[0].present) return 0;
    return Number((await sql.query(`SELECT count(*) AS n FROM ${table} WHERE ${where}`)).rows[0].n);
  };

  beforeAll(async () => {
    schema = await createTestSchema('migration_e2e');
    sql = new Client({ connectionString: servers.databaseUrl });
    await sql.connect();
    // A short lock lets the restarted worker take over the killed worker's migration within seconds.
    stack = createStack({
      backend: 'chroma',
      schema: schema.schema,
      env: { WORKER_LOCK_DURATION_MS: '3000' },
    });

    // What users have today: memories in the deployment's Chroma collection, written by the service.
    const chroma = new ChromaMemoryStore(
      { url: servers.chromaUrl, collection: stack.collection, embeddingModel: path.resolve(testModel.model) },
      logger,
    );
    const start = Date.parse('2024-06-01T00:00:00.000Z');
    records = Array.from({ length: TOTAL }, (_, i) => {
      const content = `memory ${i} about ${['gardens', 'rivers', 'books', 'music'][i % 4]} and more`;
      const at = new Date(start + i * 1_000).toISOString();
      return {
        id: randomUUID(),
        user_id: '1',
        session_id: `session-${i % 10}`,
        session_type: null,
        project: i % 3 === 0 ? null : `project-${i % 3}`,
        content,
        content_type: ['note', 'insight', 'reflection'][i % 3]!,
        metadata: { i },
        content_hash: contentHash(content),
        embedding: randomUnit(),
        embedding_model: path.resolve(testModel.model),
        created_at: at,
        updated_at: at,
      };
    });
    for (let i = 0; i < TOTAL; i += 1_000) await chroma.upsert(records.slice(i, i + 1_000));
    await stack.start();
  });

  afterAll(async () => {
    await Promise.all(restarted.map((s) => s.stop()));
    await stack?.dispose();
    await sql?.end();
    await schema?.drop();
  });

  it('POST /api/memory/migrate answers bad requests with a 400 JSON error; a bad mapping is invalid_mapping', async () => {
    for (const [body, code] of [
      [{ batch_size: 0 }, 'validation_failed'],
      [{ batch_size: 'ten' }, 'validation_failed'],
      [{ dry_run: true, unknown_option: 1 }, 'validation_failed'],
      [{ mapping: { user_id: 5 } }, 'invalid_mapping'],
      [{ mapping: { owner: 'user' } }, 'invalid_mapping'],
      [{ collection: '../etc' }, 'validation_failed'],
    ] as const) {
      const { status, body: answer } = await stack.call('POST', '/api/memory/migrate', body);
      expect(status).toBe(400);
      expect(answer.error).toMatchObject({ code, message: expect.any(String) });
      if (code === 'invalid_mapping') expect(answer.error.message).toMatch(/^invalid mapping: mapping\b/);
    }
  });

  it('is an operator action: with ADMIN_PASSWORD, migrations, their jobs and Bull Board need it; without, the board cannot change jobs', async () => {
    type ErrorBody = { error: { code: string } };
    const password = 'a long operator password';
    const port = stack.ports.gateway + 3;
    const url = `http://127.0.0.1:${port}`;
    const gateway = new ServiceProcess(
      'api-gateway',
      { ...stack.env, GATEWAY_PORT: String(port), ADMIN_PASSWORD: password },
      `${url}/healthz`,
    );
    const basic = (user: string, secret: string) => ({
      authorization: `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`,
    });
    const operator = basic('admin', password);
    const send = (
      route: string,
      init: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
    ) =>
      fetch(`${url}${route}`, {
        method: init.method ?? 'GET',
        headers: { 'content-type': 'application/json', ...init.headers },
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
      });
    try {
      await gateway.start();
      for (const headers of [{}, basic('admin', 'wrong password!'), basic('someone', password)]) {
        const refused = await send('/api/memory/migrate', {
          method: 'POST',
          headers,
          body: { dry_run: true },
        });
        expect(refused.status).toBe(401);
        expect(refused.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
        expect(((await refused.json()) as ErrorBody).error.code).toBe('operator_only');
      }
      const queued = await send('/api/memory/migrate', {
        method: 'POST',
        headers: operator,
        body: { dry_run: true },
      });
      expect(queued.status).toBe(202);
      const { job_id: jobId } = (await queued.json()) as { job_id: string };
      // The job is the operator's: an app's request does not find it.
      const hidden = await send(`/api/memory/jobs/${jobId}`);
      expect(hidden.status).toBe(404);
      expect(((await hidden.json()) as ErrorBody).error.code).toBe('job_not_found');
      let view: { state: string; queue: string } | undefined;
      for (let i = 0; i < 600 && !['completed', 'failed'].includes(view?.state ?? ''); i += 1) {
        if (view) await new Promise((resolve) => setTimeout(resolve, 100));
        const answer = await send(`/api/memory/jobs/${jobId}`, { headers: operator });
        expect(answer.status).toBe(200);
        view = (await answer.json()) as { state: string; queue: string };
      }
      expect(view).toMatchObject({ state: 'completed', queue: 'memory-migration' });

      expect((await send('/admin/queues')).status).toBe(401);
      expect((await send('/admin/queues', { headers: operator })).status).toBe(200);
    } finally {
      await gateway.stop();
    }

    // The stack's gateway has no ADMIN_PASSWORD: this machine may look, but not add or change jobs.
    expect((await fetch(`${stack.gatewayUrl}/admin/queues`)).status).toBe(200);
    const planted = await stack.call('POST', '/admin/queues/api/queues/memory-ingest/add', {
      name: 'store-memory',
      data: { user_id: '1' },
    });
    expect(planted.status).toBe(405);
  });

  it('a migration of an unknown collection fails for good, with the reason, and writes nothing', async () => {
    const { status, body } = await stack.call('POST', '/api/memory/migrate', {
      collection: 'no_such_collection',
    });
    expect(status).toBe(202);
    expect(body.job_id).toBe(`migrate-${body.migration_id}`);
    const job = await waitForJob(stack, body.job_id);
    expect(job).toMatchObject({ state: 'failed', attempts_made: 1, queue: 'memory-migration' });
    expect(job.failed_reason).toMatch(
      /Chroma collection "no_such_collection" does not exist; rolled back: 0 rows removed/,
    );
    expect(await count()).toBe(0);
  });

  it('the CLI runs a dry run, follows it, and prints the statistics; nothing is written', async () => {
    const { code, stdout, stderr } = await cli(stack, 'migrate', ['--dry-run', '--batch-size', '250']);
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stderr).toMatch(/queued migration mig-/);
    expect(stdout).toMatch(/dry run, nothing written/);
    expect(stdout).toMatch(new RegExp(`read ${TOTAL}  would write ${TOTAL}  skipped 0`));
    expect(stdout).toMatch(
      new RegExp(`user 1: ${TOTAL} memories in 10 sessions, 2 projects, 3 content types`),
    );
    expect(await count()).toBe(0);
  });

  it('a worker killed with SIGKILL mid-migration, then stopped with SIGTERM: the migration resumes each time, exact counts, no duplicates', async () => {
    const { status, body } = await stack.call('POST', '/api/memory/migrate', { batch_size: 20 });
    expect(status).toBe(202);
    expect(body).toMatchObject({ job_id: `migrate-${body.migration_id}`, status: 'queued' });
    migrationId = body.migration_id;

    const deadline = Date.now() + 60_000;
    for (;;) {
      const { body: job } = await stack.call('GET', `/api/memory/jobs/${body.job_id}`);
      const done = (job.progress as { done?: number } | undefined)?.done ?? 0;
      if (done >= TOTAL * 0.2 && done < TOTAL * 0.8) break;
      if (job.state === 'completed' || Date.now() > deadline) {
        throw new Error(`missed the window: ${JSON.stringify(job.progress)}`);
      }
      await sleep(20);
    }
    expect(await stack.services.worker.stop('SIGKILL')).toBeNull();
    const partial = await count();
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(TOTAL);

    await stack.services.worker.start();

    // SIGTERM pauses the migration at its next batch: the worker exits promptly and cleanly, and the
    // job waits in the queue for the next worker.
    for (;;) {
      const { body: job } = await stack.call('GET', `/api/memory/jobs/${body.job_id}`);
      const done = (job.progress as { done?: number } | undefined)?.done ?? 0;
      if (job.state === 'active' && done > partial && done < TOTAL * 0.95) break;
      if (job.state === 'completed' || Date.now() > deadline + 60_000) {
        throw new Error(`missed the SIGTERM window: ${JSON.stringify(job.progress)}`);
      }
      await sleep(20);
    }
    const stopping = Date.now();
    expect(await stack.services.worker.stop('SIGTERM')).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(10_000);
    const paused = await stack.call('GET', `/api/memory/jobs/${body.job_id}`);
    expect(['delayed', 'waiting']).toContain(paused.body.state);
    await stack.services.worker.start();

    const job = await waitForJob(stack, body.job_id, 180_000);
    expect(job.state).toBe('completed');
    expect(job.progress).toMatchObject({ phase: 'done', done: TOTAL, total: TOTAL, written: TOTAL });
    expect(job.result.stats).toMatchObject({
      read: TOTAL,
      written: TOTAL,
      skipped: 0,
      failed: 0,
      copied_embeddings: TOTAL,
    });
    expect(job.result.verification).toMatchObject({ verified: true, differences: [] });

    expect(await count()).toBe(TOTAL);
    expect(await count(`migration_id = '${migrationId}'`)).toBe(TOTAL);
    const { rows } = await sql.query(
      `SELECT count(DISTINCT id) AS ids, count(DISTINCT content) AS contents FROM ${schema.schema}.memories`,
    );
    expect(rows[0]).toEqual({ ids: String(TOTAL), contents: String(TOTAL) });
    const { rows: ids } = await sql.query(`SELECT id::text FROM ${schema.schema}.memories`);
    expect(new Set(ids.map((r: { id: string }) => r.id))).toEqual(new Set(records.map((r) => r.id)));
  });

  it('the CLI shows where a migration stands', async () => {
    const { code, stdout } = await cli(stack, 'migrate', ['--status', migrationId]);
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`job migrate-${migrationId}: completed`));
    expect(stdout).toMatch(/completed, verified/);
    expect(stdout).toMatch(new RegExp(`read ${TOTAL}  written ${TOTAL}  skipped 0`));
  });

  it('switching the backend is one explicit step; restarted services then read the migrated memories from PostgreSQL', async () => {
    expect((await cli(stack, 'backend', ['show'])).stdout).toMatch(/^backend: chroma/);
    const use = await cli(stack, 'backend', ['use', 'postgres']);
    expect(use.code).toBe(0);
    expect(use.stdout).toMatch(/backend: postgres \(was chroma\)\nrestart the services/);

    // Services read the backend at start-up: restart them (MEMORY_BACKEND=auto follows the recorded choice).
    await stack.stop();
    const env = { ...stack.env, MEMORY_BACKEND: 'auto' };
    restarted = [
      new ServiceProcess('embedding-worker', env, `http://127.0.0.1:${stack.ports.worker}/healthz`),
      new ServiceProcess('search-service', env, `http://127.0.0.1:${stack.ports.search}/healthz`),
      new ServiceProcess('api-gateway', env, `${stack.gatewayUrl}/healthz`),
    ];
    for (const service of restarted) await service.start();

    const status = await stack.call('GET', '/api/memory/status');
    expect(status.body.backend).toBe('postgres');
    const sample = records[1_234]!;
    const { status: code, body } = await stack.call('GET', `/api/memory/${sample.id}`);
    expect(code).toBe(200);
    expect(body).toMatchObject({
      id: sample.id,
      content: sample.content,
      session_id: sample.session_id,
      metadata: { i: 1_234 },
    });
  });

  it('the CLI rolls the migration back: exactly its rows go, a memory stored through the API stays', async () => {
    const stored = await stack.call('POST', '/api/memory/store?wait=true', {
      content: 'stored after the switch',
    });
    expect(stored.status).toBe(201);

    const { code, stdout, stderr } = await cli(stack, 'migrate', ['--rollback', migrationId]);
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stdout).toMatch(new RegExp(`rolled back migration ${migrationId}: ${TOTAL} rows removed`));
    expect(await count()).toBe(1);
    expect((await stack.call('GET', `/api/memory/${stored.body.memory_id}`)).status).toBe(200);
    expect((await stack.call('GET', `/api/memory/${records[0]!.id}`)).status).toBe(404);
    expect((await cli(stack, 'migrate', ['--status', migrationId])).stdout).toMatch(/rolled_back/);
  });
});
