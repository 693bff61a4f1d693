import SwaggerParser from '@apidevtools/swagger-parser';
import { Redis } from 'ioredis';
import { Tombstones } from 'memory-core';
import { createTestSchema, servers } from '../setup/servers';
import { parseServerTiming } from '../../bench/lib/stack';
import { createStack, waitForJob, type Stack } from '../setup/service-processes';

/**
 * The three services as real processes over HTTP, against real Redis and each real backend.
 */
describe.each(['postgres', 'chroma'] as const)('memory API end to end (%s backend)', (backend) => {
  let stack: Stack;
  let dropSchema: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const schema = backend === 'postgres' ? await createTestSchema('e2e') : undefined;
    dropSchema = schema?.drop;
    stack = createStack({
      backend,
      schema: schema?.schema,
      env: { STORE_WAIT_TIMEOUT_MS: '30000', SERVER_TIMING: 'true' },
    });
    await stack.start();
  });

  afterAll(async () => {
    await stack?.dispose();
    await dropSchema?.();
  });

  const store = async (body: object, query = '', headers: Record<string, string> = {}) =>
    stack.call('POST', `/api/memory/store${query}`, body, headers);
  const search = (body: object) => stack.call('POST', '/api/memory/search', body);

  describe("the seed's own flow", () => {
    let memoryId: string;

    it('initializes, idempotently, and reports the backend', async () => {
      const first = await stack.call('POST', '/api/memory/initialize');
      const second = await stack.call('POST', '/api/memory/initialize');
      expect(first.status).toBe(200);
      expect(second.status).toBe(200);
      expect(second.body).toMatchObject({ initialized: true, backend });
    });

    it('reports status: backend and why, model, queues, workers, search service', async () => {
      const { status, body } = await stack.call('GET', '/api/memory/status');
      expect(status).toBe(200);
      expect(body.backend).toBe(backend);
      expect(body.backend_reason).toMatch(new RegExp(`MEMORY_BACKEND=${backend}`));
      expect(body.embedding).toMatchObject({ dimension: 384, dtype: stack.env.EMBEDDING_DTYPE });
      expect(body.queues['memory-ingest']).toMatchObject({
        waiting: expect.any(Number),
        failed: expect.any(Number),
      });
      expect(body.workers).toBeGreaterThanOrEqual(1);
      expect(body.search_service.reachable).toBe(true);
    });

    it('stores the seed memory', async () => {
      const { status, body } = await store({
        content: 'Wisdom is understanding what truly matters',
        session_id: 1,
        content_type: 'reflection',
        metadata: { session_type: 'philosophy' },
      });
      expect(status).toBe(202);
      expect(body).toMatchObject({
        memory_id: expect.any(String),
        job_id: expect.any(String),
        status: 'queued',
      });
      memoryId = body.memory_id;
      const job = await waitForJob(stack, body.job_id);
      expect(job.state).toBe('completed');
    });

    it('finds it first for "What is wisdom?" within session_type philosophy', async () => {
      for (const distractor of [
        'The weather is cold in winter',
        'Bananas are yellow fruit',
        'Cars need fuel to run',
      ]) {
        await store(
          {
            content: distractor,
            session_id: 1,
            content_type: 'note',
            metadata: { session_type: 'philosophy' },
          },
          '?wait=true',
        );
      }
      const { status, body } = await search({
        query: 'What is wisdom?',
        n_results: 3,
        session_type: 'philosophy',
      });
      expect(status).toBe(200);
      expect(body.backend).toBe(backend);
      expect(body.results).toHaveLength(3);
      expect(body.results[0]).toMatchObject({
        id: memoryId,
        content: 'Wisdom is understanding what truly matters',
        session_id: '1',
        content_type: 'reflection',
        metadata: { session_type: 'philosophy' },
      });
      expect(body.results[0].similarity).toBeGreaterThan(body.results[1].similarity);
    });

    it('says where a search spent its time (SERVER_TIMING), on the search service and through the gateway', async () => {
      const query = { query: 'What is wisdom?', n_results: 3 };
      const direct = await fetch(`http://127.0.0.1:${stack.ports.search}/api/memory/search`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(query),
      });
      expect(direct.status).toBe(200);
      const own = parseServerTiming(direct.headers.get('server-timing'));
      expect(Object.keys(own)).toEqual(['embed', 'store']);
      for (const ms of Object.values(own)) expect(ms).toBeGreaterThanOrEqual(0);

      const before = Date.now();
      const viaGateway = await search(query);
      const elapsed = Date.now() - before;
      expect(viaGateway.status).toBe(200);
      const forwarded = parseServerTiming(viaGateway.headers.get('server-timing'));
      expect(Object.keys(forwarded)).toEqual(['embed', 'store', 'search-service']);
      // The hop holds the search service's stages, and the caller waited at least the hop.
      expect(forwarded['search-service']).toBeGreaterThanOrEqual(forwarded.embed! + forwarded.store!);
      expect(forwarded['search-service']).toBeLessThanOrEqual(elapsed + 1);

      const metrics = await (await fetch(`http://127.0.0.1:${stack.ports.search}/metrics`)).text();
      for (const stage of ['embed', 'store']) {
        expect(metrics).toMatch(
          new RegExp(`search_stage_duration_seconds_count\\{[^}]*stage="${stage}"[^}]*\\} [1-9]`),
        );
      }
    });

    it('lists it in its session, newest first', async () => {
      const { status, body } = await stack.call('GET', '/api/memory/session/1');
      expect(status).toBe(200);
      expect(body.total).toBe(4);
      expect(body.memories.map((m: { id: string }) => m.id)).toContain(memoryId);
      const times = body.memories.map((m: { created_at: string }) => Date.parse(m.created_at));
      expect([...times].sort((a, b) => b - a)).toEqual(times);
    });

    it('lists project memories by name', async () => {
      const { body: stored } = await store(
        { content: 'Projects are addressed by name', project: 'Atlas' },
        '?wait=true',
      );
      const { status, body } = await stack.call('GET', '/api/memory/project/Atlas');
      expect(status).toBe(200);
      expect(body.memories.map((m: { id: string }) => m.id)).toEqual([stored.id]);
    });
  });

  it('answers 201 with the stored memory when asked to wait', async () => {
    const { status, body } = await store(
      { content: 'Waiting for the worker', metadata: { n: 1 } },
      '?wait=true',
    );
    expect(status).toBe(201);
    expect(body).toMatchObject({ content: 'Waiting for the worker', metadata: { n: 1 }, status: 'stored' });
    const fetched = await stack.call('GET', `/api/memory/${body.id.toUpperCase()}`);
    expect(fetched.status).toBe(200);
    expect(fetched.body.content).toBe('Waiting for the worker');
  });

  it('stores a batch of 1,000 as one job with progress, every memory retrievable', async () => {
    const memories = Array.from({ length: 1000 }, (_, i) => ({
      content: `batch memory number ${i} about topic ${i % 17}`,
      session_id: 'bulk',
      metadata: { i },
    }));
    const { status, body } = await stack.call('POST', '/api/memory/store/batch', { memories });
    expect(status).toBe(202);
    expect(body.memory_ids).toHaveLength(1000);
    expect(new Set(body.memory_ids).size).toBe(1000);
    const job = await waitForJob(stack, body.job_id);
    expect(job.state).toBe('completed');
    expect(job.progress).toEqual({ done: 1000, total: 1000 });
    expect(job.result.memories.filter((m: { status: string }) => m.status === 'created')).toHaveLength(1000);
    const listed = await stack.call('GET', '/api/memory/session/bulk?limit=1');
    expect(listed.body.total).toBe(1000);
    const sample = await stack.call('GET', `/api/memory/${body.memory_ids[777]}`);
    expect(sample.body).toMatchObject({
      content: 'batch memory number 777 about topic 12',
      metadata: { i: 777 },
    });
  });

  it('stores a single memory ahead of a bulk load queued before it', async () => {
    const batches = 20;
    const jobIds: string[] = [];
    for (let b = 0; b < batches; b += 1) {
      const memories = Array.from({ length: 100 }, (_, i) => ({
        content: `bulk load memory ${b}-${i} on subject ${(b * 100 + i) % 23}`,
        session_id: 'bulk-ahead',
      }));
      const { status, body } = await stack.call('POST', '/api/memory/store/batch', { memories });
      expect(status).toBe(202);
      jobIds.push(body.job_id);
    }
    const single = await store({ content: 'A note taken while the bulk load runs' }, '?wait=true');
    expect(single.status).toBe(201);
    // Stored while most of the load still waited behind it: the load's memories are not all written.
    const meanwhile = await stack.call('GET', '/api/memory/session/bulk-ahead?limit=1');
    expect(meanwhile.body.total).toBeLessThan(batches * 100);
    for (const id of jobIds) expect((await waitForJob(stack, id)).state).toBe('completed');
    const after = await stack.call('GET', '/api/memory/session/bulk-ahead?limit=1');
    expect(after.body.total).toBe(batches * 100);
  });

  it('makes a retried request with the same Idempotency-Key return the same memory and job', async () => {
    const key = `key-${backend}-${Date.now()}`;
    const body = { content: 'Idempotent memory', session_id: 'idem', metadata: { a: 1, b: 2 } };
    const first = await store(body, '', { 'idempotency-key': key });
    // The same object serialised in another key order is the same request.
    const reordered = { metadata: { b: 2, a: 1 }, session_id: 'idem', content: 'Idempotent memory' };
    const second = await store(reordered, '', { 'idempotency-key': key });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.memory_id).toBe(first.body.memory_id);
    expect(second.body.job_id).toBe(first.body.job_id);
    await waitForJob(stack, first.body.job_id);
    const third = await store(body, '?wait=true', { 'idempotency-key': key });
    expect(third.body.id).toBe(first.body.memory_id);
    const listed = await stack.call('GET', '/api/memory/session/idem');
    expect(listed.body.total).toBe(1);
    const reused = await store({ ...body, content: 'Another body' }, '', { 'idempotency-key': key });
    expect(reused.status).toBe(409);
    expect(reused.body.error.code).toBe('idempotency_key_reused');
  });

  it('returns the existing memory when identical content is stored again in the same scope', async () => {
    const a = await store({ content: 'Same words twice', session_id: 'dedup' }, '?wait=true');
    const b = await store({ content: 'Same words twice', session_id: 'dedup' }, '?wait=true');
    const c = await store({ content: 'Same words twice', session_id: 'other-session' }, '?wait=true');
    expect(b.body.id).toBe(a.body.id);
    expect(c.body.id).not.toBe(a.body.id);
  });

  it('deletes a memory, and a session with all its memories', async () => {
    const a = await store({ content: 'to be deleted', session_id: 'del' }, '?wait=true');
    await store({ content: 'also to be deleted', session_id: 'del' }, '?wait=true');
    const kept = await store({ content: 'kept in another session', session_id: 'keep' }, '?wait=true');
    expect((await stack.call('DELETE', `/api/memory/${a.body.id}`)).status).toBe(200);
    expect((await stack.call('GET', `/api/memory/${a.body.id}`)).status).toBe(404);
    expect((await stack.call('DELETE', `/api/memory/${a.body.id}`)).status).toBe(404);
    const session = await stack.call('DELETE', '/api/memory/session/del');
    expect(session.body).toEqual({ session_id: 'del', deleted: 1, queued: 0 });
    expect((await stack.call('GET', '/api/memory/session/del')).body.total).toBe(0);
    expect((await stack.call('GET', `/api/memory/${kept.body.id}`)).status).toBe(200);
  });

  describe('filters on every field', () => {
    beforeAll(async () => {
      const rows = [
        {
          content: 'filter alpha red',
          session_id: 'f1',
          session_type: 'work',
          project: 'p1',
          content_type: 'insight',
          metadata: { mood: 'happy', score: 1, pinned: true },
        },
        {
          content: 'filter alpha blue',
          session_id: 'f1',
          session_type: 'work',
          project: 'p2',
          content_type: 'note',
          metadata: { mood: 'sad', score: 5 },
        },
        {
          content: 'filter alpha green',
          session_id: 'f2',
          session_type: 'play',
          project: 'p1',
          content_type: 'insight',
          metadata: { mood: 'happy', score: 9, pinned: false },
        },
      ];
      const { body } = await stack.call('POST', '/api/memory/store/batch', { memories: rows });
      await waitForJob(stack, body.job_id);
    });
    const contents = async (filter: object) => {
      const { status, body } = await search({ query: 'filter alpha', n_results: 10, ...filter });
      expect(status).toBe(200);
      return body.results.map((r: { content: string }) => r.content).sort();
    };

    it.each([
      [{ session_id: 'f1' }, ['filter alpha blue', 'filter alpha red']],
      [{ session_type: 'play' }, ['filter alpha green']],
      [{ project: 'p1' }, ['filter alpha green', 'filter alpha red']],
      [{ content_type: 'note', session_type: 'work' }, ['filter alpha blue']],
      [{ content_type: 'insight' }, ['filter alpha green', 'filter alpha red']],
      [{ metadata_filter: { mood: 'happy' } }, ['filter alpha green', 'filter alpha red']],
      [{ metadata_filter: { mood: 'happy', pinned: true } }, ['filter alpha red']],
      [{ where: { score: { $gte: 5 } } }, ['filter alpha blue', 'filter alpha green']],
      [{ where: { score: { $lt: 5 } } }, ['filter alpha red']],
      [{ where: { mood: { $ne: 'happy' } } }, ['filter alpha blue']],
      [{ where: { mood: { $in: ['sad', 'angry'] } } }, ['filter alpha blue']],
      [
        { where: { $or: [{ project: 'p2' }, { score: { $gt: 8 } }] } },
        ['filter alpha blue', 'filter alpha green'],
      ],
      [{ where: { $and: [{ session_id: 'f1' }, { pinned: { $nin: [false] } }] } }, ['filter alpha red']],
      [{ session_id: 'f1', where: { score: { $lte: 1 } } }, ['filter alpha red']],
    ])('%j', async (filter, expected) => {
      expect(await contents(filter)).toEqual(expected);
    });
  });

  describe('bad input: a 4xx JSON error and nothing stored', () => {
    let before: number;
    beforeAll(async () => {
      before = (await stack.call('GET', '/api/memory/stats')).body.total;
    });
    afterAll(async () => {
      // Nothing above may have queued anything: the store's total is unchanged.
      const { body } = await stack.call('GET', '/api/memory/status');
      expect(body.queues['memory-ingest'].waiting + body.queues['memory-ingest'].active).toBe(0);
      expect((await stack.call('GET', '/api/memory/stats')).body.total).toBe(before);
    });

    const huge = 'x'.repeat(10_001);
    const tooManyKeys = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i]));
    it.each([
      ['malformed JSON', '/api/memory/store', '{"content": ', 400, 'malformed_json'],
      ['a JSON null body', '/api/memory/store', 'null', 400, 'validation_failed'],
      ['a JSON number body', '/api/memory/store/batch', '42', 400, 'validation_failed'],
      ['missing content', '/api/memory/store', {}, 400, 'validation_failed'],
      ['empty content', '/api/memory/store', { content: '' }, 400, 'validation_failed'],
      ['whitespace-only content', '/api/memory/store', { content: ' \n\t ' }, 400, 'validation_failed'],
      ['content over the limit', '/api/memory/store', { content: huge }, 400, 'validation_failed'],
      ['NUL in content', '/api/memory/store', { content: 'a\u0000b' }, 400, 'validation_failed'],
      [
        'NUL in metadata',
        '/api/memory/store',
        { content: 'x', metadata: { a: 'b\u0000' } },
        400,
        'validation_failed',
      ],
      [
        'NUL in a session id',
        '/api/memory/store',
        { content: 'x', session_id: 's\u0000' },
        400,
        'validation_failed',
      ],
      // JSON can carry an unpaired surrogate; UTF-8 cannot: PostgreSQL kept U+FFFD in its place.
      [
        'unpaired surrogate in content',
        '/api/memory/store',
        { content: 'lone \ud800 one' },
        400,
        'validation_failed',
      ],
      [
        'unpaired surrogate in metadata',
        '/api/memory/store',
        { content: 'x', metadata: { k: '\udc00x' } },
        400,
        'validation_failed',
      ],
      [
        'unpaired surrogate in a project',
        '/api/memory/store',
        { content: 'x', project: 'p\ud83d' },
        400,
        'validation_failed',
      ],
      [
        'unpaired surrogate in one memory of a batch',
        '/api/memory/store/batch',
        { memories: [{ content: 'fine' }, { content: 'not \udfff fine' }] },
        400,
        'validation_failed',
      ],
      [
        '"__proto__" as a metadata key',
        '/api/memory/store',
        '{"content":"x","metadata":{"__proto__":"v"}}',
        400,
        'validation_failed',
      ],
      [
        'a metadata session_type other than session_type',
        '/api/memory/store',
        { content: 'x', session_type: 'work', metadata: { session_type: 'play' } },
        400,
        'validation_failed',
      ],
      [
        'a session id of ".."',
        '/api/memory/store',
        { content: 'x', session_id: '..' },
        400,
        'validation_failed',
      ],
      [
        'unpaired surrogate in a filter value',
        '/api/memory/search',
        { query: 'q', where: { k: '\ud800' } },
        400,
        'invalid_filter',
      ],
      [
        '"__proto__" in metadata_filter',
        '/api/memory/search',
        '{"query":"q","metadata_filter":{"__proto__":"v"}}',
        400,
        'validation_failed',
      ],
      [
        '"__proto__" in a nested where',
        '/api/memory/search',
        '{"query":"q","where":{"$or":[{"__proto__":"v"},{"k":1}]}}',
        400,
        'invalid_filter',
      ],
      [
        'nested metadata',
        '/api/memory/store',
        { content: 'x', metadata: { a: { b: 1 } } },
        400,
        'validation_failed',
      ],
      [
        'metadata array value',
        '/api/memory/store',
        { content: 'x', metadata: { a: [1] } },
        400,
        'validation_failed',
      ],
      [
        'too many metadata keys',
        '/api/memory/store',
        { content: 'x', metadata: tooManyKeys },
        400,
        'validation_failed',
      ],
      ['unknown field', '/api/memory/store', { content: 'x', colour: 'red' }, 400, 'validation_failed'],
      ['empty batch', '/api/memory/store/batch', { memories: [] }, 400, 'validation_failed'],
      [
        'batch over 1,000',
        '/api/memory/store/batch',
        { memories: Array.from({ length: 1001 }, () => ({ content: 'x' })) },
        400,
        'validation_failed',
      ],
      ['n_results 0', '/api/memory/search', { query: 'q', n_results: 0 }, 400, 'validation_failed'],
      ['n_results negative', '/api/memory/search', { query: 'q', n_results: -3 }, 400, 'validation_failed'],
      [
        'n_results not an integer',
        '/api/memory/search',
        { query: 'q', n_results: 2.5 },
        400,
        'validation_failed',
      ],
      [
        'n_results a string',
        '/api/memory/search',
        { query: 'q', n_results: 'five' },
        400,
        'validation_failed',
      ],
      ['n_results too large', '/api/memory/search', { query: 'q', n_results: 101 }, 400, 'validation_failed'],
      ['empty query', '/api/memory/search', { query: '  ' }, 400, 'validation_failed'],
      [
        'unknown filter operator',
        '/api/memory/search',
        { query: 'q', where: { mood: { $regex: 'h.*' } } },
        400,
        'invalid_filter',
      ],
      [
        'unknown top-level operator',
        '/api/memory/search',
        { query: 'q', where: { $not: { mood: 'x' } } },
        400,
        'invalid_filter',
      ],
      [
        'range on a string field',
        '/api/memory/search',
        { query: 'q', where: { project: { $gt: 1 } } },
        400,
        'invalid_filter',
      ],
      [
        'bad metadata key in filter',
        '/api/memory/search',
        { query: 'q', where: { "a'b": 1 } },
        400,
        'invalid_filter',
      ],
    ])('%s', async (_name, route, body, status, code) => {
      const response = await stack.call('POST', route, body);
      expect(response.status).toBe(status);
      expect(response.body.error).toMatchObject({ code, message: expect.any(String) });
    });

    it('wrong content type → 415', async () => {
      const response = await fetch(`${stack.gatewayUrl}/api/memory/store`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'Wisdom is understanding what truly matters',
      });
      expect(response.status).toBe(415);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
        'unsupported_media_type',
      );
    });

    it('body over the size limit → 413', async () => {
      const memories = Array.from({ length: 1000 }, () => ({ content: 'y'.repeat(9_000) }));
      const response = await stack.call('POST', '/api/memory/store/batch', { memories });
      expect(response.status).toBe(413);
      expect(response.body.error).toMatchObject({
        code: 'payload_too_large',
        message: expect.stringMatching(/at most 5242880 bytes; send a large batch in smaller ones$/),
        details: { limit_bytes: 5 * 1024 * 1024, length_bytes: expect.any(Number) },
      });
      expect(response.body.error.details.length_bytes).toBeGreaterThan(9_000_000);
    });

    it.each([
      ['GET', '/api/memory/not-a-uuid'],
      ['DELETE', '/api/memory/not-a-uuid'],
    ])('non-UUID id on %s → 400', async (method, route) => {
      const response = await stack.call(method, route);
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('validation_failed');
    });

    it('a malformed %-escape in the path → 400, not 500', async () => {
      const response = await stack.call('GET', '/api/memory/%E0%A4%A');
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('bad_request');
    });

    it.each([
      ['GET', '/api/memory/store', 'POST'],
      ['GET', '/api/memory/search', 'POST'],
      ['GET', '/api/memory/migrate', 'POST'],
      ['DELETE', '/api/memory/stats', 'GET'],
      ['POST', '/api/memory/status', 'GET'],
      ['DELETE', '/api/memory/jobs/store-1', 'GET'],
      ['POST', '/api/memory/session/s-1', 'GET, DELETE'],
      ['PUT', '/api/memory/00000000-0000-4000-8000-000000000000', 'GET, DELETE'],
    ])('%s %s → 405 naming the methods it takes', async (method, route, allowed) => {
      const response = await stack.call(method, route);
      expect(response.status).toBe(405);
      expect(response.body.error.code).toBe('method_not_allowed');
      expect(response.headers.get('allow')).toBe(allowed);
    });

    it('unknown memory and job ids → 404', async () => {
      const memory = await stack.call('GET', '/api/memory/00000000-0000-4000-8000-000000000000');
      expect(memory.status).toBe(404);
      expect(memory.body.error.code).toBe('memory_not_found');
      const job = await stack.call('GET', '/api/memory/jobs/store-00000000-0000-4000-8000-000000000000');
      expect(job.status).toBe(404);
      expect(job.body.error.code).toBe('job_not_found');
    });
  });

  it('serves Bull Board, a valid OpenAPI document, docs and Prometheus metrics on every service', async () => {
    const board = await fetch(`${stack.gatewayUrl}/admin/queues`);
    expect(board.status).toBe(200);
    expect(await board.text()).toMatch(/<html/i);
    const document = (await stack.call('GET', '/api/openapi.json')).body;
    await expect(SwaggerParser.validate(structuredClone(document))).resolves.toBeDefined();
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(['/api/memory/store', '/api/memory/search']),
    );
    expect((await fetch(`${stack.gatewayUrl}/docs`)).status).toBe(200);
    const metrics = await (await fetch(`${stack.gatewayUrl}/metrics`)).text();
    expect(metrics).toMatch(/http_request_duration_seconds_bucket/);
    // Errors are filed under the route's full path, as its successes are (the bad-input tests ran).
    expect(metrics).toMatch(
      /http_request_duration_seconds_count\{[^}]*route="\/api\/memory\/store",status="400"/,
    );
    expect(metrics).not.toMatch(/route="\/store"/);
    const workerMetrics = await (await fetch(`http://127.0.0.1:${stack.ports.worker}/metrics`)).text();
    expect(workerMetrics).toMatch(/memory_jobs_processed_total\{[^}]*name="store-memory"[^}]*\} [1-9]/);
    expect(workerMetrics).toMatch(/embedding_batch_size_count\{[^}]*\} [1-9]/);
    const searchMetrics = await (await fetch(`http://127.0.0.1:${stack.ports.search}/metrics`)).text();
    expect(searchMetrics).toMatch(/search_duration_seconds_count\{[^}]*\} [1-9]/);
    expect((await fetch(`${stack.gatewayUrl}/readyz`)).status).toBe(200);
  });

  it('carries the request id into the worker logs', async () => {
    const requestId = `trace-${backend}-${Date.now()}`;
    const { body } = await store({ content: 'traced memory' }, '?wait=true', { 'x-request-id': requestId });
    expect(body.status).toBe('stored');
    expect(stack.services.worker.logs).toContain(`"requestId":"${requestId}"`);
    expect(stack.services.worker.logs).not.toContain('traced memory');
  });

  it('reports itself degraded and refuses searches with 503 while the search service is down', async () => {
    await stack.services.search.stop();
    try {
      const status = await stack.call('GET', '/api/memory/status');
      expect(status.body).toMatchObject({
        status: 'degraded',
        problems: ['the search service does not answer'],
        search_service: { reachable: false },
      });
      const search = await stack.call('POST', '/api/memory/search', { query: 'anything' });
      expect(search.status).toBe(503);
      expect(search.body.error.code).toBe('search_service_unavailable');
    } finally {
      await stack.services.search.start();
    }
    expect((await stack.call('GET', '/api/memory/status')).body).toMatchObject({
      status: 'ok',
      problems: [],
    });
  });

  it('deletes one memory of a batch still in the queue, and stores the others', async () => {
    await stack.services.worker.stop();
    let batch: { memory_ids: string[]; job_id: string };
    try {
      // Stores are still accepted, and the status says they wait.
      expect((await stack.call('GET', '/api/memory/status')).body).toMatchObject({
        status: 'degraded',
        problems: ['no embedding worker serves queue memory-ingest: stores wait in it'],
        workers: 0,
      });
      const { status, body } = await stack.call('POST', '/api/memory/store/batch', {
        memories: ['kept first', 'deleted from its batch', 'kept last'].map((content) => ({
          content,
          session_id: 'batch-race',
        })),
      });
      expect(status).toBe(202);
      batch = body;
      const deleted = await stack.call('DELETE', `/api/memory/${batch.memory_ids[1]}`);
      expect(deleted.status).toBe(200);
      // Deleted already: a second delete finds nothing.
      expect((await stack.call('DELETE', `/api/memory/${batch.memory_ids[1]}`)).status).toBe(404);
    } finally {
      await stack.services.worker.start();
    }
    const job = await waitForJob(stack, batch.job_id);
    expect((await stack.call('GET', '/api/memory/status')).body).toMatchObject({
      status: 'ok',
      problems: [],
    });
    expect(job.result.memories.map((m: { status: string }) => m.status)).toEqual([
      'created',
      'deleted',
      'created',
    ]);
    const listed = await stack.call('GET', '/api/memory/session/batch-race');
    expect(listed.body.memories.map((m: { content: string }) => m.content).sort()).toEqual([
      'kept first',
      'kept last',
    ]);
    // The worker forgets which batch held them once it has completed (a completed event, just after).
    const redis = new Redis(servers.redisUrl);
    try {
      const tombstones = new Tombstones(redis, stack.queuePrefix);
      const deadline = Date.now() + 10_000;
      while ((await tombstones.batchOf(batch.memory_ids[0]!)) !== null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(await tombstones.batchOf(batch.memory_ids[0]!)).toBeNull();
    } finally {
      await redis.quit();
    }
    // Once the batch has completed, its memories are deleted from the store as any other.
    expect((await stack.call('DELETE', `/api/memory/${batch.memory_ids[2]}`)).status).toBe(200);
    expect((await stack.call('GET', `/api/memory/${batch.memory_ids[2]}`)).status).toBe(404);
  });

  it('lets a delete win over a store job still in the queue', async () => {
    let queuedJob = '';
    const sessionJobs: string[] = [];
    await stack.services.worker.stop();
    try {
      const { status, body } = await store({ content: 'deleted before it was stored', session_id: 'race' });
      expect(status).toBe(202);
      queuedJob = body.job_id;
      const deleted = await stack.call('DELETE', `/api/memory/${body.memory_id}`);
      expect(deleted.status).toBe(200);
      // A session delete counts the session's memories still queued: a batch's and a single store's.
      const batch = await stack.call('POST', '/api/memory/store/batch', {
        memories: [
          { content: 'queued in a deleted session', session_id: 'race3' },
          { content: 'queued elsewhere', session_id: 'race4' },
          { content: 'queued in a deleted session too', session_id: 'race3' },
        ],
      });
      expect(batch.status).toBe(202);
      const alone = await store({ content: 'queued alone', session_id: 'race3' });
      expect(alone.status).toBe(202);
      sessionJobs.push(batch.body.job_id, alone.body.job_id);
      const session = await stack.call('DELETE', '/api/memory/session/race3');
      expect(session.body).toEqual({ session_id: 'race3', deleted: 3, queued: 3 });
    } finally {
      await stack.services.worker.start();
    }
    // The job stayed in the queue, and says what became of its memory.
    const dropped = await waitForJob(stack, queuedJob);
    expect(dropped.result.memories[0].status).toBe('deleted');
    // A memory of a deleted session, queued before the delete, must not appear either.
    const { body: queued } = await store({ content: 'queued then session deleted', session_id: 'race2' });
    await stack.call('DELETE', '/api/memory/session/race2');
    await waitForJob(stack, queued.job_id);
    const marker = await store({ content: 'after the race', session_id: 'race' }, '?wait=true');
    expect(marker.status).toBe(201);
    expect(
      (await stack.call('GET', '/api/memory/session/race')).body.memories.map(
        (m: { content: string }) => m.content,
      ),
    ).toEqual(['after the race']);
    expect((await stack.call('GET', '/api/memory/session/race2')).body.total).toBe(0);
    // Once their jobs have run: the other session's memory stored, the deleted session's counted no more
    // (the worker forgets them just after the jobs complete).
    for (const job of sessionJobs) expect((await waitForJob(stack, job)).state).toBe('completed');
    expect((await stack.call('GET', '/api/memory/session/race4')).body.total).toBe(1);
    expect((await stack.call('GET', '/api/memory/session/race3')).body.total).toBe(0);
    let again: unknown;
    for (let i = 0; i < 50; i += 1) {
      again = (await stack.call('DELETE', '/api/memory/session/race3')).body;
      if ((again as { queued: number }).queued === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(again).toEqual({ session_id: 'race3', deleted: 0, queued: 0 });
  });
});
