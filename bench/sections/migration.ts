import {
  ChromaCollectionSource,
  ChromaMigration,
  InMemoryMigrationCheckpoints,
  type MigrationResult,
} from 'memory-core';
import type { BenchContext } from '../lib/context';
import { BenchCollection, BenchSchema } from '../lib/dataset';
import { searchDataset } from '../lib/embedded-dataset';
import { servers } from '../lib/paths';
import { uniqueName } from '../lib/stack';
import { recordId } from '../lib/dataset';
import { median, nowMs } from '../lib/stats';

export interface MigrationRun {
  batchSize: number;
  /** Chroma alone: every page (documents, metadatas, embeddings) read with the chromadb client. */
  rawReadRate: number;
  /** Whether rows went into the table without the HNSW index (empty target), built at the end. */
  indexDeferred: boolean;
  /** Records per second of the migrating phase (read, map, write), index build and verification excluded. */
  migrateRate: number;
  indexMs: number;
  /** Records per second from the first read to a built index (verification excluded). */
  indexedRate: number;
  indexedRatio: number;
  /** Including counting and verification. */
  totalRate: number;
  ratio: number;
  verifyMs: number;
  written: number;
  copiedEmbeddings: number;
  reEmbedded: number;
  verified: boolean | null;
  engineRecordsPerSecond: number;
}

export interface MigrationResults {
  records: number;
  /** The engine's default batch size, whose runs the median summarises. */
  batchSize: number;
  runs: MigrationRun[];
  median: {
    rawReadRate: number;
    migrateRate: number;
    totalRate: number;
    ratio: number;
    indexMs?: number;
    indexedRate?: number;
    indexedRatio?: number;
  };
}

/**
 * The Chroma → PostgreSQL migration engine (the worker's, without re-embedding) on a collection in
 * our own layout, each run into a fresh schema, alternating with a raw read of the same collection.
 */
export async function runMigration(ctx: BenchContext): Promise<MigrationResults> {
  const { options, logger, progress } = ctx;
  const o = options.migration;
  // The search section's data set (real embeddings, cached): the same vectors the HNSW build sees there.
  const dataset = await searchDataset(ctx, o.records);
  const collection = await BenchCollection.create(uniqueName('bench-migrate'), logger);
  const runs: MigrationRun[] = [];
  try {
    progress(`migration: writing ${o.records} records to Chroma`);
    for (let i = 0; i < o.records; i += 5_000)
      await collection.add(dataset.records(i, Math.min(o.records, i + 5_000)));
    // The default batch size into an empty table (index deferred) every run; once, into a table that
    // already holds a memory (the index kept, rows inserted into the graph); other batch sizes once.
    const plan: { batchSize: number; keepIndex: boolean; run: number }[] = [];
    for (let r = 0; r < options.runs; r += 1)
      plan.push({ batchSize: o.batchSizes[0]!, keepIndex: false, run: r });
    plan.push({ batchSize: o.batchSizes[0]!, keepIndex: true, run: 0 });
    for (const b of o.batchSizes.slice(1)) plan.push({ batchSize: b, keepIndex: false, run: 0 });
    for (const { batchSize, keepIndex, run: r } of plan) {
      {
        progress(`migration: batch ${batchSize}, raw read, run ${r + 1}/${options.runs}`);
        let read = 0;
        const t0 = nowMs();
        for (let offset = 0; ; offset += batchSize) {
          const page = await collection.collection.get({
            limit: batchSize,
            offset,
            include: ['documents', 'metadatas', 'embeddings'],
          });
          read += page.ids.length;
          if (page.ids.length < batchSize) break;
        }
        const rawReadRate = (read / (nowMs() - t0)) * 1000;

        progress(`migration: batch ${batchSize}, engine, run ${r + 1}/${options.runs}`);
        const db = await BenchSchema.create(uniqueName('bench_migrate').toLowerCase(), logger);
        if (keepIndex)
          await db.insertDirect(
            dataset
              .records(o.records - 1, o.records)
              .map((x) => ({ ...x, id: recordId(10_000_000), user: 'other' })),
          );
        const target = db.store(logger, { poolSize: 4 });
        try {
          const engine = new ChromaMigration({
            source: new ChromaCollectionSource(servers.chromaUrl),
            target,
            checkpoints: new InMemoryMigrationCheckpoints(),
            logger,
            defaults: { collection: collection.name, userId: '1' },
          });
          let migratingAt = 0;
          let indexingAt = 0;
          let verifyingAt = 0;
          const start = nowMs();
          const result: MigrationResult = await engine.run(
            { migration_id: uniqueName('bench-mig'), collection: collection.name, batch_size: batchSize },
            {
              onProgress: (p) => {
                if (p.phase === 'migrating' && !migratingAt) migratingAt = nowMs();
                if (p.phase === 'indexing' && !indexingAt) indexingAt = nowMs();
                if (p.phase === 'verifying' && !verifyingAt) verifyingAt = nowMs();
              },
            },
          );
          const end = nowMs();
          verifyingAt ||= end;
          indexingAt ||= verifyingAt;
          const stored = await db.count();
          const expected = o.records + (keepIndex ? 1 : 0);
          if (stored !== expected) throw new Error(`migration stored ${stored} of ${expected} records`);
          const migrateRate = (result.stats.read / (indexingAt - migratingAt)) * 1000;
          const indexedRate = (result.stats.read / (verifyingAt - migratingAt)) * 1000;
          runs.push({
            batchSize,
            rawReadRate,
            indexDeferred: result.stats.index_deferred ?? false,
            migrateRate,
            indexMs: verifyingAt - indexingAt,
            indexedRate,
            indexedRatio: indexedRate / rawReadRate,
            totalRate: (result.stats.read / (end - start)) * 1000,
            ratio: migrateRate / rawReadRate,
            verifyMs: end - verifyingAt,
            written: result.stats.written,
            copiedEmbeddings: result.stats.copied_embeddings,
            reEmbedded: result.stats.re_embedded,
            verified: result.verification?.verified ?? null,
            engineRecordsPerSecond: result.stats.records_per_second,
          });
          progress(`migration: ${migrateRate.toFixed(0)}/s vs raw read ${rawReadRate.toFixed(0)}/s`);
        } finally {
          await target.close();
          await db.drop();
        }
      }
    }
  } finally {
    await collection.drop();
  }
  const main = runs.filter((r) => r.batchSize === o.batchSizes[0] && r.indexDeferred);
  return {
    records: o.records,
    batchSize: o.batchSizes[0]!,
    runs,
    median: {
      rawReadRate: median(main.map((r) => r.rawReadRate)),
      migrateRate: median(main.map((r) => r.migrateRate)),
      totalRate: median(main.map((r) => r.totalRate)),
      ratio: median(main.map((r) => r.ratio)),
      indexMs: median(main.map((r) => r.indexMs)),
      indexedRate: median(main.map((r) => r.indexedRate)),
      indexedRatio: median(main.map((r) => r.indexedRatio)),
    },
  };
}
