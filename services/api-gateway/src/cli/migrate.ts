#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  enqueueMigration,
  enqueueRollback,
  jobIds,
  QueueName,
  RedisMigrationCheckpoints,
  type MigrateChromaRequest,
  type MigrationProgress,
  type MigrationResult,
  type RollbackResult,
} from 'memory-core';
import { connectCliRedis, loadCliConfig, print, printError, runCli, UsageError } from './cli-support';

const USAGE = `Moves memories from Chroma to PostgreSQL as a job on the embedding worker.

usage: npm run migrate -- [options]            (or: memory-migrate [options])
  --dry-run            read and check everything, report what would happen, write nothing
  --user-id N          only this user's records; with a mapping that names no user key,
                       the user every record is given to
  --collection NAME    Chroma collection to read (default: the worker's CHROMA_COLLECTION)
  --batch-size N       records per batch, each written in one transaction (default 500)
  --re-embed           embed every text again instead of copying the stored vectors
  --mapping FILE       JSON mapping of a foreign collection's metadata keys
                       (see packages/memory-core/src/migration/README.md)
  --rollback ID        remove every row migration ID wrote (stopping it first if it runs)
  --status ID          show where migration ID stands
  --no-follow          queue the job, print its ids, and return
  --json               print the final result as JSON on stdout
  -h, --help           this text

The job survives this terminal: Ctrl-C stops following it, not the job.
Reads REDIS_URL and QUEUE_PREFIX like the services.`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${name} must be a positive integer`);
  return Number(value);
}

function readMapping(file: string | undefined): unknown {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the mapping file ${file}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`the mapping file ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** A one-line progress bar on stderr: redrawn in place on a terminal, a line every few seconds elsewhere. */
class ProgressBar {
  private lastLine = 0;
  private drawn = false;
  private readonly tty = Boolean(process.stderr.isTTY);

  update(label: string, progress: MigrationProgress | undefined): void {
    let text: string;
    if (!progress || typeof progress !== 'object' || !('total' in progress)) {
      text = `${label}: waiting for a worker…`;
    } else {
      const { done, total, rate, eta_seconds: eta, phase } = progress;
      const fraction = total > 0 ? Math.min(1, done / total) : phase === 'done' ? 1 : 0;
      const width = 28;
      const filled = Math.round(fraction * width);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
      const etaText = eta === null ? '--:--' : duration(eta);
      text =
        `${phase.padEnd(9)} [${bar}] ${done}/${total} ${pct}  ${rate.toFixed(0)} rec/s  ETA ${etaText}` +
        `  written ${progress.written} skipped ${progress.skipped} failed ${progress.failed}`;
    }
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${text}`);
      this.drawn = true;
    } else if (Date.now() - this.lastLine > 5_000) {
      process.stderr.write(`${text}\n`);
      this.lastLine = Date.now();
    }
  }

  end(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}

type Followed =
  { state: 'completed'; value: unknown } | { state: 'failed'; reason: string } | { state: 'interrupted' };

/** Polls a job until it finishes or the user presses Ctrl-C (which leaves the job running). */
async function follow(queue: Queue, jobId: string, label: string): Promise<Followed> {
  let interrupted = false;
  const onInterrupt = () => {
    interrupted = true;
  };
  process.once('SIGINT', onInterrupt);
  const bar = new ProgressBar();
  try {
    while (!interrupted) {
      const job = await Job.fromId(queue, jobId);
      if (!job) return { state: 'failed', reason: `job ${jobId} is gone (removed from the queue)` };
      const state = await job.getState();
      bar.update(label, job.progress as MigrationProgress | undefined);
      if (state === 'completed') return { state, value: job.returnvalue };
      if (state === 'failed') return { state, reason: job.failedReason || 'failed' };
      await sleep(500);
    }
    return { state: 'interrupted' };
  } finally {
    bar.end();
    process.removeListener('SIGINT', onInterrupt);
  }
}

function describeCounts(
  counts: Record<string, { total: number; by_session: object; by_project: object; by_content_type: object }>,
) {
  for (const [user, c] of Object.entries(counts)) {
    print(
      `  user ${user}: ${c.total} memories in ${Object.keys(c.by_session).length} sessions, ` +
        `${Object.keys(c.by_project).length} projects, ${Object.keys(c.by_content_type).length} content types`,
    );
  }
}

function printResult(result: MigrationResult): void {
  const { stats } = result;
  const verdict = result.dry_run
    ? 'dry run, nothing written'
    : result.verification?.verified
      ? 'verified'
      : 'NOT verified';
  print(`migration ${result.migration_id} (collection ${result.collection}): ${result.state}, ${verdict}`);
  const reasons = Object.entries(stats.skipped_by_reason)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ');
  const writes = result.dry_run ? `would write ${stats.would_write}` : `written ${stats.written}`;
  print(
    `  read ${stats.read}  ${writes}  skipped ${stats.skipped}${reasons ? ` (${reasons})` : ''}  failed ${stats.failed}`,
  );
  const embedReasons = Object.entries(stats.re_embedded_by_reason)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ');
  print(
    `  vectors: copied ${stats.copied_embeddings}, ${result.dry_run ? 'to embed' : 're-embedded'} ${stats.re_embedded}` +
      (embedReasons ? ` (${embedReasons})` : ''),
  );
  print(`  duration ${(stats.duration_ms / 1000).toFixed(1)} s, ${stats.records_per_second} records/s`);
  describeCounts(result.counts);
  for (const issue of result.skipped.slice(0, 10))
    print(`  skipped ${issue.id}: ${issue.reason}: ${issue.message}`);
  if (result.skipped.length > 10) print(`  … ${stats.skipped - 10} more skipped (see --json)`);
  for (const issue of result.failures.slice(0, 10))
    print(`  failed ${issue.id}: ${issue.reason}: ${issue.message}`);
  const v = result.verification;
  if (v) {
    print(
      `  verification: ${v.verified ? 'verified' : `${v.differences.length} differences`}; ` +
        `sample of ${v.sample.size} compared (${v.sample.fields_compared} fields, ${v.sample.vectors_compared} vectors)`,
    );
    for (const d of v.differences.slice(0, 10)) print(`    ${JSON.stringify(d)}`);
  }
  if (!result.dry_run && v?.verified) {
    print(
      '  next: switch the live backend with "npm run backend -- use postgres", then restart the services',
    );
  }
}

async function runMigration(
  queue: Queue,
  request: MigrateChromaRequest,
  flags: { follow: boolean; json: boolean },
) {
  const { job, migrationId } = await enqueueMigration(queue, request);
  printError(`queued migration ${migrationId} (job ${job.id})`);
  if (!flags.follow) {
    print(JSON.stringify({ job_id: job.id, migration_id: migrationId }));
    return 0;
  }
  return finish(await follow(queue, job.id!, 'migration'), migrationId, flags.json);
}

function finish(outcome: Followed, migrationId: string, json: boolean): number {
  if (outcome.state === 'interrupted') {
    printError(
      `stopped following; the migration goes on. Check it with: npm run migrate -- --status ${migrationId}`,
    );
    return 130;
  }
  if (outcome.state === 'failed') {
    printError(`migration ${migrationId} failed: ${outcome.reason}`);
    return 1;
  }
  const result = outcome.value as MigrationResult;
  if (json) print(JSON.stringify(result, null, 2));
  else printResult(result);
  return result.dry_run || result.verification?.verified ? 0 : 1;
}

async function runRollback(queue: Queue, redis: Redis, prefix: string, migrationId: string) {
  // Stop the migration at its next batch now, even if the rollback job waits behind it.
  await new RedisMigrationCheckpoints(redis, prefix).requestCancel(migrationId);
  const job = await enqueueRollback(queue, migrationId);
  printError(`queued rollback of ${migrationId} (job ${job.id})`);
  const outcome = await follow(queue, job.id!, 'rollback');
  if (outcome.state === 'interrupted') {
    printError('stopped following; the rollback goes on.');
    return 130;
  }
  if (outcome.state === 'failed') {
    printError(`rollback of ${migrationId} failed: ${outcome.reason}`);
    return 1;
  }
  const result = outcome.value as RollbackResult;
  print(`rolled back migration ${result.migration_id}: ${result.removed} rows removed`);
  return 0;
}

async function showStatus(queue: Queue, redis: Redis, prefix: string, migrationId: string, json: boolean) {
  const record = (await new RedisMigrationCheckpoints(redis, prefix).load(migrationId))?.result ?? null;
  const job = await Job.fromId(queue, jobIds.migration(migrationId));
  const state = job ? await job.getState() : null;
  if (!record && !job) {
    printError(`no migration ${migrationId} is known (dry runs keep no record beyond their job)`);
    return 1;
  }
  // The checkpoint is newer than the job's return value once a rollback has run.
  const result = record ?? (job?.returnvalue as MigrationResult | undefined) ?? null;
  if (json) {
    print(
      JSON.stringify(
        {
          job_state: state,
          failed_reason: job?.failedReason || null,
          progress: job?.progress ?? null,
          result,
        },
        null,
        2,
      ),
    );
    return 0;
  }
  print(`job ${jobIds.migration(migrationId)}: ${state ?? 'gone (trimmed)'}`);
  if (job?.failedReason) print(`  failed: ${job.failedReason}`);
  if (state === 'active' || state === 'waiting' || state === 'delayed') {
    const p = job?.progress as MigrationProgress | undefined;
    if (p && typeof p === 'object' && 'total' in p) {
      print(
        `  ${p.phase}: ${p.done}/${p.total}, ${p.rate} rec/s, written ${p.written}, skipped ${p.skipped}`,
      );
    }
  }
  if (result) printResult(result);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'dry-run': { type: 'boolean' },
      'user-id': { type: 'string' },
      collection: { type: 'string' },
      'batch-size': { type: 'string' },
      're-embed': { type: 'boolean' },
      mapping: { type: 'string' },
      rollback: { type: 'string' },
      status: { type: 'string' },
      'no-follow': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    print(USAGE);
    return 0;
  }
  if (values.rollback !== undefined && values.status !== undefined) {
    throw new UsageError('--rollback and --status cannot be combined');
  }
  const request: MigrateChromaRequest = {
    dry_run: values['dry-run'] ?? false,
    user_id: values['user-id'],
    collection: values.collection,
    batch_size: positiveInt(values['batch-size'], '--batch-size'),
    re_embed: values['re-embed'] ?? false,
    mapping: readMapping(values.mapping) as MigrateChromaRequest['mapping'],
  };

  const config = loadCliConfig();
  const redis = await connectCliRedis(config.REDIS_URL);
  const queue = new Queue(QueueName.Migration, { connection: redis, prefix: config.QUEUE_PREFIX });
  try {
    if (values.status !== undefined) {
      return await showStatus(queue, redis, config.QUEUE_PREFIX, values.status, values.json ?? false);
    }
    if (values.rollback !== undefined)
      return await runRollback(queue, redis, config.QUEUE_PREFIX, values.rollback);
    return await runMigration(queue, request, { follow: !values['no-follow'], json: values.json ?? false });
  } finally {
    await queue.close();
    await redis.quit().catch(() => redis.disconnect());
  }
}

runCli('migrate', main);
