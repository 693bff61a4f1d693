import type { Logger } from 'memory-core';
import type { Corpus } from './corpus';
import type { GraphSetting } from './dataset';

export type Mode = 'quick' | 'full';

export interface BenchOptions {
  mode: Mode;
  /** Repetitions of each timed measurement; medians are reported. */
  runs: number;
  embedding: {
    q8Texts: number;
    fp32Texts: number;
    batchSizes: number[];
    /** Texts per embed call in the sub-batching table (the worker's micro-batch). */
    callSize: number;
    subBatchSizes: number[];
    /** EMBEDDING_THREADS settings side by side (calls of `callSize`, the default model batch). */
    threads: number[];
  };
  ingestion: {
    memories: number;
    requestSize: number;
    clients: number;
    singleMemories: number;
    singleClients: number;
    variantRuns: number;
    /**
     * Runs of the variants that say what would close the ingestion goal (the model on a core of its
     * own, no HNSW index): their ratios sit near 0.90, where two runs on a noisy machine settle nothing.
     */
    closingRuns?: number;
    chroma: boolean;
    /** Memories of the search data set in the table before the last variant (PRELOADED). */
    preload: number;
    /**
     * Single stores (`wait=true`), one after another `gapMs` apart (at most `maxSingles`), while a
     * bulk load of `memories` in the defaults' requests is ingested. Absent: not measured.
     */
    duringBulk?: { memories: number; maxSingles: number; gapMs: number };
  };
  single: { requests: number };
  search: {
    sizes: number[];
    /** Corpus texts the search set is made of (then variations of two of them). */
    baseTexts: number;
    queries: number;
    /** Queries, in one run, of the engines that read rows by the thousand per query (exact; Chroma with a filter) above `fewQueriesAbove`. */
    exactQueriesLarge: number;
    /** The size above which those engines run `exactQueriesLarge` queries once. */
    fewQueriesAbove: number;
    concurrency: number;
    chromaMaxSize: number;
    efSweep: number[];
    /** Overfetch factors swept at the largest size (user filter, default ef_search). */
    overfetchSweep: number[];
    /**
     * At the largest size, when the queried user has this many memories: users' own graphs are built
     * (`maintainTenantIndexes`, the worker's policy with this minimum) and searched after the shared one.
     */
    tenantMinMemories: number;
    /** `HNSW_TENANT_EF_SEARCH` values swept in the user's own graph. */
    tenantEfSweep: number[];
    hnsw: { maintenanceWorkMem: string; parallelWorkers: number };
    hnswBuildTimeoutMs: number;
    loadChunk: number;
  };
  /**
   * HNSW settings against each other at one size: build, recall@10 and the write cost of each graph
   * (`settings` besides the store's own), and the write cost without a graph. `pools`: in the
   * store's graph, search services with each DATABASE_POOL_SIZE, `inFlight` requests at once,
   * `rounds` passes of the queries each.
   */
  graph: {
    size: number;
    writeRows: number;
    settings: GraphSetting[];
    pools: { sizes: number[]; inFlight: number; rounds: number };
  };
  /**
   * Users holding `shares` of a table of `size` memories (plus the search layout's reference user),
   * searched exactly, in the shared graph, and in graphs of their own built with `minMemories`; then
   * `writeRows` memories written per user and run, with and without a graph of the user's own.
   * `exactScanThreshold`: the store's, unless set (the quick mode's tiny users).
   */
  tenants: {
    size: number;
    shares: number[];
    minMemories: number;
    writeRows: number;
    exactScanThreshold?: number;
    /**
     * A table of `size` memories with more and more users' graphs on it, `counts` of them in all at
     * each step: `writeRows` memories in batches and `singleWrites` one by one, at each step.
     */
    manyGraphs: { size: number; counts: number[]; writeRows: number; singleWrites: number };
  };
  /** The first batch size is the engine's default (the goal's figure); the others are for tuning. */
  migration: { records: number; batchSizes: number[] };
  /** Where BENCHMARKS.md and the JSON results go. */
  output: { markdown: string; json: string };
  /** Sections to run (all by default). */
  sections: SectionName[];
}

export const SECTIONS = [
  'embedding',
  'ingestion',
  'single',
  'search',
  'graph',
  'tenants',
  'migration',
] as const;
export type SectionName = (typeof SECTIONS)[number];

export interface BenchContext {
  options: BenchOptions;
  logger: Logger;
  corpus: Corpus;
  /** Progress on stderr; never part of the report. */
  progress: (message: string) => void;
  /** Saves a section's results so far (long sections save after each step). */
  saveProgress?: (section: SectionName, value: unknown) => void;
}

/** Where each part of the corpus is taken from, so sections never share texts. */
export const CorpusOffsets = {
  embedding: 0,
  ingestion: 2_000,
  single: 30_000,
  searchBase: 32_000,
  queries: 60_000,
} as const;
