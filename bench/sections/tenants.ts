import {
  DEFAULT_EXACT_SCAN_THRESHOLD,
  DEFAULT_TENANT_INDEX_POLICY,
  TENANT_INDEX_PREFIX,
  tenantIndexName,
  type MemoryFilter,
  type PgvectorMemoryStore,
} from 'memory-core';
import type { BenchContext } from '../lib/context';
import { asMemoryRecord, BenchSchema, type SyntheticRecord } from '../lib/dataset';
import { searchDataset, searchQueries, type EmbeddedDataset } from '../lib/embedded-dataset';
import { uniqueName } from '../lib/stack';
import { median, medianOf, runConcurrent, summarize, nowMs, type LatencySummary } from '../lib/stats';
import { batchedWriteCpu, WRITE_BATCH, type WriteCpu } from './graph';
import { DEFAULT_EF_SEARCH, DEFAULT_OVERFETCH, meanRecall, USER, type Query } from './search';

const K = 10;
/** The users that hold most of the table: one user, past the policy's `maxShare`, so no graph of its own. */
export const REST_USER = 'bench-rest';
const SLOT_STRIDE = 7919;
/** An exact-scan threshold no scope reaches. */
const EXACT_ALWAYS = 1_000_000_000;

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
  /** The adapter as the services run it, with no graph of the user's own: the shared graph, or an exact scan of a small scope. */
  shared: ShareSearch;
  /** The adapter once the worker's policy built the user a graph (absent: the policy built none). */
  own?: ShareSearch & { buildMs: number };
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
  /** The policy the graphs were built with (`maintainTenantIndexes`). */
  policy: { minMemories: number; maxShare: number };
  sharedGraph: { ms: number; indexMiB: number };
  rows: ShareRow[];
  graphs: { built: number; ms: number; indexMiB: number };
  /** Memories written per user and run, `WRITE_BATCH` per upsert; medians over `runs`. */
  writes: { rows: number; runs: number; costs: WriteCost[] };
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
 * shared graph (what a user below TENANT_INDEX_MIN_MEMORIES gets), and the user's own graph as the
 * worker's policy builds it; then what a write costs a user with a graph of their own.
 */
export async function runTenants(ctx: BenchContext): Promise<TenantResults> {
  const { options, logger, progress } = ctx;
  const o = options.tenants;
  const runs = options.runs;
  const writeRows = o.writeRows;
  const dataset = await searchDataset(ctx, o.size + writeRows * runs * 2);
  const layout = shareLayout(o.shares, dataset.layout.users);
  const queries: Query[] = (await searchQueries(ctx)).map((q) => ({ ...q, session: '' }));
  const exactScanThreshold = o.exactScanThreshold ?? DEFAULT_EXACT_SCAN_THRESHOLD;
  const policy = { minMemories: o.minMemories, maxShare: DEFAULT_TENANT_INDEX_POLICY.maxShare };
  const db = await BenchSchema.create(uniqueName('bench_tenants').toLowerCase(), logger);
  try {
    progress(`tenants: loading ${o.size} memories`);
    await db.dropHnsw();
    await db.load(relabel(dataset, layout), 0, o.size, options.search.loadChunk);
    await db.vacuum();
    progress(`tenants: building the shared graph`);
    const built = await db.buildHnsw(options.search.hnsw, options.search.hnswBuildTimeoutMs);
    if (!built.completed) throw new Error('tenants: the HNSW build did not finish in time');
    const results: TenantResults = {
      size: o.size,
      queries: queries.length,
      efSearch: DEFAULT_EF_SEARCH,
      overfetch: DEFAULT_OVERFETCH,
      exactScanThreshold,
      policy,
      sharedGraph: { ms: built.ms, indexMiB: built.indexMiB },
      rows: [],
      graphs: { built: 0, ms: 0, indexMiB: 0 },
      writes: { rows: writeRows - WRITE_BATCH, runs, costs: [] },
    };
    const exact = db.store(logger, { exactScanThreshold: EXACT_ALWAYS });
    const auto = db.store(logger, { exactScanThreshold });
    const truths = new Map<string, string[][]>();
    try {
      for (const { user, share } of layout.users) {
        const memories = await db.count('user_id = $1', [user]);
        progress(`tenants: ${user} (${memories} memories), exact scan`);
        const truth = await searchAll(exact, user, queries, options.search.concurrency);
        truths.set(user, truth.ids);
        progress(`tenants: ${user}, the adapter without a graph of the user's own`);
        const shared = await searchRuns(auto, user, queries, runs, options.search.concurrency, truth.ids);
        results.rows.push({
          user,
          share,
          memories,
          exact: { latency: truth.latency, qps: truth.qps, runs: 1 },
          shared,
        });
        ctx.saveProgress?.('tenants', results);
      }
    } finally {
      await exact.close();
    }
    try {
      progress(`tenants: users' own graphs (minMemories ${policy.minMemories}, maxShare ${policy.maxShare})`);
      const maintainer = db.store(logger);
      const t0 = nowMs();
      const report = await maintainer.maintainTenantIndexes(policy).finally(() => maintainer.close());
      results.graphs = {
        built: report.built.length,
        ms: nowMs() - t0,
        indexMiB: await tenantIndexMiB(db),
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
    // A user with a graph of their own (the smallest that has one) against the large user without.
    const owner = results.rows.find((r) => r.own && r.user !== USER) ?? results.rows.find((r) => r.own);
    if (owner) {
      results.writes.costs = await writeCosts(ctx, db, dataset, [owner.user, REST_USER], writeRows);
    }
    return results;
  } finally {
    await db.drop();
  }
}

async function searchAll(
  store: PgvectorMemoryStore,
  user: string,
  queries: Query[],
  concurrency: number,
): Promise<{ ids: string[][]; latency: LatencySummary; qps: number }> {
  const filter: MemoryFilter = { user_id: user };
  const ids: string[][] = [];
  const latencies: number[] = [];
  for (const q of queries) {
    const t0 = nowMs();
    ids.push((await store.search(q.vector, K, filter)).map((h) => h.id));
    latencies.push(nowMs() - t0);
  }
  const { qps } = await runConcurrent(queries.length, concurrency, (i) =>
    store.search(queries[i]!.vector, K, filter),
  );
  return { ids, latency: summarize(latencies), qps };
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
  for (let r = 0; r < runs; r += 1) measured.push(await searchAll(store, user, queries, concurrency));
  return {
    latency: medianOf(measured.map((m) => ({ ...m.latency }))),
    qps: median(measured.map((m) => m.qps)),
    recall: meanRecall(measured[0]!.ids, truth),
    runs,
  };
}

async function tenantIndexMiB(db: BenchSchema): Promise<number> {
  const r = await db.pool.query<{ bytes: string }>(
    `SELECT coalesce(sum(pg_relation_size(c.oid)), 0) AS bytes
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND starts_with(c.relname, $2)`,
    [db.schema, TENANT_INDEX_PREFIX],
  );
  return Number(r.rows[0]!.bytes) / 1024 / 1024;
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
  const own = new Set(
    (
      await db.pool.query<{ relname: string }>(
        `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND starts_with(c.relname, $2)`,
        [db.schema, TENANT_INDEX_PREFIX],
      )
    ).rows.map((r) => r.relname),
  );
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
