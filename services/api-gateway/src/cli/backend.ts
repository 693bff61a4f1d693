#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { DeploymentRegistry, probePgvector, type BackendChoice, type BackendName } from 'memory-core';
import { connectCliRedis, loadCliConfig, print, printError, runCli, UsageError } from './cli-support';

const USAGE = `Shows or switches the storage backend every service of this deployment uses.

usage: npm run backend -- show
       npm run backend -- use postgres|chroma [--force]     (or: memory-backend …)

The services read the backend once, at start-up: after "use", restart all of them (api-gateway,
embedding-worker, search-service). Services started with MEMORY_BACKEND=postgres or =chroma refuse
to start on a backend that contradicts their setting; MEMORY_BACKEND=auto follows the recorded one.
Switch to postgres after a verified migration ("npm run migrate"), never during one.
"use" checks that the backend answers first; --force skips that check.
Reads REDIS_URL, QUEUE_PREFIX, DATABASE_URL and CHROMA_URL like the services.`;

async function chromaAnswers(url: string): Promise<string | null> {
  try {
    const response = await fetch(new URL('/api/v2/heartbeat', url), { signal: AbortSignal.timeout(3_000) });
    return response.ok ? null : `Chroma answered ${response.status}`;
  } catch (error) {
    return `Chroma does not answer at ${url}: ${(error as Error).message}`;
  }
}

function describe(choice: BackendChoice | null): string {
  return choice
    ? `${choice.backend} (${choice.reason}; since ${choice.decided_at})`
    : 'none recorded yet (decided when the first service starts)';
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    print(USAGE);
    return 0;
  }
  const [command, target, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(' ')}`);
  if (command !== 'show' && command !== 'use')
    throw new UsageError('the command is "show" or "use postgres|chroma"');
  if (command === 'use' && target !== 'postgres' && target !== 'chroma') {
    throw new UsageError('"use" takes postgres or chroma');
  }
  if (command === 'show' && target !== undefined) throw new UsageError('"show" takes no argument');

  const config = loadCliConfig();
  const redis = await connectCliRedis(config.REDIS_URL);
  try {
    const registry = new DeploymentRegistry(redis, config.QUEUE_PREFIX);
    const current = await registry.getBackend();
    if (command === 'show') {
      print(`backend: ${describe(current)}`);
      return 0;
    }
    const backend = target as BackendName;
    if (!values.force) {
      let problem: string | null;
      if (backend === 'postgres') {
        if (!config.DATABASE_URL) problem = 'DATABASE_URL is not set';
        else {
          const probe = await probePgvector(config.DATABASE_URL);
          problem = probe.ok ? null : (probe.reason ?? 'PostgreSQL is not usable');
        }
      } else {
        problem = await chromaAnswers(config.CHROMA_URL);
      }
      if (problem) {
        printError(`not switching to ${backend}: ${problem} (use --force to switch anyway)`);
        return 1;
      }
    }
    if (current?.backend === backend) {
      print(`backend is already ${describe(current)}`);
      return 0;
    }
    await registry.switchBackend({
      backend,
      reason: `switched from ${current?.backend ?? 'none'} with "npm run backend -- use ${backend}"`,
      decided_at: new Date().toISOString(),
    });
    print(`backend: ${backend} (was ${current?.backend ?? 'none'})`);
    print(
      'restart the services now (api-gateway, embedding-worker, search-service): they read the backend at start-up',
    );
    return 0;
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}

runCli('backend', main);
