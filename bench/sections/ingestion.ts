import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { ChromaClient } from 'chromadb';
import { Pool } from 'pg';
import {
  chunks,
  contentHash,
  DEFAULT_TENANT_INDEX_POLICY,
  PgvectorMemoryStore,
  type Embedder,
  type MemoryRecord,
} from 'memory-core';
import { meanLength, textsFrom } from '../lib/corpus';
import { CorpusOffsets, type BenchContext } from '../lib/context';
import {
  CPU_GROUPS,
  cpuSince,
  cpuSnapshot,
  pinToCpus,
  serverPids,
  type CpuGroup,
  type CpuSpent,
} from '../lib/cpu';
import { BenchSchema, chromaCount, shippedGraph, type GraphSetting } from '../lib/dataset';
import { searchDataset, variationTexts } from '../lib/embedded-dataset';
import { IngestJobEvents } from '../lib/job-events';
import { servers } from '../lib/paths';
import {
  createBenchStack,
  DEFAULT_POOL_SIZE,
  postJson,
  uniqueName,
  type BenchStack,
  type Rss,
} from '../lib/stack';
import {
  median,
  nowMs,
  runConcurrent,
  seededRandom,
  sleep,
  summarize,
  type LatencySummary,
} from '../lib/stats';
import { openWorkerEmbedder, WORKER_EMBEDDING } from '../lib/worker-embedder';

export interface IngestRun {
  backend: 'postgres' | 'chroma';
  variant: string;
  requests: 'batch' | 'single';
  memories: number;
  /** Rows of the run in the store once it finished (equals `memories` when nothing was lost or doubled). */
  stored: number;
  /** Memories per second from the first request to the last row in the store. */
  e2eRate: number;
  /** The raw pipeline on the same texts, as the worker defaults batch them, just before, in this process. */
  rawRate: number;
  ratio: number;
  /** Until every request was answered (202). */
  enqueueMs: number;
  wallMs: number;
  /** Model time inside the worker (its embedding_duration_seconds histogram). */
  workerEmbedMs: number;
  modelCalls: number;
  meanBatch: number;
  /**
   * CPU time by process while the raw pipeline ran (in this process) and during the end-to-end run,
   * from /proc (absent where there is none).
   */
  cpu?: { raw: CpuSpent; e2e: CpuSpent };
}

export interface IngestionResults {
  memories: number;
  /** Each run wrote texts no run before it sent (`FreshTexts`); absent: every run sent the same ones. */
  freshTexts?: boolean;
  /** Each row's runs started on an emptied table (but CHEAPER_GRAPH's); absent: on the table the rows before left. */
  emptyTablePerVariant?: boolean;
  meanChars: number;
  requestSize: number;
  clients: number;
  runs: IngestRun[];
  /** The unmeasured runs each worker makes right after it starts (`WARM_UP_RUNS` per stack and variant), in order. */
  warmUps?: IngestRun[];
  /** Enqueue alone (worker stopped): the gateway's share of the CPU per memory. */
  enqueueOnly: { memories: number; ms: number; perMemoryMs: number };
  /**
   * The raw model alone, then again while the adapter upserts records in a loop (batches of 64) in
   * the same process, run by run: the share of the model's speed that PostgreSQL's writes take.
   */
  contended: { alone: number; besideWrites: number; writesPerS: number }[];
  /** Writes alone: the adapter's upsert of the same records in batches of 64, sequentially. */
  writesOnly: { memories: number; ms: number; rate: number };
  rss: { postgres: Record<string, Rss | undefined>; chroma?: Record<string, Rss | undefined> };
  /** Memories in the table before the PRELOADED runs (loaded straight, then the HNSW index built). */
  preloaded?: {
    memories: number;
    loadMs: number;
    buildMs: number;
    /** Users' own graphs built after the load, by the worker's default policy (absent: runs before it). */
    graphs?: number;
    graphsMs?: number;
  };
  /** The table's shared graph rebuilt with CHEAPER_GRAPH's settings before its runs (absent: runs before it). */
  cheaperGraph?: { graph: GraphSetting; memories: number; buildMs: number };
  /** Single stores while a bulk load is ingested (`ingestion.duringBulk`; absent: runs before it). */
  duringBulk?: StoresDuringBulk;
}

/** Single stores (`wait=true`) sent one after another while a bulk load ran, with the defaults. */
export interface StoresDuringBulk {
  /** The load: memories, in requests of `requestSize` from `clients` clients. */
  memories: number;
  /** Memories in the table before the load (those the defaults' runs wrote). Absent: runs before it. */
  tableMemories?: number;
  /** From the load's first request until its last job completed. */
  loadMs: number;
  /** Each of the load's requests, from its POST until its job completed. */
  loadJobs: LatencySummary;
  /** Each single store, from its POST until its answer (201: stored; 202: the gateway's wait ran out). */
  singles: LatencySummary;
  answers: Record<string, number>;
  gapMs: number;
  /** Every memory of the load and every single store was in the table once its job completed. */
  stored: boolean;
}

interface Variant {
  name: string;
  env: NodeJS.ProcessEnv;
  requests: 'batch' | 'single';
  /** Runs with the HNSW index dropped (rebuilt after): what the pipeline costs without the graph. */
  withoutIndex?: boolean;
  /** Runs with the model on core 0 and everything else on core 1 (SPLIT_CORES). */
  splitCores?: boolean;
  /** Runs after the table was filled with `ingestion.preload` memories of the search data set (PRELOADED). */
  preloaded?: boolean;
  /**
   * Runs with the shared graph rebuilt with these settings (CHEAPER_GRAPH); the store's after. It
   * runs on the table the variant before it left, where every other variant starts from an empty one.
   */
  graph?: GraphSetting;
  /** Says what would close the ingestion goal: runs `closingRuns` times. */
  closing?: boolean;
}

export const WITHOUT_INDEX = 'no HNSW index on the table (otherwise the defaults; not a service setting)';

/** Unmeasured runs of the run's memories by each worker right after it starts (`warmUp`). */
export const WARM_UP_RUNS = 2;

/** The worker's MICRO_BATCH_SIZE default (services/embedding-worker/src/config.ts). */
const DEFAULT_MICRO_BATCH = 64;
export const DEFAULTS = `defaults (MICRO_BATCH_SIZE=${DEFAULT_MICRO_BATCH}, EMBEDDING_BATCH_SIZE=${WORKER_EMBEDDING.batchSize}, MICRO_BATCH_WAIT_MS=5, WORKER_CONCURRENCY=32, EMBEDDING_THREAD_SPINNING=${WORKER_EMBEDDING.threadSpinning}, EMBEDDING_THREADS=${WORKER_EMBEDDING.threads}, DATABASE_POOL_SIZE=${DEFAULT_POOL_SIZE})`;
/** node-postgres's own pool size, the services' until DATABASE_POOL_SIZE. */
export const POOL_BEFORE = "DATABASE_POOL_SIZE=10 (pg's default, the services' until this change)";
/** The model in the worker's own thread on ONNX runtime's threads, as before EMBEDDING_THREADS. */
export const ONE_MODEL =
  "EMBEDDING_THREADS=0 (one model on ONNX runtime's threads in the worker's own thread; the services' until this change)";
/** Before the benchmarks tuned it: one model call per micro-batch of 64. */
export const PREVIOUS = 'EMBEDDING_BATCH_SIZE=64 (the default before tuning)';
/** ONNX runtime's own default, before EMBEDDING_THREAD_SPINNING turned it off. */
export const SPINNING =
  "EMBEDDING_THREAD_SPINNING=true (ONNX runtime's default, the services' until this change)";
/**
 * The model with a core of its own, as a worker on its own machine would have it: the worker and the
 * raw pipeline on core 0, and on core 1 PostgreSQL, Redis, the gateway, the search service and the
 * bench's HTTP clients. The ratio is then to the raw pipeline on the same one core.
 */
export const SPLIT_CORES =
  'worker on core 0; PostgreSQL, Redis, gateway, search service and clients on core 1; raw on core 0 (taskset; not a service setting)';
/**
 * The defaults writing into a table that already holds many memories, as a service in use does: the
 * other runs start from an empty table, whose graph is small and cheap to insert into.
 */
export const PRELOADED =
  'into a table already holding the search data set (otherwise the defaults; not a service setting)';
/** The graph setting section 4 found cheapest to write into at a recall still past the goal's 0.95. */
const CHEAPER: GraphSetting = { m: 12, efConstruction: 64 };
/**
 * PRELOADED again, with the table's shared graph rebuilt with fewer neighbours per node: what a
 * cheaper graph gives ingestion into a table in use, where maintaining the graph costs the most.
 */
export const CHEAPER_GRAPH = `the same table, its graph rebuilt with m=${CHEAPER.m}, ef_construction=${CHEAPER.efConstruction} (the store's: m=${shippedGraph().m}; not a service setting)`;
const QUICK_VARIANTS = new Set([
  'MICRO_BATCH_SIZE=1',
  PREVIOUS,
  DEFAULTS,
  ONE_MODEL,
  SPLIT_CORES,
  PRELOADED,
  CHEAPER_GRAPH,
]);

/** The PostgreSQL variants after the defaults, in the order they run. */
const ALL_VARIANTS: Variant[] = [
  // Right after the defaults: a variant compared with the defaults on speed alone runs next to them
  // (each variant starts on an emptied table, but the machine's speed drifts over the section).
  { name: POOL_BEFORE, env: { DATABASE_POOL_SIZE: '10' }, requests: 'batch' },
  { name: PREVIOUS, env: { EMBEDDING_BATCH_SIZE: '64' }, requests: 'batch' },
  { name: 'EMBEDDING_BATCH_SIZE=1', env: { EMBEDDING_BATCH_SIZE: '1' }, requests: 'batch' },
  { name: 'EMBEDDING_BATCH_SIZE=16', env: { EMBEDDING_BATCH_SIZE: '16' }, requests: 'batch' },
  { name: 'MICRO_BATCH_SIZE=1', env: { MICRO_BATCH_SIZE: '1' }, requests: 'batch' },
  { name: 'MICRO_BATCH_SIZE=16', env: { MICRO_BATCH_SIZE: '16' }, requests: 'batch' },
  { name: 'MICRO_BATCH_SIZE=256', env: { MICRO_BATCH_SIZE: '256' }, requests: 'batch' },
  { name: 'WORKER_CONCURRENCY=1', env: { WORKER_CONCURRENCY: '1' }, requests: 'batch' },
  { name: 'MICRO_BATCH_WAIT_MS=0', env: { MICRO_BATCH_WAIT_MS: '0' }, requests: 'batch' },
  {
    name: SPINNING,
    env: { EMBEDDING_THREAD_SPINNING: 'true', EMBEDDING_THREADS: '0' },
    requests: 'batch',
  },
  { name: ONE_MODEL, env: { EMBEDDING_THREADS: '0' }, requests: 'batch' },
  { name: DEFAULTS, env: {}, requests: 'single' },
  { name: 'MICRO_BATCH_SIZE=1', env: { MICRO_BATCH_SIZE: '1' }, requests: 'single' },
  { name: 'MICRO_BATCH_WAIT_MS=0', env: { MICRO_BATCH_WAIT_MS: '0' }, requests: 'single' },
  { name: WITHOUT_INDEX, env: {}, requests: 'batch', withoutIndex: true, closing: true },
  { name: SPLIT_CORES, env: {}, requests: 'batch', splitCores: true, closing: true },
  // Last: they leave the table full.
  { name: PRELOADED, env: {}, requests: 'batch', preloaded: true },
  { name: CHEAPER_GRAPH, env: {}, requests: 'batch', graph: CHEAPER, closing: true },
];

/** Rows each contended run's writer has for itself (`contended`), per memory of a run. */
const CONTENDED_WRITES_PER_MEMORY = 4;

/**
 * Texts that no run of the section has sent before, handed out in order: each run (warm-ups too)
 * writes memories the table does not hold yet, as a service receives them. A graph insert of a
 * vector the graph already holds costs about half of a new one's (PostgreSQL's CPU per row, 64-row
 * upserts into a graph of 100,000 memories: 1.1-1.5 ms against 2.1-2.4 ms), and the runs once sent
 * the same texts again each time. Real changelog entries and, past them, halves of two spliced
 * (`variationTexts`), in a seeded shuffle so that every run gets the same mix.
 */
export class FreshTexts {
  private taken = 0;
  private readonly texts: string[];

  constructor(pool: string[], capacity: number) {
    const texts = variationTexts(pool, capacity);
    const random = seededRandom(0x1d872b41);
    for (let i = texts.length - 1; i > 0; i -= 1) {
      const j = Math.floor(random() * (i + 1));
      [texts[i], texts[j]] = [texts[j]!, texts[i]!];
    }
    this.texts = texts;
  }

  take(n: number): string[] {
    if (this.taken + n > this.texts.length) {
      throw new Error(`ingestion: ${n} more fresh texts asked, ${this.texts.length - this.taken} left`);
    }
    this.taken += n;
    return this.texts.slice(this.taken - n, this.taken);
  }

  /** Mean characters of the texts handed out so far. */
  meanChars(): number {
    return meanLength(this.texts.slice(0, this.taken));
  }
}

export async function runIngestion(ctx: BenchContext): Promise<IngestionResults> {
  const { options, corpus, progress } = ctx;
  const o = options.ingestion;
  const variants = ALL_VARIANTS.filter(
    (v) => (options.mode === 'full' || QUICK_VARIANTS.has(v.name)) && (!v.splitCores || cpus().length >= 2),
  );
  const runsOf = (v: Variant) => (v.closing ? (o.closingRuns ?? o.variantRuns) : o.variantRuns);
  const fresh = new FreshTexts(
    textsFrom(corpus, CorpusOffsets.single - CorpusOffsets.ingestion, CorpusOffsets.ingestion),
    // The defaults on PostgreSQL and on Chroma, the variants, enqueue only, writes only, contended,
    // and the load with single stores beside it.
    2 * (WARM_UP_RUNS + options.runs) * o.memories +
      variants.reduce(
        (n, v) => n + (WARM_UP_RUNS + runsOf(v)) * (v.requests === 'single' ? o.singleMemories : o.memories),
        0,
      ) +
      2 * o.memories +
      options.runs * CONTENDED_WRITES_PER_MEMORY * o.memories +
      (o.duringBulk ? o.duringBulk.memories + o.duringBulk.maxSingles : 0),
  );
  // For the raw model's own speed (embedding only, nothing written): the same texts each time.
  const texts = textsFrom(corpus, o.memories, CorpusOffsets.ingestion);
  // The raw yardstick runs as the worker's defaults do: calls of one micro-batch, model batches of
  // EMBEDDING_BATCH_SIZE, shared out among EMBEDDING_THREADS model threads.
  const embedder = await openWorkerEmbedder();
  await embedder.embed(texts.slice(0, 16));
  const rawRate = async (items: string[], model = embedder) => {
    const t0 = nowMs();
    for (let i = 0; i < items.length; i += DEFAULT_MICRO_BATCH) {
      await model.embed(items.slice(i, i + DEFAULT_MICRO_BATCH));
    }
    return (items.length / (nowMs() - t0)) * 1000;
  };
  const schema = uniqueName('bench_ingest').toLowerCase();
  const pool = new Pool({ connectionString: servers.databaseUrl, max: 2 });
  await pool.query(`CREATE SCHEMA ${schema}`);
  const pgRows = async (session: string) =>
    Number(
      (
        await pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${schema}.memories WHERE session_id = $1`,
          [session],
        )
      ).rows[0]?.n ?? 0,
    );
  const runs: IngestRun[] = [];
  let tag = 0;
  /** Each stack's job completions, listened to from its first run on (see `IngestJobEvents`). */
  const jobEvents = new Map<BenchStack, IngestJobEvents>();
  const eventsOf = async (stack: BenchStack) => {
    let events = jobEvents.get(stack);
    if (!events) {
      events = await IngestJobEvents.open(stack.queuePrefix);
      jobEvents.set(stack, events);
    }
    return events;
  };
  const stopListening = async (stack: BenchStack) => {
    await jobEvents.get(stack)?.close();
    jobEvents.delete(stack);
  };
  /** While the SPLIT_CORES variant runs: its raw pipeline, loaded on core 0 as the worker's model is. */
  let coreZero: Embedder | undefined;

  const ingest = async (stack: BenchStack, backend: IngestRun['backend'], variant: Variant) => {
    const items = fresh.take(variant.requests === 'single' ? o.singleMemories : o.memories);
    tag += 1;
    const session = `ingest-${tag}`;
    const events = await eventsOf(stack);
    if (variant.splitCores) pinToCpus([process.pid], '0');
    const rawStart = cpuSnapshot(stack.pids());
    const raw = await rawRate(items, variant.splitCores ? coreZero : embedder);
    const rawEnd = cpuSnapshot(stack.pids());
    if (variant.splitCores) pinToCpus([process.pid], '1');
    const before = {
      embed: await stack.metric('worker', 'embedding_duration_seconds_sum'),
      calls: await stack.metric('worker', 'embedding_batch_size_count'),
      texts: await stack.metric('worker', 'embedding_batch_size_sum'),
    };
    const chromaBefore = backend === 'chroma' ? await chromaCount(stack.collection) : 0;
    const cpuStart = cpuSnapshot(stack.pids());
    const start = nowMs();
    let enqueueMs: number;
    const jobIds: string[] = [];
    if (variant.requests === 'batch') {
      const requests = chunks(items, o.requestSize);
      await runConcurrent(requests.length, o.clients, async (i) => {
        jobIds.push(await queueBatch(stack, requests[i]!, session));
      });
    } else {
      await runConcurrent(items.length, o.singleClients, async (i) => {
        const queued = await postJson<{ job_id: string }>(`${stack.gatewayUrl}/api/memory/store`, {
          content: items[i],
          session_id: session,
        });
        jobIds.push(queued.job_id);
      });
    }
    enqueueMs = nowMs() - start;
    const stored = async () =>
      backend === 'postgres' ? pgRows(session) : (await chromaCount(stack.collection)) - chromaBefore;
    try {
      await events.waitFor(jobIds, Date.now() + 600_000);
    } catch (error) {
      const n = await stored();
      throw new Error(
        `ingestion stalled at ${n} of ${items.length} rows (${variant.name}): ${(error as Error).message}`,
      );
    }
    const wallMs = nowMs() - start;
    const cpuEnd = cpuSnapshot(stack.pids());
    // Counted once the run is over, so that counting takes nothing from it.
    const rows = await stored();
    if (rows !== items.length) {
      throw new Error(
        `${rows} rows in the store for ${items.length} memories, every job completed (${variant.name})`,
      );
    }
    enqueueMs = Math.min(enqueueMs, wallMs);
    const embedS = (await stack.metric('worker', 'embedding_duration_seconds_sum')) - before.embed;
    const calls = (await stack.metric('worker', 'embedding_batch_size_count')) - before.calls;
    const embedded = (await stack.metric('worker', 'embedding_batch_size_sum')) - before.texts;
    const e2eRate = (items.length / wallMs) * 1000;
    const run: IngestRun = {
      backend,
      variant: variant.name,
      requests: variant.requests,
      memories: items.length,
      stored: rows,
      e2eRate,
      rawRate: raw,
      ratio: e2eRate / raw,
      enqueueMs,
      wallMs,
      workerEmbedMs: embedS * 1000,
      modelCalls: calls,
      meanBatch: calls ? embedded / calls : 0,
      cpu:
        rawStart && rawEnd && cpuStart && cpuEnd
          ? { raw: cpuSince(rawStart, rawEnd), e2e: cpuSince(cpuStart, cpuEnd) }
          : undefined,
    };
    runs.push(run);
    progress(
      `ingestion ${backend} ${variant.name} (${variant.requests}): ${e2eRate.toFixed(0)}/s vs raw ${raw.toFixed(0)}/s = ${run.ratio.toFixed(2)}`,
    );
    return run;
  };

  /**
   * An app's single stores while an operator's bulk load is ingested: the load's requests as the
   * defaults' runs send them, and meanwhile single stores with `wait=true`, one after another, from
   * the load's first queued request until its last job completed. The worker takes smaller jobs
   * first (`storeJobPriority`): each single store waits for the micro-batch being embedded, not for
   * the load queued before it.
   */
  const storesDuringBulk = async (
    stack: BenchStack,
    d: NonNullable<typeof o.duringBulk>,
  ): Promise<StoresDuringBulk> => {
    const load = fresh.take(d.memories);
    tag += 1;
    const session = `bulk-${tag}`;
    const singleSession = `${session}-single`;
    const events = await eventsOf(stack);
    const requests = chunks(load, o.requestSize);
    const posted = new Map<string, number>();
    let firstQueued!: () => void;
    const started = new Promise<void>((resolve) => (firstQueued = resolve));
    let loading = true;
    const tableMemories = Number(
      (await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.memories`)).rows[0]?.n ?? 0,
    );
    const start = nowMs();
    const loaded = runConcurrent(requests.length, o.clients, async (i) => {
      const sent = nowMs();
      posted.set(await queueBatch(stack, requests[i]!, session), sent);
      firstQueued();
    })
      .then(() => events.waitFor([...posted.keys()], Date.now() + 600_000))
      .finally(() => (loading = false));
    await started;
    const singles: number[] = [];
    const singleJobs: string[] = [];
    const answers: Record<string, number> = {};
    while (loading && singles.length < d.maxSingles) {
      const t0 = nowMs();
      const answer = await postJson<{ job_id: string; status: string }>(
        `${stack.gatewayUrl}/api/memory/store?wait=true`,
        { content: fresh.take(1)[0], session_id: singleSession },
        {},
        [201, 202],
      );
      singles.push(nowMs() - t0);
      singleJobs.push(answer.job_id);
      answers[answer.status] = (answers[answer.status] ?? 0) + 1;
      await sleep(d.gapMs);
    }
    await loaded;
    const loadMs = nowMs() - start;
    await events.waitFor(singleJobs, Date.now() + 600_000);
    const stored =
      (await pgRows(session)) === load.length && (await pgRows(singleSession)) === singleJobs.length;
    progress(
      `ingestion: ${singles.length} single stores during a load of ${load.length}: p50 ${median(singles).toFixed(0)} ms`,
    );
    return {
      memories: load.length,
      tableMemories,
      loadMs,
      loadJobs: summarize([...posted].map(([id, sent]) => events.completedAt(id)! - sent)),
      singles: summarize(singles),
      answers,
      gapMs: d.gapMs,
      stored,
    };
  };

  const warmUps: IngestRun[] = [];
  /**
   * Each worker first ingests the run's memories `WARM_UP_RUNS` times, unmeasured (kept apart in
   * `warmUps`): the runs measure a worker in the steady state a long-running one is in, as the raw
   * pipeline they are compared with is. A worker just started compiles its hot paths and allocates
   * as it meets new input shapes; a warm-up of one request left the defaults' first measured run
   * the slowest of 5 in the run of 2026-12-06 04:35 UTC (0.56, then 0.71-0.85).
   */
  const warmUp = async (stack: BenchStack, backend: IngestRun['backend'], variant: Variant) => {
    for (let r = 0; r < WARM_UP_RUNS; r += 1) {
      await ingest(stack, backend, variant);
      warmUps.push(runs.pop()!);
    }
  };

  const results: Partial<IngestionResults> = {
    memories: o.memories,
    freshTexts: true,
    emptyTablePerVariant: true,
    warmUps,
    requestSize: o.requestSize,
    clients: o.clients,
    runs,
  };
  const defaults: Variant = { name: DEFAULTS, env: {}, requests: 'batch' };
  const pgStack = createBenchStack({ backend: 'postgres', schema });
  try {
    progress('ingestion: starting the PostgreSQL stack');
    await pgStack.start();
    await warmUp(pgStack, 'postgres', defaults);
    for (let r = 0; r < options.runs; r += 1) await ingest(pgStack, 'postgres', defaults);
    const rss: Record<string, Rss | undefined> = {
      'api-gateway': pgStack.services.gateway.rss(),
      'embedding-worker': pgStack.services.worker.rss(),
    };
    if (o.duringBulk) {
      progress('ingestion: single stores during a bulk load');
      results.duringBulk = await storesDuringBulk(pgStack, o.duringBulk);
    }

    // The gateway's share: enqueue with the worker stopped, then let the worker drain it.
    progress('ingestion: enqueue only (worker stopped)');
    await pgStack.services.worker.stop();
    tag += 1;
    const enqueueSession = `ingest-${tag}`;
    const queued = fresh.take(o.memories);
    const t0 = nowMs();
    const requests = chunks(queued, o.requestSize);
    await runConcurrent(requests.length, o.clients, (i) =>
      postJson(`${pgStack.gatewayUrl}/api/memory/store/batch`, {
        memories: requests[i]!.map((content) => ({ content, session_id: enqueueSession })),
      }),
    );
    const enqueueMs = nowMs() - t0;
    results.enqueueOnly = { memories: queued.length, ms: enqueueMs, perMemoryMs: enqueueMs / queued.length };
    await pgStack.services.worker.start();
    while ((await pgRows(enqueueSession)) < queued.length) await sleep(50);

    // Writes alone, through the adapter, as the worker writes (batches of 64).
    progress('ingestion: writes only');
    const store = new PgvectorMemoryStore(
      { connectionString: servers.databaseUrl, schema, poolSize: 2 },
      ctx.logger,
    );
    /** `n` fresh memories of `session`, embedded here before anything is timed. */
    const freshRecords = async (n: number, session: string): Promise<MemoryRecord[]> => {
      const contents = fresh.take(n);
      const vectors = await embedder.embed(contents);
      const now = new Date().toISOString();
      return contents.map((content, i) => ({
        id: randomUUID(),
        user_id: '1',
        session_id: session,
        session_type: null,
        project: null,
        content,
        content_type: 'note',
        metadata: {},
        content_hash: contentHash(content),
        embedding: vectors[i]!,
        embedding_model: embedder.info.model,
        created_at: now,
        updated_at: now,
      }));
    };
    const records = await freshRecords(o.memories, 'writes-only');
    const w0 = nowMs();
    for (let i = 0; i < records.length; i += 64) await store.upsert(records.slice(i, i + 64));
    const writeMs = nowMs() - w0;
    results.writesOnly = { memories: records.length, ms: writeMs, rate: (records.length / writeMs) * 1000 };

    // The model with and without PostgreSQL writing at the same time (fresh memories, embedded before
    // the run): how much of the model's speed the writes take on this machine.
    progress('ingestion: raw model alone and beside writes');
    const contended: IngestionResults['contended'] = [];
    for (let r = 0; r < options.runs; r += 1) {
      const writes = await freshRecords(CONTENDED_WRITES_PER_MEMORY * o.memories, `contended-${r}`);
      const alone = await rawRate(texts);
      let writing = true;
      let written = 0;
      const writer = (async () => {
        for (let k = 0; writing; k += 64) {
          // Past the run's own memories (the writes outran the model several times over), the same
          // ones again in a new session, so that no write is skipped as a duplicate.
          const session = `contended-${r}-${Math.floor(k / writes.length)}`;
          const i = k % writes.length;
          const batch = writes
            .slice(i, i + 64)
            .map((rec) => (k < writes.length ? rec : { ...rec, id: randomUUID(), session_id: session }));
          await store.upsert(batch);
          written += batch.length;
        }
      })();
      const t0 = nowMs();
      const beside = await rawRate(texts);
      const elapsed = nowMs() - t0;
      writing = false;
      await writer;
      contended.push({ alone, besideWrites: beside, writesPerS: (written / elapsed) * 1000 });
    }
    results.contended = contended;

    const allCpus = `0-${cpus().length - 1}`;
    // The adapter drops and rebuilds the index for the variant without it, as a bulk migration does.
    try {
      for (const variant of variants) {
        progress(`ingestion: worker with ${variant.name}`);
        await pgStack.restartWorker(variant.env, variant.splitCores ? '0' : undefined);
        // Every variant writes into a table of the same size as the defaults did: empty, then its
        // warm-ups' and runs' memories. A graph costs more to insert into as it grows, so variants
        // run one after another on one growing table would each pay for the ones before.
        if (!variant.graph) await pool.query(`TRUNCATE ${schema}.memories`);
        if (variant.withoutIndex) await store.dropVectorIndex();
        if (variant.preloaded) results.preloaded = await preload(ctx, store, schema);
        if (variant.graph) results.cheaperGraph = await rebuildGraph(ctx, schema, variant.graph);
        const others = () => [...serverPids(), pgStack.services.gateway.pid!, pgStack.services.search.pid!];
        if (variant.splitCores) {
          // ONNX runtime pins its own threads at load, past taskset's mask: pin every thread again.
          pinToCpus([pgStack.services.worker.pid!], '0');
          pinToCpus(others(), '1');
          pinToCpus([process.pid], '0');
          // One core: one model thread, as the worker pinned there defaults to.
          coreZero = await openWorkerEmbedder({ threads: 1 });
        }
        try {
          await warmUp(pgStack, 'postgres', variant);
          for (let r = 0; r < runsOf(variant); r += 1) await ingest(pgStack, 'postgres', variant);
        } finally {
          if (variant.withoutIndex) await store.buildVectorIndex();
          if (variant.graph) await rebuildGraph(ctx, schema);
          if (variant.splitCores) {
            pinToCpus([...others(), process.pid], allCpus);
            await coreZero?.close();
            coreZero = undefined;
          }
        }
      }
    } finally {
      await store.close();
    }
    rss['search-service'] = pgStack.services.search.rss();
    results.rss = { postgres: rss };
  } finally {
    await stopListening(pgStack);
    await pgStack.stop();
  }

  if (o.chroma) {
    const chromaStack = createBenchStack({ backend: 'chroma' });
    try {
      progress('ingestion: starting the Chroma stack');
      await chromaStack.start();
      await warmUp(chromaStack, 'chroma', defaults);
      for (let r = 0; r < options.runs; r += 1) await ingest(chromaStack, 'chroma', defaults);
      results.rss!.chroma = {
        'api-gateway': chromaStack.services.gateway.rss(),
        'embedding-worker': chromaStack.services.worker.rss(),
        'search-service': chromaStack.services.search.rss(),
      };
    } finally {
      await stopListening(chromaStack);
      await chromaStack.stop();
      await dropChromaCollection(chromaStack.collection);
    }
  }
  results.meanChars = fresh.meanChars();
  await embedder.close();
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
  return results as IngestionResults;
}

/**
 * Fills the ingestion table with the search data set's first `ingestion.preload` memories (its own
 * users and sessions), as a bulk load does: index dropped, rows written straight, index built.
 */
async function preload(
  ctx: BenchContext,
  store: PgvectorMemoryStore,
  schema: string,
): Promise<NonNullable<IngestionResults['preloaded']>> {
  const { options, progress } = ctx;
  const memories = options.ingestion.preload;
  const dataset = await searchDataset(ctx, memories);
  progress(`ingestion: loading ${memories} memories before the last variant`);
  const db = BenchSchema.open(schema);
  try {
    await store.dropVectorIndex();
    const t0 = nowMs();
    await db.load(dataset, 0, memories, options.search.loadChunk);
    const loadMs = nowMs() - t0;
    const t1 = nowMs();
    await store.buildVectorIndex();
    const buildMs = nowMs() - t1;
    // The users' own graphs, as an install holding these memories has them: the worker, starting
    // on this table, then finds them built rather than building them during the measurement.
    const t2 = nowMs();
    const graphs = (await store.maintainTenantIndexes(DEFAULT_TENANT_INDEX_POLICY)).built.length;
    const graphsMs = nowMs() - t2;
    const held = await db.count('user_id LIKE $1', ['bench-u%']);
    if (held !== memories) throw new Error(`preload wrote ${held} of ${memories} memories`);
    return { memories, loadMs, buildMs, graphs, graphsMs };
  } finally {
    await db.close();
  }
}

/** Rebuilds the table's shared graph with `graph`'s settings, or the store's without one. */
async function rebuildGraph(
  ctx: BenchContext,
  schema: string,
  graph?: GraphSetting,
): Promise<NonNullable<IngestionResults['cheaperGraph']>> {
  const { options, progress } = ctx;
  const setting = graph ?? shippedGraph();
  const db = BenchSchema.open(schema);
  try {
    progress(
      `ingestion: rebuilding the graph with m=${setting.m}, ef_construction=${setting.efConstruction}`,
    );
    await db.dropHnsw();
    const built = await db.buildHnsw(options.search.hnsw, options.search.hnswBuildTimeoutMs, setting);
    if (!built.completed) throw new Error('ingestion: the HNSW build did not finish in time');
    return { graph: setting, memories: await db.count(), buildMs: built.ms };
  } finally {
    await db.close();
  }
}

/** Queues `contents` as one batch request of `session`, as the runs send them; resolves with its job id. */
async function queueBatch(stack: BenchStack, contents: string[], session: string): Promise<string> {
  const queued = await postJson<{ job_id: string }>(`${stack.gatewayUrl}/api/memory/store/batch`, {
    memories: contents.map((content) => ({ content, session_id: session, content_type: 'note' })),
  });
  return queued.job_id;
}

async function dropChromaCollection(name: string): Promise<void> {
  const url = new URL(servers.chromaUrl);
  const client = new ChromaClient({ host: url.hostname, port: Number(url.port || 80), ssl: false });
  await client.deleteCollection({ name }).catch(() => undefined);
}

/** Median ratio and rate of the runs of one variant. */
export function summarizeRuns(runs: IngestRun[]) {
  return {
    e2eRate: median(runs.map((r) => r.e2eRate)),
    rawRate: median(runs.map((r) => r.rawRate)),
    ratio: median(runs.map((r) => r.ratio)),
    minRatio: Math.min(...runs.map((r) => r.ratio)),
    maxRatio: Math.max(...runs.map((r) => r.ratio)),
    /** Runs at or above the ingestion goal (0.90 of the raw rate). */
    atGoal: runs.filter((r) => r.ratio >= 0.9).length,
    meanBatch: median(runs.map((r) => r.meanBatch)),
    workerEmbedShare: median(runs.map((r) => r.workerEmbedMs / r.wallMs)),
    enqueueMs: median(runs.map((r) => r.enqueueMs)),
    wallMs: median(runs.map((r) => r.wallMs)),
    n: runs.length,
  };
}

/**
 * CPU per memory (ms, median of the runs that measured it) by process, for the raw pipeline and end
 * to end, with the cores kept busy on average (busy CPU time / wall time).
 */
export function cpuPerMemory(runs: IngestRun[]) {
  const measured = runs.filter((r) => r.cpu);
  if (measured.length === 0) return undefined;
  const per = (pick: (r: IngestRun) => CpuSpent) => ({
    ms: Object.fromEntries(
      CPU_GROUPS.map((g) => [g, median(measured.map((r) => pick(r).ms[g] / r.memories))]),
    ) as Record<CpuGroup, number>,
    busyMs: median(measured.map((r) => pick(r).busyMs / r.memories)),
    coresBusy: median(measured.map((r) => pick(r).busyMs / pick(r).wallMs)),
  });
  return { raw: per((r) => r.cpu!.raw), e2e: per((r) => r.cpu!.e2e), n: measured.length };
}
