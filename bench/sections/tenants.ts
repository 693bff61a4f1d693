import {
  DEFAULT_EXACT_SCAN_THRESHOLD,
  DEFAULT_SPARSE_EXACT_SCAN,
  DEFAULT_TENANT_INDEX_POLICY,
  PGVECTOR_HNSW_INDEX,
  tenantIndexName,
  type PgvectorMemoryStore,
  type SparseExactScan,
} from 'memory-core';
import type { BenchContext } from '../lib/context';
import { asMemoryRecord, BenchSchema, type SyntheticRecord } from '../lib/dataset';
import { searchDataset, searchQueries, type EmbeddedDataset } from '../lib/embedded-dataset';
import { createBenchStack, uniqueName } from '../lib/stack';
import { median, medianOf, summarize, nowMs, type LatencySummary } from '../lib/stats';
import { batchedWriteCpu, WRITE_BATCH, type WriteCpu } from './graph';
import {
  DEFAULT_EF_SEARCH,
  DEFAULT_OVERFETCH,
  EXACT_ALWAYS,
  meanRecall,
  measure,
  measureService,
  serviceStages,
  storeSearcher,
  USER,
  type Measured,
  type Query,
  type ServiceStages,
  type StageSample,
} from './search';

/** The users that hold most of the table: one user, past the policy's `maxShare`, so no graph of its own. */
export const REST_USER = 'bench-rest';
const SLOT_STRIDE = 7919;

/** How one user's searches ran: latency of the sequential queries, QPS at the bench's concurrency. */
export interface ShareSearch {
  latency: LatencySummary;
  qps: number;
  /** recall@10 against the exact scan of the same user. */
  recall: number;
  runs: number;
}

export interface ShareRow {
  user: string;
  /** The user's share of the table, as laid out (the reference user's is the search layout's). */
  share: number;
  memories: number;
  /** Every query scanned exactly (the ground truth), one run. */
  exact: Omit<ShareSearch, 'recall'>;
  /**
   * The adapter with no graph of the user's own, as the services ran it before `sparseExactScan`:
   * the shared graph, or an exact scan of a scope within the exact-scan threshold.
   */
  shared: ShareSearch;
  /**
   * The adapter as the services run it, with no graph of the user's own, when it scans the scope
   * exactly past the threshold (`sparseExactScan`); absent: it searches the shared graph, or the
   * scope is within the threshold (both as `shared`).
   */
  sparse?: ShareSearch;
  /** The adapter once the worker's policy built the user a graph (absent: the policy built none). */
  own?: ShareSearch & { buildMs: number };
  /**
   * Through a search service once the policy's graphs are built (the user's own graph, or an exact
   * scan of a small scope), each query embedded by the service (QUERY_CACHE_SIZE=0).
   */
  service?: ShareSearch & { stages: ServiceStages };
}

export interface WriteCost {
  user: string;
  ownGraph: boolean;
  pgCpuMsPerRow: number;
  wallMsPerRow: number;
}

export interface TenantResults {
  size: number;
  queries: number;
  efSearch: number;
  overfetch: number;
  exactScanThreshold: number;
  /**
   * Scopes scanned exactly past the threshold, with no graph of the user's own (the services'
   * default); absent in results from before it, whose `shared` searches were the services'.
   */
  sparseExactScan?: SparseExactScan;
  /** The policy the graphs were built with (`maintainTenantIndexes`). */
  policy: { minMemories: number; maxShare: number };
  sharedGraph: { ms: number; indexMiB: number };
  rows: ShareRow[];
  graphs: { built: number; ms: number; indexMiB: number };
  /** Memories written per user and run, `WRITE_BATCH` per upsert; medians over `runs`. */
  writes: { rows: number; runs: number; costs: WriteCost[] };
  /** What each graph on the table costs every statement, whoever's it is (`manyGraphs`). */
  manyGraphs?: ManyGraphs;
}

/**
 * A small table with more and more users' graphs on it (empty ones: what PostgreSQL does per
 * statement for each index does not depend on its size): searches and writes of users they are not for.
 */
export interface ManyGraphs {
  size: number;
  /** The exact-scan limit of these searches, below the reference user's memories so that they search its graph. */
  exactScanThreshold: number;
  rows: {
    graphs: number;
    /** The reference user, in their own graph. */
    ownSearch: LatencySummary;
    /** The large user, in the shared graph. */
    sharedSearch: LatencySummary;
    /** Wall ms per memory of upserts of `WRITE_BATCH` (the large user's). */
    batchWallMsPerRow: number;
    /** One memory per upsert, the large user's. */
    single: LatencySummary;
  }[];
}

/** The record → user mapping of this section: share users carved out of the search layout's users. */
export interface ShareLayout {
  users: { user: string; share: number }[];
  userOf(i: number): string;
}

/**
 * Users holding `shares` of the table, carved out of the search layout's users other than the
 * reference user (`USER`, who keeps their share): record i of donor user d belongs to a share user
 * by its slot, `floor(i / users) × SLOT_STRIDE mod 1000`, so each share user's memories are spread over the whole table as a
 * real user's would be. Every other record goes to one large user (`REST_USER`).
 */
export function shareLayout(shares: number[], layoutUsers: number): ShareLayout {
  const reference = Number(USER.replace(/\D+/g, ''));
  const donors = Array.from({ length: layoutUsers }, (_, d) => layoutUsers - 1 - d).filter(
    (d) => d !== reference,
  );
  /** donor → [first slot, end slot, user] */
  const slots = new Map<number, [number, number, string][]>();
  const users: { user: string; share: number }[] = [];
  let donor = 0;
  let used = 0;
  for (const share of [...shares].sort((a, b) => b - a)) {
    const n = Math.round(share * layoutUsers * 1000);
    if (n < 1 || Math.abs(n - share * layoutUsers * 1000) > 1e-6) {
      throw new Error(`share ${share} is not a whole number of 1/${layoutUsers * 1000} of the table`);
    }
    if (used + n > 1000) {
      donor += 1;
      used = 0;
    }
    if (donor >= donors.length || n > 1000)
      throw new Error(`shares ${shares.join(', ')} do not fit the layout`);
    const user = `bench-share-${(share * 100).toFixed(1)}pct`;
    const list = slots.get(donors[donor]!) ?? [];
    list.push([used, used + n, user]);
    slots.set(donors[donor]!, list);
    used += n;
    users.push({ user, share });
  }
  return {
    users: [...users.sort((a, b) => a.share - b.share), { user: USER, share: 1 / layoutUsers }],
    userOf(i) {
      const d = i % layoutUsers;
      if (d === reference) return USER;
      // A stride prime to 1000 deals a donor's consecutive records to slots far apart, so that even a
      // small table gives each share user about its share.
      const slot = (Math.floor(i / layoutUsers) * SLOT_STRIDE) % 1000;
      return slots.get(d)?.find(([from, to]) => slot >= from && slot < to)?.[2] ?? REST_USER;
    },
  };
}

function relabel(dataset: EmbeddedDataset, layout: ShareLayout) {
  return {
    records: (from: number, to: number): SyntheticRecord[] =>
      dataset.records(from, to).map((r, k) => ({ ...r, user: layout.userOf(from + k) })),
  };
}

/**
 * Searches scoped to users of every share of a large table, side by side: an exact scan, the
 * shared graph (what a user with no graph of their own got before `sparseExactScan`), the services'
 * exact scan of such a user's scope where it applies, and the user's own graph as the worker's
 * policy builds it; then what a write costs a user with a graph of their own.
 */
export async function runTenants(ctx: BenchContext): Promise<TenantResults> {
  const { options, logger, progress } = ctx;
  const o = options.tenants;
  const runs = options.runs;
  const writeRows = o.writeRows;
  const many = o.manyGraphs;
  // The table, then the records each write of the section takes, past it.
  const dataset = await searchDataset(
    ctx,
    o.size + writeRows * runs * 2 + many.counts.length * (many.writeRows + many.singleWrites),
  );
  const layout = shareLayout(o.shares, dataset.layout.users);
  const queries: Query[] = (await searchQueries(ctx)).map((q) => ({ ...q, session: '' }));
  const exactScanThreshold = o.exactScanThreshold ?? DEFAULT_EXACT_SCAN_THRESHOLD;
  const policy = { minMemories: o.minMemories, maxShare: DEFAULT_TENANT_INDEX_POLICY.maxShare };
  const db = await BenchSchema.create(uniqueName('bench_tenants').toLowerCase(), logger);
  let results: TenantResults;
  try {
    progress(`tenants: loading ${o.size} memories`);
    await db.dropHnsw();
    await db.load(relabel(dataset, layout), 0, o.size, options.search.loadChunk);
    await db.vacuum();
    progress(`tenants: building the shared graph`);
    const built = await db.buildHnsw(options.search.hnsw, options.search.hnswBuildTimeoutMs);
    if (!built.completed) throw new Error('tenants: the HNSW build did not finish in time');
    results = {
      size: o.size,
      queries: queries.length,
      efSearch: DEFAULT_EF_SEARCH,
      overfetch: DEFAULT_OVERFETCH,
      exactScanThreshold,
      sparseExactScan: DEFAULT_SPARSE_EXACT_SCAN,
      policy,
      sharedGraph: { ms: built.ms, indexMiB: built.indexMiB },
      rows: [],
      graphs: { built: 0, ms: 0, indexMiB: 0 },
      writes: { rows: writeRows - WRITE_BATCH, runs, costs: [] },
    };
    const exact = db.store(logger, EXACT_ALWAYS);
    const sharedGraph = db.store(logger, { exactScanThreshold, sparseExactScan: false });
    const auto = db.store(logger, { exactScanThreshold });
    const truths = new Map<string, string[][]>();
    try {
      for (const { user, share } of layout.users) {
        const memories = await db.count('user_id = $1', [user]);
        progress(`tenants: ${user} (${memories} memories), exact scan`);
        const truth = await measure(storeSearcher(exact, user), queries, 'user', options.search.concurrency);
        truths.set(user, truth.ids);
        progress(`tenants: ${user}, the adapter without a graph of the user's own, shared graph`);
        const row: ShareRow = {
          user,
          share,
          memories,
          exact: { latency: truth.latency, qps: truth.qps, runs: 1 },
          shared: await searchRuns(sharedGraph, user, queries, runs, options.search.concurrency, truth.ids),
        };
        const { mode } = await auto.explainSearch(queries[0]!.vector, 10, { user_id: user });
        if (mode === 'exact' && memories > exactScanThreshold) {
          progress(`tenants: ${user}, the adapter without a graph of the user's own, the services' defaults`);
          row.sparse = await searchRuns(auto, user, queries, runs, options.search.concurrency, truth.ids);
        }
        results.rows.push(row);
        ctx.saveProgress?.('tenants', results);
      }
    } finally {
      await Promise.all([exact.close(), sharedGraph.close()]);
    }
    try {
      progress(`tenants: users' own graphs (minMemories ${policy.minMemories}, maxShare ${policy.maxShare})`);
      const maintainer = db.store(logger);
      const t0 = nowMs();
      const report = await maintainer.maintainTenantIndexes(policy).finally(() => maintainer.close());
      results.graphs = {
        built: report.built.length,
        ms: nowMs() - t0,
        indexMiB: await db.tenantIndexesMiB(),
      };
      for (const row of results.rows) {
        const graph = report.built.find((b) => b.user_id === row.user);
        if (!graph) continue;
        progress(`tenants: ${row.user}, the adapter in the user's own graph`);
        const own = await searchRuns(
          auto,
          row.user,
          queries,
          runs,
          options.search.concurrency,
          truths.get(row.user)!,
        );
        row.own = { ...own, buildMs: graph.ms };
        ctx.saveProgress?.('tenants', results);
      }
    } finally {
      await auto.close();
    }
    await serviceSearches(ctx, db, results, queries, truths);
    // A user with a graph of their own (the smallest that has one) against the large user without.
    const owner = results.rows.find((r) => r.own && r.user !== USER) ?? results.rows.find((r) => r.own);
    if (owner) {
      results.writes.costs = await writeCosts(ctx, db, dataset, [owner.user, REST_USER], writeRows);
    }
    ctx.saveProgress?.('tenants', results);
  } finally {
    await db.drop();
  }
  results.manyGraphs = await manyGraphs(ctx, dataset, layout, queries);
  return results;
}

/**
 * `manyGraphs.size` memories laid out as above, the reference user's graph built by the policy; then
 * graphs for users who hold no memories, `manyGraphs.counts` of them in all, one step after another:
 * at each step, searches of the reference user (their own graph) and of the large user (the shared
 * graph), and writes of the large user, in batches and one by one.
 */
async function manyGraphs(
  ctx: BenchContext,
  dataset: EmbeddedDataset,
  layout: ShareLayout,
  queries: Query[],
): Promise<ManyGraphs> {
  const { options, logger, progress } = ctx;
  const o = options.tenants.manyGraphs;
  const db = await BenchSchema.create(uniqueName('bench_graphs').toLowerCase(), logger);
  const exactScanThreshold = 100;
  const store = db.store(logger, { exactScanThreshold, sparseExactScan: false, poolSize: 2 });
  const out: ManyGraphs = { size: o.size, exactScanThreshold, rows: [] };
  try {
    progress(`tenants: ${o.size} memories for the many-graphs steps`);
    await db.dropHnsw();
    await db.load(relabel(dataset, layout), 0, o.size, options.search.loadChunk);
    await db.vacuum();
    await db.buildHnsw(options.search.hnsw, options.search.hnswBuildTimeoutMs);
    const reference = await db.count('user_id = $1', [USER]);
    const report = await store.maintainTenantIndexes({ minMemories: reference, maxShare: 0.2 });
    if (!report.built.some((b) => b.user_id === USER)) throw new Error(`tenants: no graph for ${USER}`);
    // Records past every other part of the section, for the writes.
    let next = options.tenants.size + options.tenants.writeRows * options.runs * 2;
    let graphs = report.built.length;
    for (const count of o.counts) {
      for (; graphs < count; graphs += 1) {
        const absent = `bench-absent-${graphs}`;
        await db.pool.query(
          `CREATE INDEX ${tenantIndexName(absent)} ON ${db.schema}.memories
           USING ${PGVECTOR_HNSW_INDEX.method} WHERE user_id = '${absent}'`,
        );
      }
      progress(`tenants: ${graphs} graphs on the table`);
      const searchOf = async (user: string) => {
        const search = storeSearcher(store, user);
        const latencies: number[] = [];
        for (let r = 0; r < options.runs; r += 1) {
          for (const q of queries) {
            const t0 = nowMs();
            await search(q, 'user');
            latencies.push(nowMs() - t0);
          }
        }
        return summarize(latencies);
      };
      const ownSearch = await searchOf(USER);
      const sharedSearch = await searchOf(REST_USER);
      const write = (n: number) => {
        const records = dataset
          .records(next, next + n)
          .map((x) => asMemoryRecord({ ...x, user: REST_USER }, 'bench'));
        next += n;
        return records;
      };
      const batched = await batchedWriteCpu(store, write(o.writeRows), WRITE_BATCH);
      const single: number[] = [];
      for (const record of write(o.singleWrites)) {
        const t0 = nowMs();
        await store.upsert([record]);
        single.push(nowMs() - t0);
      }
      out.rows.push({
        graphs,
        ownSearch,
        sharedSearch,
        batchWallMsPerRow: batched.wall,
        single: summarize(single),
      });
    }
    return out;
  } finally {
    await store.close();
    await db.drop();
  }
}

/**
 * Each user's searches through one search service on the section's table, once the policy's graphs
 * are built: what an app sees, the query embedded by the service each time (its cache off).
 */
async function serviceSearches(
  ctx: BenchContext,
  db: BenchSchema,
  results: TenantResults,
  queries: Query[],
  truths: Map<string, string[][]>,
): Promise<void> {
  const { options, progress } = ctx;
  const stack = createBenchStack({
    backend: 'postgres',
    schema: db.schema,
    env: { SERVER_TIMING: 'true', QUERY_CACHE_SIZE: '0' },
  });
  try {
    await stack.start(['search']);
    // The first searches of a service load its model and warm its connections: one pass, not counted.
    await measureService(stack, results.rows[0]!.user, queries, 'user', 1, []);
    for (const row of results.rows) {
      progress(`tenants: ${row.user}, through the search service`);
      const measured = [];
      const stages: StageSample[] = [];
      for (let r = 0; r < options.runs; r += 1)
        measured.push(
          await measureService(stack, row.user, queries, 'user', options.search.concurrency, stages),
        );
      row.service = { ...shareSearch(measured, truths.get(row.user)!), stages: serviceStages(stages) };
      ctx.saveProgress?.('tenants', results);
    }
  } finally {
    await stack.stop();
  }
}

async function searchRuns(
  store: PgvectorMemoryStore,
  user: string,
  queries: Query[],
  runs: number,
  concurrency: number,
  truth: string[][],
): Promise<ShareSearch> {
  const measured = [];
  for (let r = 0; r < runs; r += 1)
    measured.push(await measure(storeSearcher(store, user), queries, 'user', concurrency));
  return shareSearch(measured, truth);
}

/** Runs of the same searches: medians over the runs, recall@10 of the first against `truth`. */
function shareSearch(measured: Measured[], truth: string[][]): ShareSearch {
  return {
    latency: medianOf(measured.map((m) => ({ ...m.latency }))),
    qps: median(measured.map((m) => m.qps)),
    recall: meanRecall(measured[0]!.ids, truth),
    runs: measured.length,
  };
}

/**
 * New memories written through the adapter for each user in turn, `WRITE_BATCH` per upsert, the
 * users alternating run by run; PostgreSQL's CPU per memory from /proc, median over the runs.
 */
async function writeCosts(
  ctx: BenchContext,
  db: BenchSchema,
  dataset: EmbeddedDataset,
  users: string[],
  writeRows: number,
): Promise<WriteCost[]> {
  const { options, logger, progress } = ctx;
  const own = new Set((await db.tenantIndexes()).map((i) => i.name));
  const store = db.store(logger, { poolSize: 2 });
  const perUser = new Map(users.map((u) => [u, [] as WriteCpu[]]));
  let next = options.tenants.size;
  try {
    for (let r = 0; r < options.runs; r += 1) {
      const order = r % 2 === 0 ? users : [...users].reverse();
      for (const user of order) {
        progress(`tenants: writes of ${user}, run ${r + 1}/${options.runs}`);
        const records = dataset
          .records(next, next + writeRows)
          .map((x) => asMemoryRecord({ ...x, user }, 'bench'));
        next += writeRows;
        perUser.get(user)!.push(await batchedWriteCpu(store, records, WRITE_BATCH));
      }
    }
  } finally {
    await store.close();
  }
  return users.map((user) => ({
    user,
    ownGraph: own.has(tenantIndexName(user)),
    pgCpuMsPerRow: median(perUser.get(user)!.map((x) => x.pg)),
    wallMsPerRow: median(perUser.get(user)!.map((x) => x.wall)),
  }));
}
