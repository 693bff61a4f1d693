import type { MemoryRecord, PgvectorMemoryStore } from 'memory-core';
import type { BenchContext } from '../lib/context';
import { cpuSince, cpuSnapshot } from '../lib/cpu';
import { asMemoryRecord, BenchSchema, shippedGraph, type GraphSetting } from '../lib/dataset';
import { searchDataset, searchQueries, type EmbeddedDataset } from '../lib/embedded-dataset';
import { createBenchStack, DEFAULT_POOL_SIZE, postJson, uniqueName, type BenchStack } from '../lib/stack';
import { median, runConcurrent, summarize, type LatencySummary } from '../lib/stats';
import {
  DEFAULT_EF_SEARCH,
  DEFAULT_OVERFETCH,
  exactTruth,
  GRAPH_ALWAYS,
  meanRecall,
  measure,
  rawPgSearcher,
  storeSearcher,
  USER,
  type Query,
  type SearchCase,
} from './search';

/** Rows per write, as the worker writes a micro-batch. */
export const WRITE_BATCH = 64;
const CASES = ['none', 'user'] as const satisfies readonly SearchCase[];

export interface GraphRow {
  /** null: the table without an HNSW index (what a write costs without graph maintenance). */
  graph: GraphSetting | null;
  build?: {
    ms: number;
    indexMiB: number;
    /** `pg_class.reloptions` of the index as PostgreSQL holds it (e.g. `m=16`). */
    options: string[];
  };
  /** Forced HNSW at the services' ef_search and overfetch: recall@10 against exact, one query at a time. */
  search?: Record<(typeof CASES)[number], { recall: number; latency: LatencySummary }>;
  /**
   * The adapter's upsert of new records, `WRITE_BATCH` per call, into the table and its graph; CPU
   * time from /proc, medians over the runs. The first batch of each run (connections) is not counted.
   */
  write: {
    rows: number;
    pgCpuMsPerRow: number;
    adapterCpuMsPerRow: number;
    wallMsPerRow: number;
    runs: number;
  };
}

/** Search services on the store's graph, one per DATABASE_POOL_SIZE, the same load on each. */
export interface PoolResults {
  inFlight: number;
  /** Rounds of every query per service, alternating which service goes first. */
  rounds: number;
  defaultSize: number;
  rows: {
    poolSize: number;
    /** Requests answered per second, each round. */
    qps: number[];
    /** Each request's time under the load, every round pooled. */
    latency: LatencySummary;
  }[];
}

export interface GraphResults {
  size: number;
  queries: number;
  efSearch: number;
  overfetch: number;
  batch: number;
  rows: GraphRow[];
  pools?: PoolResults;
}

/**
 * What the HNSW graph's settings cost on each write and give back in recall: the search data set at
 * one size, the graph built with each (m, ef_construction), searched against exact ground truth, then
 * written into as the worker writes; last, the same writes with no graph at all.
 */
export async function runGraph(ctx: BenchContext): Promise<GraphResults> {
  const { options, logger, progress } = ctx;
  const o = options.graph;
  const runs = options.runs;
  const dataset = await searchDataset(ctx, o.size + o.writeRows * runs);
  const queries: Query[] = (await searchQueries(ctx)).map((q) => ({ ...q, session: '' }));

  const results: GraphResults = {
    size: o.size,
    queries: queries.length,
    efSearch: DEFAULT_EF_SEARCH,
    overfetch: DEFAULT_OVERFETCH,
    batch: WRITE_BATCH,
    rows: [],
  };
  const db = await BenchSchema.create(uniqueName('bench_graph').toLowerCase(), logger);
  try {
    progress(`graph: loading ${o.size} memories`);
    await db.dropHnsw();
    await db.load(dataset, 0, o.size, options.search.loadChunk);
    const truth = await exactTruth(ctx, db, queries, CASES, 'graph');

    for (const graph of [shippedGraph(), ...o.settings, null]) {
      const name = graph ? `m=${graph.m}, ef_construction=${graph.efConstruction}` : 'no graph';
      const row: Partial<GraphRow> = { graph };
      if (graph) {
        progress(`graph: building ${name} at ${o.size}`);
        const built = await db.buildHnsw(options.search.hnsw, options.search.hnswBuildTimeoutMs, graph);
        if (!built.completed) throw new Error(`HNSW build (${name}) did not finish in time`);
        row.build = { ms: built.ms, indexMiB: built.indexMiB, options: await db.hnswOptions() };
        const hnsw = db.store(logger, { efSearch: DEFAULT_EF_SEARCH, ...GRAPH_ALWAYS });
        try {
          const search: Partial<GraphRow['search']> = {};
          for (const c of CASES) {
            progress(`graph: ${name}, search, filter ${c}`);
            const searcher =
              c === 'none' ? rawPgSearcher(db, 'hnsw', DEFAULT_EF_SEARCH) : storeSearcher(hnsw);
            const m = await measure(searcher, queries, c, options.search.concurrency);
            search[c] = { recall: meanRecall(m.ids, truth.get(c)!), latency: m.latency };
          }
          row.search = search as GraphRow['search'];
        } finally {
          await hnsw.close();
        }
        if (results.rows.length === 0) results.pools = await measurePools(ctx, db, queries);
      }
      progress(`graph: ${name}, writes`);
      row.write = await measureWrites(db, dataset, o.size, o.writeRows, runs, ctx);
      results.rows.push(row as GraphRow);
      ctx.saveProgress?.('graph', results);
      // The next setting starts from the same table: the graph and the written rows go.
      await db.dropHnsw();
      await db.pool.query(`DELETE FROM ${db.schema}.memories WHERE id = ANY($1::uuid[])`, [
        dataset.records(o.size, o.size + o.writeRows * runs).map((r) => r.id),
      ]);
      await db.pool.query(`VACUUM ${db.schema}.memories`);
      const left = await db.count();
      if (left !== o.size) throw new Error(`graph: ${left} memories left after ${name}, expected ${o.size}`);
    }
  } finally {
    await db.drop();
  }
  return results;
}

/**
 * Search services on the table as it is, one per pool size, each sent the queries with `inFlight`
 * requests at once (the user filter, each query embedded): rounds alternate which service goes first.
 */
async function measurePools(ctx: BenchContext, db: BenchSchema, queries: Query[]): Promise<PoolResults> {
  const { options, progress } = ctx;
  const { sizes, inFlight, rounds } = options.graph.pools;
  const stacks = sizes.map((size) =>
    createBenchStack({
      backend: 'postgres',
      schema: db.schema,
      env: { QUERY_CACHE_SIZE: '0', DATABASE_POOL_SIZE: String(size) },
    }),
  );
  const search = (stack: BenchStack, q: Query) =>
    postJson(
      `${stack.searchUrl}/api/memory/search`,
      { query: q.text, n_results: 10 },
      { 'x-user-id': USER },
      [200],
    );
  const load = (stack: BenchStack) =>
    runConcurrent(queries.length, inFlight, (k) => search(stack, queries[k]!));
  try {
    await Promise.all(stacks.map((s) => s.start(['search'])));
    // One pass of the load on each before any is measured: connections, caches, the graph's pages.
    for (const stack of stacks) await load(stack);
    const qps = sizes.map((): number[] => []);
    const latencies = sizes.map((): number[] => []);
    for (let r = 0; r < rounds; r += 1) {
      const order = sizes.map((_, i) => i);
      if (r % 2 === 1) order.reverse();
      for (const i of order) {
        progress(`graph: DATABASE_POOL_SIZE ${sizes[i]}, ${inFlight} in flight, round ${r + 1}/${rounds}`);
        const run = await load(stacks[i]!);
        qps[i]!.push(run.qps);
        latencies[i]!.push(...run.latencies);
      }
    }
    return {
      inFlight,
      rounds,
      defaultSize: DEFAULT_POOL_SIZE,
      rows: sizes.map((poolSize, i) => ({ poolSize, qps: qps[i]!, latency: summarize(latencies[i]!) })),
    };
  } finally {
    await Promise.all(stacks.map((s) => s.stop()));
  }
}

/** `runs` times: `writeRows` new records through the adapter, `WRITE_BATCH` per upsert. */
async function measureWrites(
  db: BenchSchema,
  dataset: EmbeddedDataset,
  from: number,
  writeRows: number,
  runs: number,
  ctx: BenchContext,
): Promise<GraphRow['write']> {
  const store = db.store(ctx.logger, { poolSize: 2 });
  const perRun: WriteCpu[] = [];
  try {
    for (let r = 0; r < runs; r += 1) {
      const start = from + r * writeRows;
      const records = dataset.records(start, start + writeRows).map((x) => asMemoryRecord(x, 'bench'));
      perRun.push(await batchedWriteCpu(store, records, WRITE_BATCH));
    }
  } finally {
    await store.close();
  }
  return {
    rows: writeRows - WRITE_BATCH,
    pgCpuMsPerRow: median(perRun.map((p) => p.pg)),
    adapterCpuMsPerRow: median(perRun.map((p) => p.adapter)),
    wallMsPerRow: median(perRun.map((p) => p.wall)),
    runs,
  };
}

/** CPU per memory written (PostgreSQL's, the bench's own) and wall time, from /proc. */
export interface WriteCpu {
  pg: number;
  adapter: number;
  wall: number;
}

/**
 * `records` through the adapter, `batch` per upsert, as the worker writes micro-batches; per memory
 * written. The first batch (connections, prepared statements) is written but not counted.
 */
export async function batchedWriteCpu(
  store: PgvectorMemoryStore,
  records: MemoryRecord[],
  batch: number,
): Promise<WriteCpu> {
  await store.upsert(records.slice(0, batch));
  const before = cpuSnapshot({});
  for (let i = batch; i < records.length; i += batch) await store.upsert(records.slice(i, i + batch));
  const after = cpuSnapshot({});
  if (!before || !after) throw new Error('CPU time needs /proc');
  const spent = cpuSince(before, after);
  const counted = records.length - batch;
  return { pg: spent.ms.postgres / counted, adapter: spent.ms.bench / counted, wall: spent.wallMs / counted };
}
