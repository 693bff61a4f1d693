import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { contentHash, PgvectorMemoryStore, TransformersEmbedder } from 'memory-core';
import { textsFrom } from '../lib/corpus';
import { CorpusOffsets, type BenchContext } from '../lib/context';
import { benchModel, servers } from '../lib/paths';
import { createBenchStack, uniqueName, type Rss } from '../lib/stack';
import { nowMs, summarize, type LatencySummary } from '../lib/stats';

export interface SingleStoreResults {
  requests: number;
  /** `POST /api/memory/store?wait=true`, one at a time: 201 once the row is written. */
  e2e: LatencySummary;
  /** In this process: one embed of the same text plus one adapter upsert, one at a time. */
  baseline: LatencySummary;
  embedOnly: LatencySummary;
  insertOnly: LatencySummary;
  ratioP50: number;
  ratioP99: number;
  statuses: Record<string, number>;
  rss: Record<string, Rss | undefined>;
}

/** Requests alternate with baseline operations, so both see the same machine at the same time. */
export async function runSingleStore(ctx: BenchContext): Promise<SingleStoreResults> {
  const { options, corpus, progress, logger } = ctx;
  const n = options.single.requests;
  const texts = textsFrom(corpus, n * 2, CorpusOffsets.single);
  const schema = uniqueName('bench_single').toLowerCase();
  const pool = new Pool({ connectionString: servers.databaseUrl, max: 1 });
  await pool.query(`CREATE SCHEMA ${schema}`);
  const stack = createBenchStack({ backend: 'postgres', schema });
  const embedder = await TransformersEmbedder.load({ model: benchModel, dtype: 'q8', batchSize: 64 });
  const store = new PgvectorMemoryStore(
    { connectionString: servers.databaseUrl, schema, poolSize: 2 },
    logger,
  );
  const e2e: number[] = [];
  const baseline: number[] = [];
  const embedOnly: number[] = [];
  const insertOnly: number[] = [];
  const statuses: Record<string, number> = {};
  try {
    progress('single store: starting the PostgreSQL stack');
    await stack.start();
    await store.initialize();
    for (let i = -5; i < n; i += 1) {
      const warmUp = i < 0;
      const k = Math.max(0, i);
      const t0 = nowMs();
      const response = await fetch(`${stack.gatewayUrl}/api/memory/store?wait=true`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          content: `${texts[k]!}${warmUp ? ` (warm-up ${i})` : ''}`,
          session_id: 'single',
        }),
      });
      await response.text();
      const t1 = nowMs();
      const text = `${texts[n + k]!}${warmUp ? ` (warm-up ${i})` : ''}`;
      const [vector] = await embedder.embed([text]);
      const t2 = nowMs();
      await store.upsert([
        {
          id: randomUUID(),
          user_id: '1',
          session_id: 'baseline',
          session_type: null,
          project: null,
          content: text,
          content_type: 'note',
          metadata: {},
          content_hash: contentHash(text),
          embedding: vector!,
          embedding_model: embedder.info.model,
          created_at: new Date().toISOString(),
          updated_at: new Date().toISOString(),
        },
      ]);
      const t3 = nowMs();
      if (warmUp) continue;
      statuses[response.status] = (statuses[response.status] ?? 0) + 1;
      e2e.push(t1 - t0);
      baseline.push(t3 - t1);
      embedOnly.push(t2 - t1);
      insertOnly.push(t3 - t2);
    }
    const rss = {
      'api-gateway': stack.services.gateway.rss(),
      'embedding-worker': stack.services.worker.rss(),
    };
    const e = summarize(e2e);
    const b = summarize(baseline);
    return {
      requests: n,
      e2e: e,
      baseline: b,
      embedOnly: summarize(embedOnly),
      insertOnly: summarize(insertOnly),
      ratioP50: e.p50 / b.p50,
      ratioP99: e.p99 / b.p99,
      statuses,
      rss,
    };
  } finally {
    await stack.stop();
    await store.close();
    await embedder.close();
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  }
}
