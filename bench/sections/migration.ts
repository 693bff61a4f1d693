import {
  ChromaCollectionSource,
  ChromaMigration,
  InMemoryMigrationCheckpoints,
  TransformersEmbedder,
  type MigrationResult,
} from 'memory-core';
import { textsFrom } from '../lib/corpus';
import { CorpusOffsets, type BenchContext } from '../lib/context';
import { BenchCollection, BenchSchema, SyntheticDataset } from '../lib/dataset';
import { benchModel, servers } from '../lib/paths';
import { uniqueName } from '../lib/stack';
import { median, nowMs } from '../lib/stats';

export interface MigrationRun {
  batchSize: number;
  /** Chroma alone: every page (documents, metadatas, embeddings) read with the chromadb client. */
  rawReadRate: number;
  /** Records per second of the migrating phase (read, map, write), verification excluded. */
  migrateRate: number;
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
  median: { rawReadRate: number; migrateRate: number; totalRate: number; ratio: number };
}

/**
 * The Chroma → PostgreSQL migration engine (the worker's, without re-embedding) on a collection in
 * our own layout, each run into a fresh schema, alternating with a raw read of the same collection.
 */
export async function runMigration(ctx: BenchContext): Promise<MigrationResults> {
  const { options, corpus, logger, progress } = ctx;
  const o = options.migration;
  const embedder = await TransformersEmbedder.load({ model: benchModel, dtype: 'q8', batchSize: 64 });
  const baseTexts = textsFrom(corpus, 300, CorpusOffsets.searchBase);
  const dataset = new SyntheticDataset(baseTexts, await embedder.embed(baseTexts));
  await embedder.close();
  const collection = await BenchCollection.create(uniqueName('bench-migrate'), logger);
  const runs: MigrationRun[] = [];
  try {
    progress(`migration: writing ${o.records} records to Chroma`);
    for (let i = 0; i < o.records; i += 5_000)
      await collection.add(dataset.records(i, Math.min(o.records, i + 5_000)));
    for (let r = 0; r < options.runs; r += 1) {
      for (const batchSize of o.batchSizes) {
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
          let verifyingAt = 0;
          const start = nowMs();
          const result: MigrationResult = await engine.run(
            { migration_id: uniqueName('bench-mig'), collection: collection.name, batch_size: batchSize },
            {
              onProgress: (p) => {
                if (p.phase === 'migrating' && !migratingAt) migratingAt = nowMs();
                if (p.phase === 'verifying' && !verifyingAt) verifyingAt = nowMs();
              },
            },
          );
          const end = nowMs();
          verifyingAt ||= end;
          const stored = await db.count();
          if (stored !== o.records) throw new Error(`migration stored ${stored} of ${o.records} records`);
          const migrateRate = (result.stats.read / (verifyingAt - migratingAt)) * 1000;
          runs.push({
            batchSize,
            rawReadRate,
            migrateRate,
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
  const main = runs.filter((r) => r.batchSize === o.batchSizes[0]);
  return {
    records: o.records,
    batchSize: o.batchSizes[0]!,
    runs,
    median: {
      rawReadRate: median(main.map((r) => r.rawReadRate)),
      migrateRate: median(main.map((r) => r.migrateRate)),
      totalRate: median(main.map((r) => r.totalRate)),
      ratio: median(main.map((r) => r.ratio)),
    },
  };
}
