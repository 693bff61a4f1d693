import { ChromaClient } from 'chromadb';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { TransformersEmbedder } from 'memory-core';
import { createTestSchema, servers, testModel, uniqueName } from '../setup/servers';

/** The real servers the service runs on, each exercised once the way the service uses it. */
describe('local servers (real PostgreSQL+pgvector, Redis, Chroma, transformers.js)', () => {
  it('PostgreSQL answers cosine queries through an HNSW index', async () => {
    const { schema, drop } = await createTestSchema('found');
    const client = new Client({ connectionString: servers.databaseUrl });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${schema}, public`);
      await client.query('CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))');
      await client.query('CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)');
      await client.query('INSERT INTO items VALUES (1, $1), (2, $2), (3, $3)', [
        '[1,0,0]',
        '[0.9,0.1,0]',
        '[0,0,1]',
      ]);
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const plan = await client.query(
        `EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[1,0,0]' LIMIT 2`,
      );
      const { rows } = await client.query(
        `SELECT id, 1 - (embedding <=> '[1,0,0]') AS similarity FROM items ORDER BY embedding <=> '[1,0,0]' LIMIT 2`,
      );
      await client.query('COMMIT');
      expect(plan.rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n')).toMatch(
        /items_embedding_idx/,
      );
      expect(rows.map((r: { id: number }) => r.id)).toEqual([1, 2]);
      expect(Number(rows[0].similarity)).toBeCloseTo(1, 6);
    } finally {
      await client.end();
      await drop();
    }
  });

  it('Redis carries a BullMQ job round trip and has AOF persistence on', async () => {
    const prefix = `{${uniqueName('found')}}`;
    const connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    const queue = new Queue('round-trip', { connection, prefix });
    const [eventsConnection, workerConnection] = [connection.duplicate(), connection.duplicate()];
    const events = new QueueEvents('round-trip', { connection: eventsConnection, prefix });
    const worker = new Worker('round-trip', async (job) => ({ doubled: (job.data as { n: number }).n * 2 }), {
      connection: workerConnection,
      prefix,
    });
    try {
      await events.waitUntilReady();
      const job = await queue.add('double', { n: 21 });
      await expect(job.waitUntilFinished(events, 10_000)).resolves.toEqual({ doubled: 42 });
      expect(await connection.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    } finally {
      await worker.close();
      await events.close();
      await queue.obliterate({ force: true });
      await queue.close();
      await Promise.all([connection, eventsConnection, workerConnection].map((c) => c.quit()));
    }
  });

  it('Chroma stores a cosine collection with explicit 384-d embeddings', async () => {
    const client = new ChromaClient({
      host: new URL(servers.chromaUrl).hostname,
      port: Number(new URL(servers.chromaUrl).port),
    });
    const name = uniqueName('found');
    const collection = await client.createCollection({
      name,
      embeddingFunction: null,
      configuration: { hnsw: { space: 'cosine' } },
    });
    try {
      const a = Array.from({ length: 384 }, (_, i) => (i === 0 ? 1 : 0));
      const b = Array.from({ length: 384 }, (_, i) => (i === 1 ? 1 : 0));
      await collection.add({ ids: ['a', 'b'], embeddings: [a, b], documents: ['first', 'second'] });
      const result = await collection.query({
        queryEmbeddings: [a],
        nResults: 2,
        include: ['distances', 'embeddings'],
      });
      expect(result.ids[0]).toEqual(['a', 'b']);
      expect(result.distances[0]![0]).toBeCloseTo(0, 6);
      expect(result.distances[0]![1]).toBeCloseTo(1, 6);
      expect(result.embeddings[0]![0]).toHaveLength(384);
    } finally {
      await client.deleteCollection({ name });
    }
  });

  it('transformers.js runs the stand-in MiniLM and returns 384-d unit vectors', async () => {
    const embedder = await TransformersEmbedder.load({
      model: testModel.model,
      dtype: testModel.dtype,
      batchSize: 16,
    });
    try {
      const vectors = await embedder.embed(['Wisdom is understanding what truly matters', 'What is wisdom?']);
      for (const v of vectors) {
        expect(v).toHaveLength(384);
        expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      }
    } finally {
      await embedder.close();
    }
  });
});
