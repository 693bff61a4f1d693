import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { contentHash, PgvectorMemoryStore } from 'memory-core';
import { textsFrom } from '../lib/corpus';
import { CorpusOffsets, type BenchContext } from '../lib/context';
import { servers } from '../lib/paths';
import { createBenchStack, post, uniqueName, type Rss } from '../lib/stack';
import { nowMs, summarize, type LatencySummary } from '../lib/stats';
import { openWorkerEmbedder } from '../lib/worker-embedder';

export interface SingleStorePass {
  /** Worker settings of this pass. */
  worker: string;
  requests: number;
  /** `POST /api/memory/store?wait=true`, one at a time: 201 once the row is written. */
  e2e: LatencySummary;
  /** In this process: one embed of another text plus one adapter upsert, one at a time. */
  baseline: LatencySummary;
  embedOnly: LatencySummary;
  insertOnly: LatencySummary;
  ratioP50: number;
  ratioP99: number;
  statuses: Record<string, number>;
}

export interface SingleStoreResults extends SingleStorePass {
  /** The same with other worker settings (MICRO_BATCH_WAIT_MS=0). */
  others: SingleStorePass[];
  rss: Record<string, Rss | undefined>;
}

const PASSES: { worker: string; env: NodeJS.ProcessEnv }[] = [
  { worker: 'defaults (MICRO_BATCH_WAIT_MS=5)', env: {} },
  { worker: 'MICRO_BATCH_WAIT_MS=0', env: { MICRO_BATCH_WAIT_MS: '0' } },
];

/** Requests alternate with baseline operations, so both see the same machine at the same time. */
export async function runSingleStore(ctx: BenchContext): Promise<SingleStoreResults> {
  const { options, corpus, progress, logger } = ctx;
  const n = options.single.requests;
  const texts = textsFrom(corpus, n * 2 * PASSES.length, CorpusOffsets.single);
  const schema = uniqueName('bench_single').toLowerCase();
  const pool = new Pool({ connectionString: servers.databaseUrl, max: 1 });
  await pool.query(`CREATE SCHEMA ${schema}`);
  const stack = createBenchStack({ backend: 'postgres', schema });
  // The embedder as the worker opens it with its defaults (model threads, spinning off).
  const embedder = await openWorkerEmbedder();
  const store = new PgvectorMemoryStore(
    { connectionString: servers.databaseUrl, schema, poolSize: 2 },
    logger,
  );
  const passes: SingleStorePass[] = [];
  let rss: Record<string, Rss | undefined> = {};
  try {
    progress('single store: starting the PostgreSQL stack');
    await stack.start();
    await store.initialize();
    for (const [p, pass] of PASSES.entries()) {
      if (p > 0) await stack.restartWorker(pass.env);
      progress(`single store: worker ${pass.worker}`);
      const e2e: number[] = [];
      const baseline: number[] = [];
      const embedOnly: number[] = [];
      const insertOnly: number[] = [];
      const statuses: Record<string, number> = {};
      for (let i = -5; i < n; i += 1) {
        const warmUp = i < 0;
        const k = p * 2 * n + Math.max(0, i);
        const suffix = warmUp ? ` (warm-up ${p}.${i})` : '';
        const t0 = nowMs();
        const response = await post(`${stack.gatewayUrl}/api/memory/store?wait=true`, {
          content: `${texts[k]!}${suffix}`,
          session_id: 'single',
        });
        const t1 = nowMs();
        const text = `${texts[n + k]!}${suffix}`;
        const [vector] = await embedder.embed([text]);
        const t2 = nowMs();
        const now = new Date().toISOString();
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
            created_at: now,
            updated_at: now,
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
      const e = summarize(e2e);
      const b = summarize(baseline);
      passes.push({
        worker: pass.worker,
        requests: n,
        e2e: e,
        baseline: b,
        embedOnly: summarize(embedOnly),
        insertOnly: summarize(insertOnly),
        ratioP50: e.p50 / b.p50,
        ratioP99: e.p99 / b.p99,
        statuses,
      });
      if (p === 0) {
        rss = {
          'api-gateway': stack.services.gateway.rss(),
          'embedding-worker': stack.services.worker.rss(),
        };
      }
    }
    return { ...passes[0]!, others: passes.slice(1), rss };
  } finally {
    await stack.stop();
    await store.close();
    await embedder.close();
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  }
}
