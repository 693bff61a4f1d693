import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { DEFAULT_EXACT_SCAN_THRESHOLD, DEFAULT_SPARSE_EXACT_SCAN, QueueName } from 'memory-core';
import { defaultOptions, runBench } from '../../bench/run';
import { serverPids, type CpuSpent } from '../../bench/lib/cpu';
import { shippedGraph } from '../../bench/lib/dataset';
import { variationTexts } from '../../bench/lib/embedded-dataset';
import {
  CHEAPER_GRAPH,
  FreshTexts,
  ONE_MODEL,
  PRELOADED,
  SPLIT_CORES,
  WARM_UP_RUNS,
  type IngestRun,
} from '../../bench/sections/ingestion';
import { USER } from '../../bench/sections/search';
import { REST_USER, shareLayout } from '../../bench/sections/tenants';
import { IngestJobEvents } from '../../bench/lib/job-events';
import { servers } from '../../bench/lib/paths';
import { sleep } from '../../bench/lib/stats';
import { parseServerTiming, post, uniqueName } from '../../bench/lib/stack';
import { REPORT_SECTIONS, renderReport, type BenchResults } from '../../bench/report';

// The benchmark harness in quick mode at tiny sizes, for correctness only: every section runs against
// the real services and servers and the report has every part. No timing is asserted, ever.
describe('bench harness (quick mode, tiny sizes)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-quick-'));
  let results: BenchResults;
  let report: string;

  beforeAll(async () => {
    const options = defaultOptions('quick');
    options.embedding = {
      q8Texts: 16,
      fp32Texts: 8,
      batchSizes: [1, 8],
      callSize: 16,
      subBatchSizes: [4, 16],
      threads: [0, 2],
    };
    options.ingestion = {
      ...options.ingestion,
      memories: 60,
      singleMemories: 20,
      variantRuns: 1,
      preload: 300,
    };
    options.single = { requests: 5 };
    options.search = {
      ...options.search,
      sizes: [300, 600, 1_200],
      baseTexts: 50,
      queries: 8,
      // Above 300 the engines that read rows by the thousand per query run 4 of the 8 queries once.
      exactQueriesLarge: 4,
      fewQueriesAbove: 300,
      chromaMaxSize: 600,
      efSweep: [40],
    };
    options.graph = {
      size: 600,
      writeRows: 192,
      settings: [{ m: 8, efConstruction: 32 }],
      pools: { sizes: [1, 3], inFlight: 4, rounds: 2 },
    };
    options.tenants = {
      size: 1_000,
      // 1.5%: about 15 memories, past the exact-scan limit and within the share the services still scan exactly.
      shares: [0.004, 0.006, 0.01, 0.015, 0.04],
      minMemories: 10,
      writeRows: 128,
      exactScanThreshold: 10,
      manyGraphs: { size: 500, counts: [1, 3], writeRows: 128, singleWrites: 5 },
    };
    options.migration = { records: 150, batchSizes: [50, 100] };
    options.output = { markdown: path.join(dir, 'BENCHMARKS.md'), json: path.join(dir, 'results.json') };
    results = await runBench(options, true);
    report = readFileSync(options.output.markdown, 'utf8');
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a report with every section, the machine, the versions and the commit', () => {
    for (const heading of REPORT_SECTIONS) expect(report).toContain(heading);
    expect(report).toContain(`${results.environment.machine.cores} cores`);
    expect(report).toContain(`pgvector ${results.environment.versions.pgvector}`);
    expect(report).toContain('**CPU per memory**');
    // The commit measured, so that figures kept with --reuse can be told apart from newer code.
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    expect(results.environment.code?.commit).toBe(head);
    expect(report).toContain(`Code: commit ${head}`);
    expect(JSON.parse(readFileSync(path.join(dir, 'results.json'), 'utf8'))).toHaveProperty('search');
  });

  it("gives a section kept from an earlier run that run's versions, and says what changed since", () => {
    const env = results.environment;
    const earlier = { ...env, versions: { ...env.versions, pgvector: '0.0.1-earlier' } };
    const merged = renderReport({
      ...results,
      merged: [{ from: earlier, sections: ['migration'], durationS: 60 }],
    });
    expect(merged).toContain(
      `Section migration is from an earlier run of ${env.startedAt.slice(0, 16).replace('T', ' ')} UTC`,
    );
    expect(merged).toContain(
      `that run had pgvector 0.0.1-earlier (${env.versions.pgvector} in the last run).`,
    );
    const migration = merged.slice(merged.indexOf('## 5. Migration'), merged.indexOf('## 6. Memory'));
    expect(migration).toContain('+ pgvector 0.0.1-earlier,');
    const ingestion = merged.slice(merged.indexOf('## 2. Ingestion'), merged.indexOf('## 3. Single'));
    expect(ingestion).toContain(`+ pgvector ${env.versions.pgvector},`);
    // Nothing changed: nothing said.
    const same = renderReport({
      ...results,
      merged: [{ from: env, sections: ['migration'], durationS: 60 }],
    });
    expect(same).not.toContain('that run had');
    // A kept section's own number of runs, where it differs from the last run's.
    const runs = results.options.runs + 2;
    const counted = renderReport({
      ...results,
      merged: [{ from: env, sections: ['migration'], durationS: 60, runs }],
    });
    expect(counted).toContain(
      `Speeds are medians over ${results.options.runs} run(s) unless a table says otherwise (over ${runs} in migration, kept from earlier runs),`,
    );
    expect(same).toContain(
      `Speeds are medians over ${results.options.runs} run(s) unless a table says otherwise,`,
    );
  });

  it('names the machine of each run it holds, and says when a kept run was on another', () => {
    const env = results.environment;
    const elsewhere = { ...env, machine: { ...env.machine, cpu: 'Other CPU 9000', memoryGiB: 7.5 } };
    const merged = renderReport({
      ...results,
      merged: [{ from: elsewhere, sections: ['migration'], durationS: 60 }],
    });
    const here = `${env.machine.cpu}, ${env.machine.cores} cores, ${env.machine.memoryGiB} GiB`;
    const there = `Other CPU 9000, ${env.machine.cores} cores, 7.5 GiB`;
    expect(merged).toContain(`that run was on another machine (${there}; the last run: ${here})`);
    expect(merged).not.toContain('the machine is the same');
    const migration = merged.slice(merged.indexOf('## 5. Migration'), merged.indexOf('## 6. Memory'));
    expect(migration).toContain(`_Machine: ${there};`);
    expect(migration).not.toContain(here);
    const ingestion = merged.slice(merged.indexOf('## 2. Ingestion'), merged.indexOf('## 3. Single'));
    expect(ingestion).toContain(`_Machine: ${here};`);
    // The summary's rows come from both runs: it names both machines and which sections ran where.
    const goals = merged.slice(merged.indexOf('## Goals'), merged.indexOf('## Machine and versions'));
    expect(goals).toContain(`_Machines: ${here} for sections`);
    expect(goals).toContain(`${there} for section migration.`);
    const machines = merged.slice(merged.indexOf('## Machine and versions'), merged.indexOf('## 1. '));
    expect(machines).toMatch(/\| CPU +\| .+ \| Other CPU 9000 +\|/);
    // The same machine: said so, and one machine line in the summary.
    const same = renderReport({
      ...results,
      merged: [{ from: env, sections: ['migration'], durationS: 60 }],
    });
    expect(same).toContain('the machine is the same');
    expect(same).not.toContain('_Machines:');
  });

  it("gives a table whose rows come from several runs on one machine no single run's load", () => {
    const env = results.environment;
    const here = `${env.machine.cpu}, ${env.machine.cores} cores, ${env.machine.memoryGiB} GiB`;
    const lastLoad = `load average ${env.loadAtStart.join(' / ')} at start`;
    const between = (text: string, from: string, to: string) =>
      text.slice(text.indexOf(from), text.indexOf(to));
    const one = renderReport(results);
    expect(between(one, '## Goals', '## Tuning')).toContain(lastLoad);
    expect(between(one, '## 6. Memory', '## How to run')).toContain(lastLoad);

    // Section 4's rows (search) from an earlier run on the same machine, under another load.
    const earlier = { ...env, startedAt: '2026-01-02T03:04:00.000Z', loadAtStart: [7.77, 7.77, 7.77] };
    const merged = renderReport({
      ...results,
      merged: [{ from: earlier, sections: ['search'], durationS: 60 }],
    });
    for (const [from, to] of [
      ['## Goals', '## Tuning'],
      ['## 6. Memory', '## How to run'],
    ] as const) {
      const part = between(merged, from, to);
      expect(part).toContain(
        `_Machine: ${here} (every run this report holds). Load and versions: as in the section`,
      );
      expect(part).not.toContain(lastLoad);
      expect(part).not.toContain('7.77');
    }
    // A table from one run still gives that run's load.
    expect(between(merged, '## 4. Search', '## 5. Migration')).toContain('load average 7.77 / 7.77 / 7.77');
    expect(between(merged, '## 2. Ingestion', '## 3. Single')).toContain(lastLoad);
  });

  it('calls an ingestion goal unsettled when its runs fall on both sides of 0.90', () => {
    const withRatios = (ratios: number[]) => {
      const isDefaults = (run: IngestRun) =>
        run.backend === 'postgres' && run.variant.startsWith('defaults') && run.requests === 'batch';
      const template = results.ingestion!.runs.find(isDefaults)!;
      const runs = [
        ...results.ingestion!.runs.filter((run) => !isDefaults(run)),
        ...ratios.map((ratio) => ({ ...template, ratio })),
      ];
      const report = renderReport({ ...results, ingestion: { ...results.ingestion!, runs } });
      return report
        .split('\n')
        .find((line) => line.startsWith('| ingestion ≥ 0.90 × raw embedding rate (PostgreSQL)'))!;
    };
    expect(withRatios([0.8, 0.95, 0.96])).toContain('**unsettled** (median +0.05');
    expect(withRatios([0.92, 0.95])).toContain('**met** (+0.');
    expect(withRatios([0.6, 0.7])).toContain('**missed**');
  });

  it('measures the raw pipeline for both dtypes and every batch size', () => {
    const rows = results.embedding!.rows;
    expect(rows.map((r) => `${r.dtype}/${r.batchSize}`).sort()).toEqual(['fp32/1', 'fp32/8', 'q8/1', 'q8/8']);
    for (const r of [...rows, ...results.embedding!.subBatched]) expect(r.rate).toBeGreaterThan(0);
  });

  it('measures the embedder as the services open it by EMBEDDING_THREADS, and reports it', () => {
    const threaded = results.embedding!.threaded!;
    expect(threaded.map((r) => `${r.dtype}/${r.threads}`).sort()).toEqual([
      'fp32/0',
      'fp32/2',
      'q8/0',
      'q8/2',
    ]);
    for (const r of threaded) {
      expect(r.rate).toBeGreaterThan(0);
      expect(r.cpuMsPerText).toBeGreaterThan(0);
    }
    expect(report).toMatch(/\| EMBEDDING_THREADS +\| q8 texts\/s +\| q8 CPU ms per text +\|/);
    // The worker ran with one model on ONNX runtime's threads too, beside the defaults.
    const oneModel = results.ingestion!.runs.filter((r) => r.variant === ONE_MODEL);
    expect(oneModel.length).toBeGreaterThan(0);
    for (const run of oneModel) expect(run.stored).toBe(run.memories);
    expect(report).toContain('model threads (EMBEDDING_THREADS), batch ingestion');
  });

  it('ingests every memory exactly once, through both backends', () => {
    const runs = results.ingestion!.runs;
    expect(runs.some((r) => r.backend === 'postgres')).toBe(true);
    expect(runs.some((r) => r.backend === 'chroma')).toBe(true);
    for (const run of runs) {
      expect(run.stored).toBe(run.memories);
      expect(run.ratio).toBeGreaterThan(0);
      expect(run.modelCalls).toBeGreaterThan(0);
    }
    const single = runs.filter((r) => r.variant === 'MICRO_BATCH_SIZE=1' && r.requests === 'batch');
    for (const run of single) expect(run.meanBatch).toBe(1);
    // Each worker start (each row's settings, each backend) warms up on whole runs, kept apart.
    const key = (r: (typeof runs)[number]) => `${r.backend} ${r.variant} ${r.requests}`;
    const warmUps = results.ingestion!.warmUps!;
    expect(warmUps.map(key)).toEqual(
      [...new Set(runs.map(key))].flatMap((k) => Array.from({ length: WARM_UP_RUNS }, () => k)),
    );
    for (const w of warmUps) {
      expect(w.stored).toBe(w.memories);
      expect(w.memories).toBe(runs.find((r) => key(r) === key(w))!.memories);
    }
    expect(report).toContain(`first ingests ${WARM_UP_RUNS} runs' worth of memories, unmeasured`);
    // Every row started on an emptied table, and every run wrote texts of its own; the report says so.
    expect(results.ingestion!.emptyTablePerVariant).toBe(true);
    expect(report).toContain("Each row's worker starts on an empty table");
    expect(results.ingestion!.freshTexts).toBe(true);
    expect(results.ingestion!.meanChars).toBeGreaterThan(0);
    expect(report).toContain("each run's (warm-ups' too) its own, never sent before in the section");
    for (const c of results.ingestion!.contended) {
      expect(c.alone).toBeGreaterThan(0);
      expect(c.besideWrites).toBeGreaterThan(0);
      expect(c.writesPerS).toBeGreaterThan(0);
    }
  });

  it('sends single stores while a bulk load is ingested, and stores all of both', () => {
    const during = results.ingestion!.duringBulk!;
    const asked = defaultOptions('quick').ingestion.duringBulk!;
    expect(during.memories).toBe(asked.memories);
    expect(during.loadJobs.n).toBe(Math.ceil(asked.memories / results.ingestion!.requestSize));
    expect(during.singles.n).toBeGreaterThanOrEqual(1);
    expect(during.singles.n).toBeLessThanOrEqual(asked.maxSingles);
    // Every single store is answered, stored (201) or, past the gateway's wait, queued (202).
    const answered = Object.values(during.answers).reduce((a, b) => a + b, 0);
    expect(answered).toBe(during.singles.n);
    expect(Object.keys(during.answers).every((s) => s === 'stored' || s === 'queued')).toBe(true);
    expect(during.stored).toBe(true);
    expect(report).toContain('**Single stores during a bulk load**');
  });

  it('runs the last variants into a table that holds the search data set, storing every memory', () => {
    expect(results.ingestion!.preloaded).toMatchObject({ memories: 300 });
    const preloaded = results.ingestion!.runs.filter((r) => r.variant === PRELOADED);
    expect(preloaded).toHaveLength(1);
    expect(preloaded[0]!.stored).toBe(60);
    // They are the last PostgreSQL runs: the runs before them wrote into the table without those rows.
    const pg = results.ingestion!.runs.filter((r) => r.backend === 'postgres');
    expect(pg.slice(-2).map((r) => r.variant)).toEqual([PRELOADED, CHEAPER_GRAPH]);
  });

  it("rebuilds that table's graph with fewer neighbours for the last variant", () => {
    const cheaper = results.ingestion!.cheaperGraph!;
    expect(cheaper.graph.m).toBeLessThan(shippedGraph().m);
    // The table the row before it left: emptied, the preloaded rows, then that row's warm-ups and runs.
    const before = [...results.ingestion!.runs, ...results.ingestion!.warmUps!].filter(
      (r) => r.backend === 'postgres' && r.variant === PRELOADED,
    );
    expect(before).toHaveLength(WARM_UP_RUNS + 1);
    expect(cheaper.memories).toBe(300 + before.reduce((sum, r) => sum + r.stored, 0));
    const runs = results.ingestion!.runs.filter((r) => r.variant === CHEAPER_GRAPH);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.stored).toBe(60);
    expect(CHEAPER_GRAPH).toContain(`m=${cheaper.graph.m},`);
    // The report sets its rate beside the store's graph's, with PostgreSQL's CPU for each.
    const row = report.split('\n').find((l) => l.startsWith("| the shared graph's neighbours per node (m)"));
    expect(row).toContain(`| m=${shippedGraph().m}: `);
    expect(row).toContain(`| m=${cheaper.graph.m}: `);
    expect(row!.match(/PostgreSQL \d+\.\d+ ms CPU per memory/g)).toHaveLength(2);
    expect(report).toContain(`With that table's graph rebuilt with m=${cheaper.graph.m}`);
  });

  it("counts each run's CPU against the processes that spent it", () => {
    const runs = results.ingestion!.runs;
    const total = (backend: string, pick: (cpu: CpuSpent) => number) =>
      runs.filter((r) => r.backend === backend).reduce((sum, r) => sum + pick(r.cpu!.e2e), 0);
    for (const run of runs) {
      // The raw pipeline runs in the bench process, the end-to-end model in the worker.
      expect(run.cpu!.raw.ms.bench).toBeGreaterThan(0);
      expect(run.cpu!.e2e.ms['embedding-worker']).toBeGreaterThan(0);
      for (const spent of [run.cpu!.raw, run.cpu!.e2e]) {
        const processes = Object.values(spent.ms).reduce((a, b) => a + b, 0);
        // No process spends more than the machine did (10 ms ticks, rounded per process).
        expect(processes).toBeLessThanOrEqual(spent.busyMs * 1.1 + 200);
        expect(spent.busyMs).toBeLessThanOrEqual(spent.wallMs * results.environment.machine.cores * 1.1 + 50);
      }
    }
    expect(total('postgres', (c) => c.ms.postgres)).toBeGreaterThan(0);
    expect(total('postgres', (c) => c.ms.chroma)).toBeLessThan(total('postgres', (c) => c.ms.postgres));
    expect(total('chroma', (c) => c.ms.chroma)).toBeGreaterThan(0);
    // The report sets the Chroma runs' CPU beside PostgreSQL's, and explains the Chroma ratio from it.
    expect(report).toMatch(/\| process +\| raw pipeline +\| end to end +\| end to end, Chroma +\|/);
    expect(report).toContain('**Ingestion into Chroma**');
  });

  it('runs the model on a core of its own, then gives the servers every core back', () => {
    const cores = results.environment.machine.cores;
    if (cores < 2) return;
    const split = results.ingestion!.runs.filter((r) => r.variant === SPLIT_CORES);
    expect(split.length).toBeGreaterThan(0);
    for (const run of split) expect(run.stored).toBe(run.memories);
    const allowed = (pid: number) =>
      /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    const all = `0-${cores - 1}`;
    expect(serverPids().length).toBeGreaterThan(0);
    for (const pid of [...serverPids(), process.pid]) expect([pid, allowed(pid)]).toEqual([pid, all]);
  });

  it('answers every single store with 201, with each worker setting', () => {
    expect(results.single!.statuses).toEqual({ 201: 5 });
    expect(results.single!.others.map((p) => p.statuses)).toEqual([{ 201: 5 }]);
  });

  it('searches the same vectors on every engine, with recall in [0, 1] and exact search as its own truth', () => {
    const sizes = results.search!.sizes;
    expect(sizes.map((s) => s.size)).toEqual([300, 600, 1_200]);
    for (const s of sizes) {
      expect(s.pgCount).toBe(s.size);
      expect(s.hnsw.completed).toBe(true);
      for (const e of [...s.store, ...s.service]) {
        expect(e.latency.n).toBe(e.queries);
        if (e.recall !== null) {
          expect(e.recall).toBeGreaterThanOrEqual(0);
          expect(e.recall).toBeLessThanOrEqual(1);
        }
      }
      for (const e of s.store.filter((x) => x.engine === 'pgvector exact')) expect(e.recall).toBe(1);
    }
    // Chroma holds the same vectors up to its size limit, and is left out past it.
    expect(sizes.map((s) => s.load.chromaCount)).toEqual([300, 600, undefined]);
    expect(sizes.map((s) => s.store.some((e) => e.engine === 'Chroma'))).toEqual([true, true, false]);
    // Past fewQueriesAbove, exact scans and Chroma's filtered queries run 4 queries once; the others
    // (and every engine at or below it) run all 8 in every run.
    const counts = (s: (typeof sizes)[number]) =>
      [...s.store, ...s.service]
        .filter((e) => !e.engine.includes('own graph'))
        .map((e) => `${e.case}/${e.engine}: ${e.queries}×${e.runs}`);
    expect(counts(sizes[0]!).every((c) => c.endsWith(`8×${results.options.runs}`))).toBe(true);
    const few = (c: string) =>
      c.includes('pgvector exact') || (c.includes('Chroma') && !c.startsWith('none/'));
    const at600 = counts(sizes[1]!);
    expect(at600.filter(few).length).toBeGreaterThanOrEqual(9);
    for (const c of at600) expect(c.split(': ')[1]).toBe(few(c) ? '4×1' : `8×${results.options.runs}`);
    expect(report).toContain(
      'Above 300, the engines whose every query reads rows by the thousand run the first 4',
    );
    expect(sizes[2]!.efSweep.map((e) => e.efSearch)).toEqual([40, 40]);
    expect(sizes[2]!.overfetchSweep!.map((e) => `${e.case}/${e.overfetch}`)).toEqual([
      'none/1',
      'user/1',
      'none/2',
      'user/2',
    ]);
    // At the largest size every user has 120 memories (≥ the quick minimum of 100, a tenth of the
    // table): each gets a graph of their own, and the searches run again in it.
    expect(sizes[1]!.ownGraphs).toBeUndefined();
    expect(sizes[2]!.ownGraphs).toMatchObject({ minMemories: 100, graphs: 10 });
    expect(sizes[2]!.ownGraphs!.indexMiB).toBeGreaterThan(0);
    expect(
      sizes[2]!.store.filter((e) => e.engine.endsWith('own graph')).map((e) => `${e.case}/${e.engine}`),
    ).toEqual([
      'user/pgvector adapter (auto), own graph',
      'user/pgvector HNSW, own graph',
      'user+session/pgvector adapter (auto), own graph',
      'user+session/pgvector HNSW, own graph',
    ]);
    expect(sizes[2]!.service.some((e) => e.engine.startsWith('pgvector (service), own graph'))).toBe(true);
    // "Query embedded" rows come from a service that embedded every search, "query cached" rows from
    // one that answered every search from its cache: the services' own metrics say which.
    for (const s of sizes) {
      for (const e of s.service)
        expect([e.engine, e.cachedShare]).toEqual([e.engine, e.engine.endsWith('query cached') ? 1 : 0]);
    }
    expect(sizes[2]!.tenantEfSweep!.map((e) => e.efSearch)).toEqual([40, 100]);
    // Every record's vector is the model's embedding of its own text.
    expect(results.search!.dataset.kind).toBe('embedded');
    // Each load is vacuumed before the index is built.
    for (const s of sizes) expect(s.load.vacuumMs).toBeGreaterThan(0);
  });

  it("gives the search section's exact-scan limit from its run, and what a later default changes", () => {
    const search = results.search!;
    expect(search.exactScanThreshold).toBe(DEFAULT_EXACT_SCAN_THRESHOLD);
    const limit = (r: BenchResults) =>
      /exact scan when the filtered scope has ≤ (.*?); else HNSW/.exec(renderReport(r))?.[1];
    expect(limit(results)).toBe(`${DEFAULT_EXACT_SCAN_THRESHOLD.toLocaleString('en-US')} rows`);
    // A run whose limit lay above every scope it searched past today's: nothing moved.
    const above = limit({
      ...results,
      search: { ...search, exactScanThreshold: DEFAULT_EXACT_SCAN_THRESHOLD * 2 },
    });
    expect(above).toContain("the services' default when this section ran");
    expect(above).toContain('which changes none of the paths measured here');
    // A run with a limit below the largest user's scope and the session's: those two would move.
    const users = search.dataset.layout.users;
    const largestUser = Math.ceil(1_200 / users);
    const below = limit({ ...results, search: { ...search, exactScanThreshold: largestUser - 1 } });
    expect(below).toContain(
      `so the scopes of ${largestUser} (a user's at 1.2k) and ${search.dataset.layout.sessionSize} (a session's) would now take the other path`,
    );
  });

  it("splits each service search into its stages from the service's Server-Timing header", () => {
    for (const s of results.search!.sizes) {
      for (const e of s.service) {
        const st = e.stages!;
        // Every sequential query of every run has its stages.
        for (const stage of [st.embed, st.store, st.rest]) expect(stage.n).toBe(e.queries * e.runs);
        expect(st.store.p50).toBeGreaterThan(0);
        expect(st.embed.p50).toBeGreaterThanOrEqual(0);
        // The client waited at least as long as the service worked: nothing is counted twice.
        expect(st.rest.p50).toBeGreaterThan(0);
        expect(st.slowest.n).toBeGreaterThanOrEqual(1);
        expect(st.slowest.total).toBeCloseTo(st.slowest.embed + st.slowest.store + st.slowest.rest, 6);
      }
      // A cache hit skips the model: the cached service's embed stage is below the embedding one's.
      const own = s.service.filter((e) => e.case === 'user' && !e.engine.includes('own graph'));
      const embedded = own.find((e) => e.engine === 'pgvector (service), query embedded')!;
      const cached = own.find((e) => e.engine === 'pgvector (service), query cached')!;
      expect(cached.stages!.embed.p50).toBeLessThan(embedded.stages!.embed.p50);
    }
    expect(report).toContain("Where the service's time went");
    // The service rows' client, and fetch beside it, against the same server that answers at once.
    const client = results.search!.client!;
    expect(client.http.n).toBeGreaterThan(0);
    expect(client.fetch.n).toBe(client.http.n);
    expect(client.answerBytes).toBeGreaterThan(1_000);
    expect(report).toContain('requests go from node:http with keep-alive connections');
    expect(parseServerTiming('embed;dur=1.5, store;desc="x";dur=2, search-service;dur=4.25')).toEqual({
      embed: 1.5,
      store: 2,
      'search-service': 4.25,
    });
  });

  it('builds each HNSW setting asked for, checks its recall and charges its writes to PostgreSQL', () => {
    const g = results.graph!;
    const shipped = shippedGraph();
    expect(g.rows.map((r) => r.graph)).toEqual([shipped, { m: 8, efConstruction: 32 }, null]);
    // PostgreSQL holds each graph with the settings it was asked for.
    expect(g.rows.map((r) => r.build?.options)).toEqual([
      [`m=${shipped.m}`, `ef_construction=${shipped.efConstruction}`],
      ['m=8', 'ef_construction=32'],
      undefined,
    ]);
    for (const row of g.rows.filter((r) => r.graph)) {
      for (const c of ['none', 'user'] as const) {
        expect(row.search![c].latency.n).toBe(8);
        expect(row.search![c].recall).toBeGreaterThanOrEqual(0);
        expect(row.search![c].recall).toBeLessThanOrEqual(1);
      }
    }
    for (const row of g.rows) expect(row.write.rows).toBe(128);
    // The graph's upkeep is PostgreSQL's work: writes into it cost more than writes into the bare table.
    expect(g.rows[0]!.write.pgCpuMsPerRow).toBeGreaterThan(g.rows[2]!.write.pgCpuMsPerRow);
    expect(report).toContain('### HNSW settings');
  });

  it('serves the same load through search services with each DATABASE_POOL_SIZE', () => {
    const p = results.graph!.pools!;
    expect(p.rows.map((r) => r.poolSize)).toEqual([1, 3]);
    for (const row of p.rows) {
      // Every query of every round answered (a failed request would throw), under the load asked for.
      expect(row.latency.n).toBe(8 * p.rounds);
      expect(row.qps).toHaveLength(p.rounds);
      expect(Math.min(...row.qps)).toBeGreaterThan(0);
    }
    expect(p).toMatchObject({ inFlight: 4, rounds: 2 });
    expect(report).toContain('**Connections per service** (DATABASE_POOL_SIZE)');
  });

  it('searches users of every share exactly, in the shared graph and in graphs the policy built them', () => {
    const t = results.tenants!;
    const layout = shareLayout(
      t.rows.slice(0, -1).map((r) => r.share),
      10,
    );
    expect(t.rows.map((r) => r.user)).toEqual(layout.users.map((u) => u.user));
    expect(t.rows.map((r) => r.share)).toEqual([0.004, 0.006, 0.01, 0.015, 0.04, 0.1]);
    // Without a graph of their own, the services scan a scope past the threshold exactly while it is
    // small enough and a small enough share of the table (20 memories of these 1,000).
    const sparseLimit = Math.floor(DEFAULT_SPARSE_EXACT_SCAN.maxShare * t.size);
    expect(t.sparseExactScan).toEqual(DEFAULT_SPARSE_EXACT_SCAN);
    expect(t.rows.filter((r) => r.sparse).map((r) => r.share)).toEqual([0.015]);
    for (const row of t.rows) {
      // The table holds each user's memories as the layout deals them.
      const dealt = Array.from({ length: t.size }, (_, i) => layout.userOf(i)).filter((u) => u === row.user);
      expect(row.memories).toBe(dealt.length);
      // Every query answered by every path, once for the exact scan and once per run for the others.
      expect(row.exact.latency.n).toBe(8);
      expect(row.shared.latency.n).toBe(8);
      expect(row.shared.recall).toBeGreaterThan(0);
      expect(row.shared.recall).toBeLessThanOrEqual(1);
      expect(row.sparse !== undefined).toBe(
        row.memories > t.exactScanThreshold && row.memories <= sparseLimit,
      );
      // An exact scan of the scope: the ground truth's answers, every query.
      if (row.sparse) expect(row.sparse).toMatchObject({ recall: 1, latency: { n: 8 } });
      // The policy (10 memories, at most half the table) gave a graph to each user it covers, and only to them.
      expect(row.own !== undefined).toBe(row.memories >= 10);
      if (row.own) expect(row.own.recall).toBeGreaterThan(0);
      // Through the search service, as the user: every query answered in every run, with its stages.
      // The service's exact-scan limit is the default, past every scope of this tiny table: its
      // answers are the exact scan's, but for the query embedded apart (one text per model call).
      expect(row.service!.latency.n).toBe(8);
      expect(row.service!.stages.embed.n).toBe(8 * row.service!.runs);
      expect(row.service!.stages.store.p50).toBeGreaterThan(0);
      expect(row.service!.recall).toBeGreaterThan(0.9);
    }
    expect(t.graphs.built).toBe(t.rows.filter((r) => r.own).length);
    // The writes compare a user with a graph of their own to the large user, who has none.
    expect(t.writes.costs.map((c) => c.ownGraph)).toEqual([true, false]);
    expect(t.writes.costs[1]!.user).toBe(REST_USER);
    expect(t.manyGraphs!.rows.map((r) => r.graphs)).toEqual([1, 3]);
    for (const row of t.manyGraphs!.rows) {
      expect(row.ownSearch.n).toBe(8);
      expect(row.single.n).toBe(5);
      expect(row.batchWallMsPerRow).toBeGreaterThan(0);
    }
    expect(report).toContain('### Users by their share of the table (1k memories)');
    expect(report).toContain('for a user of every share of 1k');
    expect(report).toContain('the same, through the search service (query embedded)');
    expect(report).toContain('Through the search service, once the policy');
    expect(report).toContain('**More graphs on one table.**');
    expect(report).toContain('**Users without a graph of their own.**');
  });

  it('migrates every record without re-embedding and verifies it', () => {
    // Default batch size into an empty table (index deferred), then into one that holds a memory
    // (index kept), then the other batch size.
    expect(results.migration!.runs.map((r) => `${r.batchSize}/${r.indexDeferred}`)).toEqual([
      '50/true',
      '50/false',
      '100/true',
    ]);
    for (const run of results.migration!.runs) {
      expect(run.indexedRate).toBeLessThanOrEqual(run.migrateRate);
      expect(run.written).toBe(150);
      expect(run.copiedEmbeddings).toBe(150);
      expect(run.reEmbedded).toBe(0);
      expect(run.verified).toBe(true);
    }
  });
});

describe("the tenants section's users by share", () => {
  const shares = [0.004, 0.006, 0.01, 0.02, 0.04];

  it('deals each share user their share of the table, spread over all of it, out of users other than the reference', () => {
    const layout = shareLayout(shares, 10);
    const size = 100_000;
    const byUser = new Map<string, number[]>();
    for (let i = 0; i < size; i += 1) {
      const user = layout.userOf(i);
      const rows = byUser.get(user) ?? [];
      rows.push(i);
      byUser.set(user, rows);
    }
    expect(layout.users).toEqual([
      ...shares.map((share) => ({ user: `bench-share-${(share * 100).toFixed(1)}pct`, share })),
      { user: USER, share: 0.1 },
    ]);
    for (const { user, share } of layout.users) {
      const rows = byUser.get(user)!;
      expect(rows).toHaveLength(share * size);
      // Spread: from the table's first hundredth to its last.
      expect(rows[0]!).toBeLessThan(size / 100);
      expect(rows[rows.length - 1]!).toBeGreaterThan(size * 0.99);
    }
    // The reference user keeps exactly the records the search section gives them.
    expect(byUser.get(USER)!.every((i) => i % 10 === 3)).toBe(true);
    expect(byUser.get(REST_USER)).toHaveLength(size * (1 - 0.1 - 0.08));
  });

  it('refuses shares the layout cannot deal', () => {
    expect(() => shareLayout([0.00015], 10)).toThrow('is not a whole number of 1/10000 of the table');
    expect(() => shareLayout([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], 10)).toThrow('do not fit');
  });
});

describe('the search data set texts', () => {
  const pool = ['a b c d', 'e f g h', 'i j k l', 'a b x y'];

  it('makes n distinct texts from a pool, the pool itself first, the same ones every run', () => {
    const texts = variationTexts(pool, 12);
    expect(texts.slice(0, 4)).toEqual(pool);
    expect(new Set(texts).size).toBe(12);
    expect(variationTexts(pool, 12)).toEqual(texts);
  });

  it('refuses more texts than the pool can make instead of drawing forever', () => {
    // At most 3 distinct first halves ('a b' twice) × 4 second halves, plus the pool...
    expect(() => variationTexts(pool, 17)).toThrow('4 corpus texts make at most 16 distinct texts, 17 asked');
    // ...but the pool's own texts are among those splices: 12 in all, and the draws stop.
    expect(() => variationTexts(pool, 13)).toThrow('4 corpus texts made only 12 distinct texts, 13 asked');
  });
});

describe("the ingestion runs' texts", () => {
  const pool = ['one two three four', 'five six seven eight', 'nine ten eleven twelve', 'a b c d e f'];

  it('hands each run texts no run had before, pool and splices shuffled, the same order every time', () => {
    const fresh = new FreshTexts(pool, 12);
    const runs = [fresh.take(5), fresh.take(4), fresh.take(3)];
    const all = runs.flat();
    expect(new Set(all).size).toBe(12);
    expect(all).toEqual(expect.arrayContaining(pool));
    // Shuffled: the first run does not get the pool's texts alone, in their order.
    expect(runs[0]).not.toEqual(variationTexts(pool, 12).slice(0, 5));
    const again = new FreshTexts(pool, 12);
    expect([again.take(5), again.take(4), again.take(3)]).toEqual(runs);
    expect(fresh.meanChars()).toBeCloseTo(all.join('').length / 12, 6);
  });

  it('refuses to hand out more than it was made for rather than repeat a text', () => {
    const fresh = new FreshTexts(pool, 6);
    fresh.take(4);
    expect(() => fresh.take(3)).toThrow('ingestion: 3 more fresh texts asked, 2 left');
  });
});

describe("the bench's HTTP client", () => {
  // A server that answers each connection's first request and resets the connection when a second
  // one arrives on it: what a client sees when it reuses a kept-alive connection the server is closing.
  let server: net.Server;
  let port = 0;
  let connections = 0;
  let resets = 0;

  beforeAll(async () => {
    server = net.createServer((socket) => {
      connections += 1;
      let answered = false;
      socket.on('error', () => undefined);
      socket.on('data', () => {
        if (answered) {
          resets += 1;
          socket.resetAndDestroy();
          return;
        }
        answered = true;
        socket.write(
          'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok',
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends a request again on a new connection when the kept-alive one was reset', async () => {
    const url = `http://127.0.0.1:${port}/`;
    expect((await post(url, { n: 1 })).text).toBe('ok');
    // The second request goes out on the first connection, which the server resets.
    expect((await post(url, { n: 2 })).text).toBe('ok');
    expect(resets).toBe(1);
    expect(connections).toBe(2);
  });

  it('does not send it again when a fresh connection fails', async () => {
    const closed = net.createServer((socket) => socket.resetAndDestroy());
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const address = closed.address() as net.AddressInfo;
    let accepted = 0;
    closed.on('connection', () => (accepted += 1));
    try {
      await expect(post(`http://127.0.0.1:${address.port}/`, {})).rejects.toMatchObject({
        code: 'ECONNRESET',
      });
      expect(accepted).toBe(1);
    } finally {
      await new Promise<void>((resolve) => closed.close(() => resolve()));
    }
  });
});

describe("the bench's wait for ingest jobs", () => {
  const prefix = `{${uniqueName('jobevents')}}`;
  let connection: Redis;
  let workerConnection: Redis;
  let queue: Queue;
  let worker: Worker;
  let events: IngestJobEvents | undefined;
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));

  beforeAll(() => {
    connection = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
    workerConnection = connection.duplicate();
    queue = new Queue(QueueName.Ingest, { connection, prefix });
    worker = new Worker(
      QueueName.Ingest,
      async (job) => {
        if ((job.data as { hold?: boolean }).hold) await held;
      },
      { connection: workerConnection, prefix },
    );
  });

  afterAll(async () => {
    release();
    await events?.close();
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
    await Promise.all([connection.quit(), workerConnection.quit()]);
  });

  it('sees the jobs that completed before it listened, waits for the rest, and gives up at its deadline', async () => {
    await queue.add('store', {}, { jobId: 'early' });
    const deadline = Date.now() + 10_000;
    while ((await queue.getJobState('early')) !== 'completed' && Date.now() < deadline) await sleep(10);

    events = await IngestJobEvents.open(prefix);
    await events.waitFor(['early'], Date.now() + 5_000);
    await queue.add('store', { hold: true }, { jobId: 'late' });
    const both = events.waitFor(['early', 'late'], Date.now() + 10_000);
    await sleep(100);
    expect(events.countCompleted(['early', 'late'])).toBe(1);
    release();
    await both;
    expect(events.countCompleted(['early', 'late'])).toBe(2);

    await expect(events.waitFor(['early', 'never'], Date.now() + 200)).rejects.toThrow(
      '1 of 2 store jobs completed in time',
    );
  });
});
