import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { availableParallelism } from 'node:os';
import { createLogger, DEFAULT_TENANT_INDEX_POLICY } from 'memory-core';
import { loadCorpus } from './lib/corpus';
import {
  CorpusOffsets,
  SECTIONS,
  type BenchContext,
  type BenchOptions,
  type Mode,
  type SectionName,
} from './lib/context';
import { environment, loadAverage } from './lib/environment';
import { repoRoot } from './lib/paths';
import { DEFAULT_POOL_SIZE } from './lib/stack';
import { renderReport, type BenchResults } from './report';
import { runEmbedding } from './sections/embedding';
import { runGraph } from './sections/graph';
import { runIngestion } from './sections/ingestion';
import { runMigration } from './sections/migration';
import { runSearch } from './sections/search';
import { runSingleStore } from './sections/single-store';
import { runTenants } from './sections/tenants';

export function defaultOptions(mode: Mode): BenchOptions {
  const full = mode === 'full';
  return {
    mode,
    runs: full ? 3 : 1,
    embedding: {
      q8Texts: full ? 512 : 64,
      fp32Texts: full ? 256 : 32,
      batchSizes: full ? [1, 8, 16, 32, 64, 128, 256] : [1, 16, 64],
      callSize: 64,
      subBatchSizes: full ? [4, 8, 16, 32, 64] : [8, 64],
      // ONNX runtime's threads in one model, one model thread, one model thread per core.
      threads: [...new Set([0, 1, availableParallelism()])],
    },
    ingestion: {
      memories: full ? 2_000 : 200,
      requestSize: 100,
      clients: 4,
      singleMemories: full ? 500 : 50,
      singleClients: 32,
      variantRuns: full ? 2 : 1,
      closingRuns: full ? 9 : 1,
      chroma: true,
      preload: full ? 100_000 : 1_000,
      duringBulk: { memories: full ? 4_000 : 200, maxSingles: full ? 200 : 20, gapMs: 100 },
    },
    single: { requests: full ? 200 : 20 },
    search: {
      sizes: full ? [10_000, 100_000, 1_000_000] : [2_000],
      baseTexts: full ? CorpusOffsets.queries - CorpusOffsets.searchBase : 300,
      queries: full ? 200 : 20,
      exactQueriesLarge: 50,
      fewQueriesAbove: 100_000,
      concurrency: 4,
      chromaMaxSize: full ? 1_000_000 : 2_000,
      efSweep: full ? [100, 200, 400, 800] : [40, 100],
      overfetchSweep: full ? [1, 2, 4] : [1, 2],
      tenantMinMemories: full ? DEFAULT_TENANT_INDEX_POLICY.minMemories : 100,
      tenantEfSweep: full ? [50, 100, 200, 400] : [40, 100],
      hnsw: { maintenanceWorkMem: '4GB', parallelWorkers: 2 },
      hnswBuildTimeoutMs: 40 * 60_000,
      loadChunk: 10_000,
    },
    graph: {
      size: full ? 100_000 : 2_000,
      writeRows: full ? 2_000 : 320,
      settings: full
        ? [
            { m: 16, efConstruction: 32 },
            { m: 12, efConstruction: 64 },
            { m: 8, efConstruction: 64 },
          ]
        : [{ m: 8, efConstruction: 64 }],
      // 1, 2, 10 (pg's own default, the services' until DATABASE_POOL_SIZE) and the services' default.
      pools: {
        sizes: full
          ? [...new Set([1, 2, DEFAULT_POOL_SIZE, 10])].sort((a, b) => a - b)
          : [1, DEFAULT_POOL_SIZE],
        inFlight: full ? 8 : 4,
        rounds: full ? 5 : 1,
      },
    },
    tenants: {
      size: full ? 1_000_000 : 2_000,
      shares: [0.002, 0.004, 0.006, 0.01, 0.02, 0.04],
      minMemories: full ? DEFAULT_TENANT_INDEX_POLICY.minMemories : 10,
      writeRows: full ? 1_024 : 128,
      ...(full ? {} : { exactScanThreshold: 10 }),
      manyGraphs: {
        size: full ? 10_000 : 1_000,
        counts: full ? [1, 10, 100, 300, 1_000] : [1, 4],
        writeRows: full ? 320 : 128,
        singleWrites: full ? 100 : 10,
      },
    },
    migration: { records: full ? 100_000 : 500, batchSizes: full ? [500, 2_000] : [500] },
    output: {
      markdown: path.join(repoRoot, full ? 'BENCHMARKS.md' : 'bench/results/BENCHMARKS.quick.md'),
      json: path.join(repoRoot, `bench/results/${mode}.json`),
    },
    sections: [...SECTIONS],
  };
}

/**
 * `--quick` or `--full` (default), `--sections a,b`, `--sizes 10000,100000`, `--runs N`,
 * `--chroma-max N`, `--base-texts N` (corpus texts the search set is made of), `--out FILE.md`, `--reuse RESULTS.json` (keep the other sections' results),
 * `--render RESULTS.json` (only write the report of saved results).
 */
export function parseArgs(argv: string[]): BenchOptions {
  const mode: Mode = argv.includes('--quick') ? 'quick' : 'full';
  const options = defaultOptions(mode);
  const value = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const sections = value('--sections');
  if (sections) {
    const names = sections.split(',') as SectionName[];
    for (const n of names)
      if (!SECTIONS.includes(n)) throw new Error(`unknown section "${n}" (${SECTIONS.join(', ')})`);
    options.sections = names;
  }
  const sizes = value('--sizes');
  if (sizes) options.search.sizes = sizes.split(',').map(Number);
  const baseTexts = value('--base-texts');
  if (baseTexts) options.search.baseTexts = Number(baseTexts);
  const chromaMax = value('--chroma-max');
  if (chromaMax) options.search.chromaMaxSize = Number(chromaMax);
  const runs = value('--runs');
  if (runs) options.runs = Number(runs);
  const out = value('--out');
  if (out) {
    options.output.markdown = path.resolve(out);
    options.output.json = path.resolve(out.replace(/\.md$/, '') + '.json');
  }
  return options;
}

/**
 * Runs the selected sections and writes the report; returns the results. With `previous`, the
 * sections not selected keep their results from an earlier run (e.g. one section re-run at a quieter
 * time); the report then says which sections came from which run.
 */
export async function runBench(
  options: BenchOptions,
  quiet = false,
  previous?: BenchResults,
): Promise<BenchResults> {
  const started = Date.now();
  const progress = (message: string) => {
    if (!quiet) process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(0)}s] ${message}\n`);
  };
  const ctx: BenchContext = {
    options,
    logger: createLogger({ service: 'bench', level: 'warn' }),
    corpus: loadCorpus(),
    progress,
  };
  const results: BenchResults = {
    options,
    environment: await environment(),
    corpus: { source: ctx.corpus.source, texts: ctx.corpus.texts.length },
  };
  if (previous) {
    const kept = SECTIONS.filter((name) => !options.sections.includes(name) && previous[name] !== undefined);
    for (const name of kept) Object.assign(results, { [name]: previous[name] });
    // Sections the previous report had kept from still earlier runs stay attributed to those.
    const earlier = (previous.merged ?? [])
      .map((m) => ({ ...m, sections: m.sections.filter((name) => kept.includes(name as SectionName)) }))
      .filter((m) => m.sections.length > 0);
    const own = kept.filter((name) => !earlier.some((m) => m.sections.includes(name)));
    results.merged = [
      ...earlier,
      ...(own.length
        ? [
            {
              from: previous.environment,
              sections: own,
              durationS: previous.durationS,
              runs: previous.options.runs,
            },
          ]
        : []),
    ];
  }

  progress(
    `mode ${options.mode}; load ${results.environment.loadAtStart.join(' ')}; corpus ${ctx.corpus.texts.length} texts`,
  );
  const save = () => {
    mkdirSync(path.dirname(options.output.json), { recursive: true });
    writeFileSync(options.output.json, JSON.stringify(results, null, 2));
  };
  ctx.saveProgress = (section, value) => {
    Object.assign(results, { [section]: value });
    save();
  };
  if (options.sections.includes('embedding')) results.embedding = await runEmbedding(ctx);
  save();
  if (options.sections.includes('ingestion')) results.ingestion = await runIngestion(ctx);
  save();
  if (options.sections.includes('single')) results.single = await runSingleStore(ctx);
  save();
  if (options.sections.includes('search')) results.search = await runSearch(ctx);
  save();
  if (options.sections.includes('graph')) results.graph = await runGraph(ctx);
  save();
  if (options.sections.includes('tenants')) results.tenants = await runTenants(ctx);
  save();
  if (options.sections.includes('migration')) results.migration = await runMigration(ctx);
  results.environment.loadAtEnd = loadAverage();
  results.durationS = (Date.now() - started) / 1000;
  save();
  await writeReport(results, options.output.markdown);
  progress(
    `wrote ${path.relative(process.cwd(), options.output.markdown)} in ${results.durationS.toFixed(0)} s`,
  );
  return results;
}

/**
 * The report, formatted as the repository's Prettier settings want it (`npm run lint` checks it).
 * Prettier runs as its CLI: its API loads ES modules, which jest's CommonJS runtime cannot.
 */
async function writeReport(results: BenchResults, target: string): Promise<void> {
  const markdown = renderReport(results);
  const formatted = execFileSync(
    process.execPath,
    [path.join(repoRoot, 'node_modules/prettier/bin/prettier.cjs'), '--stdin-filepath', 'BENCHMARKS.md'],
    { cwd: repoRoot, input: markdown, encoding: 'utf8' },
  );
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, formatted);
}

/** Writes the report of saved results again (after a change to the report's wording). */
export async function renderSaved(jsonPath: string, markdownPath?: string): Promise<string> {
  const results = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchResults;
  const target = markdownPath ?? results.options.output.markdown;
  await writeReport(results, target);
  return target;
}

function exitWhenDone(work: Promise<unknown>): void {
  work.then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const value = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
  const render = value('--render');
  const reuse = value('--reuse');
  const out = value('--out');
  if (render) {
    exitWhenDone(
      renderSaved(render, out ? path.resolve(out) : undefined).then((t) => console.log(`wrote ${t}`)),
    );
  } else {
    const previous = reuse ? (JSON.parse(readFileSync(reuse, 'utf8')) as BenchResults) : undefined;
    exitWhenDone(runBench(parseArgs(argv), false, previous));
  }
}
