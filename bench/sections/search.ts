import {
  coreEnvShape,
  DEFAULT_EXACT_SCAN_THRESHOLD,
  PGVECTOR_HNSW_INDEX,
  toVectorSql,
  type MemoryFilter,
  type MemoryStore,
} from 'memory-core';
import type { BenchContext, BenchOptions } from '../lib/context';
import { asMemoryRecord, BenchCollection, BenchSchema, sessionOf } from '../lib/dataset';
import { searchDataset, searchQueries, type EmbeddedDataset } from '../lib/embedded-dataset';
import { benchModel } from '../lib/paths';
import {
  clientOverhead,
  createBenchStack,
  parseServerTiming,
  postJsonWithHeaders,
  uniqueName,
  type BenchStack,
  type ClientOverhead,
  type Rss,
} from '../lib/stack';
import {
  median,
  medianOf,
  nowMs,
  percentile,
  runConcurrent,
  summarize,
  type LatencySummary,
} from '../lib/stats';

export type SearchCase = 'none' | 'user' | 'user+session';
export type Engine = 'pgvector adapter (auto)' | 'pgvector HNSW' | 'pgvector exact' | 'Chroma';

export interface EngineResult {
  engine: string;
  case: SearchCase;
  latency: LatencySummary;
  qps: number;
  /** Mean recall@10 against exact search on the same vectors and filter. */
  recall: number | null;
  queries: number;
  runs: number;
  /** Through a search service: the share of its searches answered from its query cache (metrics). */
  cachedShare?: number;
  /** Through a search service: where each search's time went (its Server-Timing header). */
  stages?: ServiceStages;
}

/**
 * The search service's stages of the sequential queries, all runs pooled: embedding the query, the
 * store's search, and the rest of the client's wait (HTTP, Express, JSON, scheduling).
 */
export interface ServiceStages {
  embed: LatencySummary;
  store: LatencySummary;
  rest: LatencySummary;
  /** The mean of each stage over the slowest 1% of the searches (those at or above p99). */
  slowest: { n: number; total: number; embed: number; store: number; rest: number };
}

export interface StageSample {
  total: number;
  embed: number;
  store: number;
}

export function serviceStages(samples: StageSample[]): ServiceStages {
  const rest = samples.map((x) => x.total - x.embed - x.store);
  const cut = percentile(
    samples.map((x) => x.total),
    99,
  );
  const slow = samples.map((x, i) => ({ ...x, rest: rest[i]! })).filter((x) => x.total >= cut);
  const mean = (k: 'total' | 'embed' | 'store' | 'rest') =>
    slow.reduce((a, x) => a + x[k], 0) / (slow.length || 1);
  return {
    embed: summarize(samples.map((x) => x.embed)),
    store: summarize(samples.map((x) => x.store)),
    rest: summarize(rest),
    slowest: {
      n: slow.length,
      total: mean('total'),
      embed: mean('embed'),
      store: mean('store'),
      rest: mean('rest'),
    },
  };
}

export interface SizeResult {
  size: number;
  /** Memories in the filtered scopes at this size. */
  scope: { user: number; session: number };
  load: {
    pgMs: number;
    pgRowsPerS: number;
    /** Whether the PostgreSQL load went into a table with the HNSW index in place. */
    pgWithIndex?: boolean;
    /** VACUUM (ANALYZE) after the load, before the index is built. */
    vacuumMs?: number;
    chromaMs?: number;
    chromaRowsPerS?: number;
    chromaCount?: number;
  };
  pgCount: number;
  hnsw: { ms: number; indexMiB: number; tableMiB: number; completed: boolean; tuplesDone?: number };
  store: EngineResult[];
  service: EngineResult[];
  efSweep: { efSearch: number; case: SearchCase; latency: LatencySummary; recall: number }[];
  overfetchSweep?: { overfetch: number; case: SearchCase; latency: LatencySummary; recall: number }[];
  /** Users' own graphs, built after the shared graph was measured (the largest size only). */
  ownGraphs?: {
    minMemories: number;
    /** Graphs built, and the whole maintenance run (counting, then one concurrent build after another). */
    graphs: number;
    ms: number;
    /** Median build of one graph. */
    graphMs: number;
    indexMiB: number;
  };
  /** HNSW_TENANT_EF_SEARCH in the user's own graph, forced HNSW, user filter, one run each. */
  tenantEfSweep?: { efSearch: number; case: SearchCase; latency: LatencySummary; recall: number }[];
  rss: { pgSearchService?: Rss; chromaSearchService?: Rss };
}

export interface WritePathResult {
  path: string;
  rows: number;
  ms: number;
  rowsPerS: number;
}

export interface SearchResults {
  /** hnsw.ef_search and overfetch of the adapter rows (the services' defaults). */
  efSearch: number;
  /** hnsw.ef_search in a user's own graph (the services' HNSW_TENANT_EF_SEARCH default). */
  tenantEfSearch?: number;
  overfetch?: number;
  /** The largest scope the adapter rows scan exactly (the services' default in the run). */
  exactScanThreshold?: number;
  /** The index as the store defines it. */
  index?: string;
  dataset: {
    baseTexts: number;
    queries: number;
    layout: EmbeddedDataset['layout'];
    model: string;
    /** 'embedded': every vector is the model's embedding of the record's own text. */
    kind?: 'embedded' | 'mixed';
    meanChars?: number;
    embedSeconds?: number;
  };
  writePaths: WritePathResult[];
  sizes: SizeResult[];
  skipped: string[];
  /** What the bench's HTTP client, and fetch, add to each request (the service rows use the former). */
  client?: ClientOverhead;
}

const K = 10;
/** The services' HNSW_EF_SEARCH default: the store level runs as the search service does. */
export const DEFAULT_EF_SEARCH = coreEnvShape.HNSW_EF_SEARCH.parse(undefined);
export const DEFAULT_OVERFETCH = coreEnvShape.HNSW_OVERFETCH.parse(undefined);
export const USER = 'bench-u3';
/** Store options under which the adapter scans every search exactly: a threshold no scope reaches. */
export const EXACT_ALWAYS = { exactScanThreshold: 1_000_000_000 } as const;
/** Store options under which the adapter searches the HNSW index, whatever the scope. */
export const GRAPH_ALWAYS = { exactScanThreshold: 0, sparseExactScan: false } as const;

export type Query = { vector: Float32Array; text: string; session: string };
export type Searcher = (q: Query, c: SearchCase) => Promise<string[]>;

function recallOf(found: string[], truth: string[]): number {
  if (truth.length === 0) return 1;
  const wanted = new Set(truth);
  return found.filter((id) => wanted.has(id)).length / truth.length;
}

function filterFor(q: Query, c: SearchCase, user = USER): MemoryFilter {
  if (c === 'user+session') {
    return { user_id: user, where: { field: 'session_id', op: '$eq', value: q.session } };
  }
  return { user_id: user };
}

/** The store's searches, scoped to `user` (and the query's session for 'user+session'). */
export function storeSearcher(store: MemoryStore, user = USER): Searcher {
  return async (q, c) => (await store.search(q.vector, K, filterFor(q, c, user))).map((h) => h.id);
}

/**
 * No filter at all: straight SQL, as the adapter would run it without its user scope (HNSW: the
 * half-precision index gives K × overfetch candidates, re-ranked by exact distance).
 */
export function rawPgSearcher(
  db: BenchSchema,
  mode: 'hnsw' | 'exact',
  efSearch: number,
  overfetch = DEFAULT_OVERFETCH,
): Searcher {
  const s = db.schema;
  return async (q) => {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN READ ONLY');
      await client.query(`SELECT set_config('hnsw.ef_search', $1, true)`, [String(efSearch)]);
      const sql =
        mode === 'exact'
          ? `SELECT m.id, m.content, m.embedding <=> $1::vector AS distance FROM ${s}.memories m
             ORDER BY (m.embedding <=> $1::vector) + 0 LIMIT ${K}`
          : `WITH c AS MATERIALIZED (
               SELECT m.id, m.embedding <=> $1::vector AS distance FROM ${s}.memories m
               ORDER BY m.embedding::halfvec(384) <=> $1::halfvec(384) LIMIT ${K * overfetch})
             SELECT c.id, m.content, c.distance FROM c JOIN ${s}.memories m ON m.id = c.id
             ORDER BY c.distance + 0 LIMIT ${K}`;
      const r = await client.query<{ id: string }>(sql, [toVectorSql(q.vector)]);
      await client.query('COMMIT');
      return r.rows.map((row) => row.id);
    } finally {
      client.release();
    }
  };
}

function chromaSearcher(collection: BenchCollection): Searcher {
  return async (q, c) => {
    if (c !== 'none') return (await collection.store.search(q.vector, K, filterFor(q, c))).map((h) => h.id);
    const r = await collection.collection.query({
      queryEmbeddings: [Array.from(q.vector)],
      nResults: K,
      include: ['documents', 'metadatas', 'distances'],
    });
    return r.ids[0] ?? [];
  };
}

export interface Measured {
  latency: LatencySummary;
  qps: number;
  ids: string[][];
  /** Each sequential query's latency, in query order. */
  latencies: number[];
}

export async function measure(
  searcher: Searcher,
  queries: Query[],
  c: SearchCase,
  concurrency: number,
): Promise<Measured> {
  const ids: string[][] = [];
  const latencies: number[] = [];
  for (const [i, q] of queries.entries()) {
    const t0 = nowMs();
    ids[i] = await searcher(q, c);
    latencies.push(nowMs() - t0);
  }
  const qps = (await runConcurrent(queries.length, concurrency, (i) => searcher(queries[i]!, c))).qps;
  return { latency: summarize(latencies), qps, ids, latencies };
}

/**
 * The exact top-K of every query under each filter, the ground truth recall is measured against:
 * a forced exact scan (raw SQL without a filter, the adapter with one).
 */
export async function exactTruth(
  ctx: BenchContext,
  db: BenchSchema,
  queries: Query[],
  cases: readonly SearchCase[],
  label: string,
): Promise<Map<SearchCase, string[][]>> {
  const exact = db.store(ctx.logger, EXACT_ALWAYS);
  try {
    const truth = new Map<SearchCase, string[][]>();
    for (const c of cases) {
      ctx.progress(`${label}: exact ground truth, filter ${c}`);
      const searcher = c === 'none' ? rawPgSearcher(db, 'exact', DEFAULT_EF_SEARCH) : storeSearcher(exact);
      const ids: string[][] = [];
      for (const q of queries) ids.push(await searcher(q, c));
      truth.set(c, ids);
    }
    return truth;
  } finally {
    await exact.close();
  }
}

export function meanRecall(ids: string[][], truth: string[][]): number {
  return ids.reduce((a, found, i) => a + recallOf(found, truth[i] ?? []), 0) / (ids.length || 1);
}

/**
 * Search at growing sizes on one PostgreSQL schema and one Chroma collection holding the same
 * vectors: load, build HNSW, then every engine side by side, at the store level and through the
 * search service.
 */
export async function runSearch(ctx: BenchContext): Promise<SearchResults> {
  const { options, logger, progress } = ctx;
  const o = options.search;
  const runs = options.runs;
  const largest = Math.max(...o.sizes);
  progress(`search: ${largest} texts from ${o.baseTexts} corpus texts, embedded (or cached)`);
  const dataset = await searchDataset(ctx, largest);
  const embeddedQueries = await searchQueries(ctx);
  const layout = dataset.layout;

  const results: SearchResults = {
    efSearch: DEFAULT_EF_SEARCH,
    tenantEfSearch: coreEnvShape.HNSW_TENANT_EF_SEARCH.parse(undefined),
    overfetch: DEFAULT_OVERFETCH,
    exactScanThreshold: DEFAULT_EXACT_SCAN_THRESHOLD,
    index: PGVECTOR_HNSW_INDEX.method,
    dataset: {
      baseTexts: o.baseTexts,
      queries: embeddedQueries.length,
      layout,
      model: benchModel,
      kind: 'embedded',
      meanChars: dataset.meanChars,
      embedSeconds: dataset.embedSeconds,
    },
    writePaths: await compareWritePaths(ctx, dataset),
    sizes: [],
    skipped: [],
  };
  progress('search: the HTTP client on its own');
  results.client = await clientOverhead();

  const db = await BenchSchema.create(uniqueName('bench_search').toLowerCase(), logger);
  const chroma = await BenchCollection.create(uniqueName('bench-search'), logger);
  await db.dropHnsw();
  let loaded = 0;
  let chromaLoaded = 0;
  try {
    for (const size of o.sizes) {
      const withChroma = size <= o.chromaMaxSize;
      progress(`search ${size}: loading (${withChroma ? 'PostgreSQL and Chroma' : 'PostgreSQL only'})`);
      // PostgreSQL first, without the HNSW index (built once loaded), then Chroma, one after the other
      // so that neither load takes CPU from the other. Chroma indexes each batch before `add` returns.
      await db.dropHnsw();
      let t0 = nowMs();
      await db.load(dataset, loaded, size, o.loadChunk);
      const pgMs = nowMs() - t0;
      let chromaMs = 0;
      if (withChroma) {
        t0 = nowMs();
        for (let start = chromaLoaded; start < size; start += o.loadChunk) {
          await chroma.add(dataset.records(start, Math.min(size, start + o.loadChunk)));
        }
        chromaMs = nowMs() - t0;
        chromaLoaded = size;
      }
      const added = size - loaded;
      loaded = size;
      progress(`search ${size}: VACUUM (ANALYZE)`);
      const vacuumMs = await db.vacuum();
      progress(`search ${size}: building HNSW`);
      const hnsw = await db.buildHnsw(o.hnsw, o.hnswBuildTimeoutMs);
      if (!hnsw.completed) {
        results.skipped.push(
          `HNSW build at ${size} stopped after ${(hnsw.ms / 60_000).toFixed(1)} min (${hnsw.tuplesDone ?? '?'} of ${size} tuples): search at ${size} not measured`,
        );
        break;
      }
      // Sessions hold `users * sessionSize` consecutive records, `sessionSize` of them the user's.
      const sessionCount = Math.max(1, Math.floor(size / (layout.users * layout.sessionSize)));
      const sessionsOfUser = Array.from({ length: sessionCount }, (_, s) =>
        sessionOf(s * layout.users * layout.sessionSize, layout),
      );
      const queries: Query[] = embeddedQueries.map((q, i) => ({
        ...q,
        session: sessionsOfUser[i % sessionsOfUser.length]!,
      }));
      const scope = {
        user: await db.count('user_id = $1', [USER]),
        session: await db.count('user_id = $1 AND session_id = $2', [USER, queries[0]!.session]),
      };
      const sizeResult: SizeResult = {
        size,
        scope,
        load: {
          pgMs,
          pgRowsPerS: (added / pgMs) * 1000,
          pgWithIndex: false,
          vacuumMs,
          ...(withChroma && chromaMs > 0 ? { chromaMs, chromaRowsPerS: (added / chromaMs) * 1000 } : {}),
          ...(withChroma ? { chromaCount: await chroma.count() } : {}),
        },
        pgCount: await db.count(),
        hnsw,
        store: [],
        service: [],
        efSweep: [],
        rss: {},
      };
      results.sizes.push(sizeResult);
      ctx.saveProgress?.('search', results);
      const truth = await measureStoreLevel(
        ctx,
        db,
        withChroma ? chroma : undefined,
        queries,
        sizeResult,
        runs,
      );
      await measureServiceLevel(ctx, db, withChroma ? chroma : undefined, queries, sizeResult, runs);
      if (size === largest) await efSweep(ctx, db, queries, truth, sizeResult);
      if (size === largest && scope.user >= o.tenantMinMemories) {
        await ownGraphs(ctx, db, queries, truth, sizeResult, runs);
      }
    }
    if (o.sizes.some((s) => s > o.chromaMaxSize)) {
      results.skipped.push(`Chroma not loaded past ${o.chromaMaxSize} memories (time budget of the run)`);
    }
  } finally {
    await chroma.drop();
    await db.drop();
  }
  return results;
}

/**
 * The queries and runs of one engine at one size: above `fewQueriesAbove`, an engine whose every
 * query reads rows by the thousand (`scans`) runs the first `exactQueriesLarge` queries once.
 */
function queriesFor(
  o: BenchOptions['search'],
  size: number,
  scans: boolean,
  queries: Query[],
  runs: number,
): { qs: Query[]; runs: number } {
  return scans && size > o.fewQueriesAbove
    ? { qs: queries.slice(0, o.exactQueriesLarge), runs: 1 }
    : { qs: queries, runs };
}

/** Ground truth and every store-level engine, side by side, `runs` times. */
async function measureStoreLevel(
  ctx: BenchContext,
  db: BenchSchema,
  chroma: BenchCollection | undefined,
  queries: Query[],
  out: SizeResult,
  runs: number,
): Promise<Map<SearchCase, string[][]>> {
  const { logger, options } = ctx;
  const o = options.search;
  const efSearch = DEFAULT_EF_SEARCH;
  const auto = db.store(logger, { efSearch });
  const hnsw = db.store(logger, { efSearch, ...GRAPH_ALWAYS });
  const exact = db.store(logger, EXACT_ALWAYS);
  try {
    const engines: {
      name: Engine;
      searcher: (c: SearchCase) => Searcher;
      /** Whether each query reads rows by the thousand (fewer queries, one run above `fewQueriesAbove`). */
      scans: (c: SearchCase) => boolean;
    }[] = [
      {
        name: 'pgvector adapter (auto)',
        searcher: (c) => (c === 'none' ? rawPgSearcher(db, 'hnsw', efSearch) : storeSearcher(auto)),
        scans: () => false,
      },
      {
        name: 'pgvector HNSW',
        searcher: (c) => (c === 'none' ? rawPgSearcher(db, 'hnsw', efSearch) : storeSearcher(hnsw)),
        scans: () => false,
      },
      {
        name: 'pgvector exact',
        searcher: (c) => (c === 'none' ? rawPgSearcher(db, 'exact', efSearch) : storeSearcher(exact)),
        scans: () => true,
      },
    ];
    // Chroma's filtered query slows down with the collection, more than an exact scan of the scope does.
    if (chroma) {
      engines.push({ name: 'Chroma', searcher: () => chromaSearcher(chroma), scans: (c) => c !== 'none' });
    }
    const cases: SearchCase[] = ['none', 'user', 'user+session'];
    const truth = await exactTruth(ctx, db, queries, cases, `search ${out.size}`);
    for (const c of cases) {
      for (const engine of engines) {
        // The unfiltered case has no adapter path (every query is scoped to a user): one raw HNSW row.
        if (c === 'none' && engine.name === 'pgvector adapter (auto)') continue;
        const { qs, runs: engineRuns } = queriesFor(o, out.size, engine.scans(c), queries, runs);
        out.store.push(
          await engineRow(ctx, engine.name, engine.searcher(c), qs, c, engineRuns, truth.get(c)!, out.size),
        );
      }
    }
    return truth;
  } finally {
    await Promise.all([auto.close(), hnsw.close(), exact.close()]);
  }
}

/** One engine's row: latency and QPS (median of `runs`), recall@10 of the first run against `truth`. */
async function engineRow(
  ctx: BenchContext,
  engine: string,
  searcher: Searcher,
  queries: Query[],
  c: SearchCase,
  runs: number,
  truth: string[][],
  size: number,
): Promise<EngineResult> {
  const measured: Measured[] = [];
  for (let r = 0; r < runs; r += 1) {
    ctx.progress(`search ${size}: ${engine}, filter ${c}, run ${r + 1}/${runs}`);
    measured.push(await measure(searcher, queries, c, ctx.options.search.concurrency));
  }
  return {
    engine,
    case: c,
    latency: medianOf(measured.map((m) => ({ ...m.latency }))),
    qps: medianOf(measured.map((m) => ({ qps: m.qps }))).qps,
    recall: meanRecall(measured[0]!.ids, truth.slice(0, queries.length)),
    queries: queries.length,
    runs,
  };
}

/**
 * The same searches once users have graphs of their own, built as the worker builds them
 * (`maintainTenantIndexes`, concurrently, one user after another): build time and size, the adapter
 * at the store level and through the search service, and ef_search in the user's graph.
 */
async function ownGraphs(
  ctx: BenchContext,
  db: BenchSchema,
  queries: Query[],
  truth: Map<SearchCase, string[][]>,
  out: SizeResult,
  runs: number,
): Promise<void> {
  const { options, logger, progress } = ctx;
  const o = options.search;
  progress(`search ${out.size}: building users' own graphs`);
  const maintainer = db.store(logger);
  const t0 = nowMs();
  const report = await maintainer
    .maintainTenantIndexes({ minMemories: o.tenantMinMemories })
    .finally(() => maintainer.close());
  const ms = nowMs() - t0;
  if (!report.built.some((b) => b.user_id === USER)) {
    throw new Error(`no graph was built for ${USER} (${out.scope.user} memories)`);
  }
  out.ownGraphs = {
    minMemories: o.tenantMinMemories,
    graphs: report.built.length,
    ms,
    graphMs: median(report.built.map((b) => b.ms)),
    indexMiB: await db.tenantIndexesMiB(),
  };
  const auto = db.store(logger, { efSearch: DEFAULT_EF_SEARCH });
  const hnsw = db.store(logger, { efSearch: DEFAULT_EF_SEARCH, ...GRAPH_ALWAYS });
  try {
    for (const c of ['user', 'user+session'] as SearchCase[]) {
      for (const [name, store] of [
        ['pgvector adapter (auto), own graph', auto],
        ['pgvector HNSW, own graph', hnsw],
      ] as const) {
        out.store.push(
          await engineRow(ctx, name, storeSearcher(store), queries, c, runs, truth.get(c)!, out.size),
        );
      }
    }
  } finally {
    await Promise.all([auto.close(), hnsw.close()]);
  }
  await measureServiceLevel(ctx, db, undefined, queries, out, runs, ', own graph');
  out.tenantEfSweep = [];
  for (const ef of o.tenantEfSweep) {
    const store = db.store(logger, { tenantEfSearch: ef, ...GRAPH_ALWAYS });
    try {
      progress(`search ${out.size}: own graph, ef_search ${ef}`);
      const m = await measure(storeSearcher(store), queries, 'user', o.concurrency);
      out.tenantEfSweep.push({
        efSearch: ef,
        case: 'user',
        latency: m.latency,
        recall: meanRecall(m.ids, truth.get('user')!),
      });
    } finally {
      await store.close();
    }
  }
}

/**
 * Searches through a search service as `user`, the query text embedded by the service (or taken
 * from its cache); `timings` gets each answer's Server-Timing stages, in call order.
 */
export function serviceSearcher(
  stack: BenchStack,
  user: string,
  timings: Record<string, number>[] = [],
): Searcher {
  return async (q, c) => {
    const response = await postJsonWithHeaders<{ results: { id: string }[] }>(
      `${stack.searchUrl}/api/memory/search`,
      { query: q.text, n_results: K, ...(c === 'user+session' ? { session_id: q.session } : {}) },
      { 'x-user-id': user },
    );
    timings.push(parseServerTiming(response.headers['server-timing']));
    return response.body.results.map((h) => h.id);
  };
}

/**
 * `measure` through a search service (started with SERVER_TIMING), each sequential query's stages
 * added to `stages`.
 */
export async function measureService(
  stack: BenchStack,
  user: string,
  queries: Query[],
  c: SearchCase,
  concurrency: number,
  stages: StageSample[],
): Promise<Measured> {
  // `measure` makes its sequential calls first: their stages are the first of `timings`.
  const timings: Record<string, number>[] = [];
  const m = await measure(serviceSearcher(stack, user, timings), queries, c, concurrency);
  m.latencies.forEach((total, i) => {
    const t = timings[i]!;
    if (t.embed === undefined || t.store === undefined) {
      throw new Error(`the search service sent no Server-Timing stages (${JSON.stringify(t)})`);
    }
    stages.push({ total, embed: t.embed, store: t.store });
  });
  return m;
}

/** Through the search service over HTTP (query embedding included), for each backend. */
async function measureServiceLevel(
  ctx: BenchContext,
  db: BenchSchema,
  chroma: BenchCollection | undefined,
  queries: Query[],
  out: SizeResult,
  runs: number,
  suffix = '',
): Promise<void> {
  const { options, progress } = ctx;
  const backends: { name: string; backend: 'postgres' | 'chroma'; scans: boolean }[] = [
    { name: `pgvector (service)${suffix}`, backend: 'postgres', scans: false },
  ];
  // Every service search is filtered: through Chroma it is as slow as at the store level (see measureStoreLevel).
  if (chroma) backends.push({ name: 'Chroma (service)', backend: 'chroma', scans: true });
  for (const b of backends) {
    const { qs, runs: bRuns } = queriesFor(options.search, out.size, b.scans, queries, runs);
    // Two search services on the same store: one embeds every query (its cache off), the other
    // answers the same texts from its LRU. Both search the store level's query texts.
    // SERVER_TIMING: each answer says how long the service embedded and searched.
    const stacks = [{}, { QUERY_CACHE_SIZE: '0' }].map((env) =>
      createBenchStack({
        backend: b.backend,
        schema: db.schema,
        collection: chroma?.name,
        env: { SERVER_TIMING: 'true', ...env },
      }),
    );
    const [cachedStack, freshStack] = stacks as [BenchStack, BenchStack];
    try {
      await Promise.all(stacks.map((s) => s.start(['search'])));
      for (const c of ['user', 'user+session'] as SearchCase[]) {
        const measureStages = async (stack: BenchStack, into: Measured[], stages: StageSample[]) => {
          into.push(await measureService(stack, USER, qs, c, options.search.concurrency, stages));
        };
        for (const q of qs) await serviceSearcher(cachedStack, USER)(q, c);
        // Searches each service answered from its cache and by embedding, from its metrics.
        const cacheCounts = () =>
          Promise.all(
            stacks.map(async (s) => {
              const count = (cached: boolean) =>
                s.metric('search', 'search_duration_seconds_count', { cached: String(cached) });
              return { hits: await count(true), misses: await count(false) };
            }),
          );
        const before = await cacheCounts();
        const cold: Measured[] = [];
        const cached: Measured[] = [];
        const coldStages: StageSample[] = [];
        const cachedStages: StageSample[] = [];
        for (let r = 0; r < bRuns; r += 1) {
          progress(`search ${out.size}: ${b.name}, filter ${c}, run ${r + 1}/${bRuns}`);
          await measureStages(freshStack, cold, coldStages);
          await measureStages(cachedStack, cached, cachedStages);
        }
        const after = await cacheCounts();
        const cachedShare = (i: number) => {
          const hits = after[i]!.hits - before[i]!.hits;
          return hits / (hits + after[i]!.misses - before[i]!.misses || 1);
        };
        for (const [label, m, share, stages] of [
          ['query embedded', cold, cachedShare(1), coldStages],
          ['query cached', cached, cachedShare(0), cachedStages],
        ] as const) {
          out.service.push({
            cachedShare: share,
            engine: `${b.name}, ${label}`,
            case: c,
            latency: medianOf(m.map((x) => ({ ...x.latency }))),
            qps: medianOf(m.map((x) => ({ qps: x.qps }))).qps,
            recall: null,
            queries: qs.length,
            runs: bRuns,
            stages: serviceStages(stages),
          });
        }
      }
      // The larger peak of the two services.
      const [rss] = stacks
        .map((s) => s.services.search.rss())
        .sort((x, y) => (y?.peakMiB ?? 0) - (x?.peakMiB ?? 0));
      if (b.backend === 'postgres') out.rss.pgSearchService = rss;
      else out.rss.chromaSearchService = rss;
    } finally {
      await Promise.all(stacks.map((s) => s.stop()));
    }
  }
}

/** Recall and latency of forced HNSW by ef_search (the main knob), one run each. */
async function efSweep(
  ctx: BenchContext,
  db: BenchSchema,
  queries: Query[],
  truth: Map<SearchCase, string[][]>,
  out: SizeResult,
): Promise<void> {
  const { options, logger, progress } = ctx;
  for (const ef of options.search.efSweep) {
    const store = db.store(logger, { efSearch: ef, ...GRAPH_ALWAYS });
    try {
      for (const c of ['none', 'user'] as SearchCase[]) {
        progress(`search ${out.size}: ef_search ${ef}, filter ${c}`);
        const searcher = c === 'none' ? rawPgSearcher(db, 'hnsw', ef) : storeSearcher(store);
        const m = await measure(searcher, queries, c, options.search.concurrency);
        out.efSweep.push({
          efSearch: ef,
          case: c,
          latency: m.latency,
          recall: meanRecall(m.ids, truth.get(c)!),
        });
      }
    } finally {
      await store.close();
    }
  }
  out.overfetchSweep = [];
  for (const overfetch of options.search.overfetchSweep) {
    const store = db.store(logger, { efSearch: DEFAULT_EF_SEARCH, overfetch, ...GRAPH_ALWAYS });
    try {
      for (const c of ['none', 'user'] as SearchCase[]) {
        progress(`search ${out.size}: overfetch ${overfetch}, filter ${c}`);
        const searcher =
          c === 'none' ? rawPgSearcher(db, 'hnsw', DEFAULT_EF_SEARCH, overfetch) : storeSearcher(store);
        const m = await measure(searcher, queries, c, options.search.concurrency);
        out.overfetchSweep.push({
          overfetch,
          case: c,
          latency: m.latency,
          recall: meanRecall(m.ids, truth.get(c)!),
        });
      }
    } finally {
      await store.close();
    }
  }
}

/**
 * Writing the same records three ways into fresh schemas: through the adapter's upsert (what the
 * worker does, HNSW index in place), one INSERT ... unnest per 2,000 rows with the index in place,
 * and the same without the index (built afterwards, as the large sets here are loaded).
 */
async function compareWritePaths(ctx: BenchContext, dataset: EmbeddedDataset): Promise<WritePathResult[]> {
  const { logger, progress, options } = ctx;
  const rows = Math.min(dataset.size, options.mode === 'quick' ? 1_000 : 10_000);
  const records = dataset.records(0, rows);
  const out: WritePathResult[] = [];
  const once = async (path: string, work: (db: BenchSchema) => Promise<void>) => {
    const db = await BenchSchema.create(uniqueName('bench_write').toLowerCase(), logger);
    try {
      progress(`search: write path "${path}"`);
      const t0 = nowMs();
      await work(db);
      const ms = nowMs() - t0;
      const count = await db.count();
      if (count !== rows) throw new Error(`write path "${path}" stored ${count} of ${rows} rows`);
      out.push({ path, rows, ms, rowsPerS: (rows / ms) * 1000 });
    } finally {
      await db.drop();
    }
  };
  await once('adapter upsert, 1,000 per call, HNSW index in place', async (db) => {
    const store = db.store(logger);
    try {
      for (let i = 0; i < records.length; i += 1_000) {
        await store.upsert(records.slice(i, i + 1_000).map((r) => asMemoryRecord(r, 'bench')));
      }
    } finally {
      await store.close();
    }
  });
  await once('INSERT ... unnest, 2,000 per statement, HNSW index in place', (db) => db.insertDirect(records));
  await once('INSERT ... unnest, 2,000 per statement, then CREATE INDEX', async (db) => {
    await db.dropHnsw();
    await db.insertDirect(records);
    await db.buildHnsw(options.search.hnsw, 600_000);
  });
  return out;
}
