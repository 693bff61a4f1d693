import type { Redis } from 'ioredis';
import { z } from 'zod';
import { connectRedis, coreEnvShape, isAppError, loadConfig } from 'memory-core';

/** The settings the command-line tools read: the same variables as the services. */
export function loadCliConfig() {
  return loadConfig(z.object(coreEnvShape));
}
export type CliConfig = ReturnType<typeof loadCliConfig>;

/** Raised for wrong usage; the tools print it with the usage text and exit with 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A Redis connection that fails within a few seconds, with one clear line, when Redis is down. */
export function connectCliRedis(url: string): Promise<Redis> {
  return connectRedis(url, 'worker', 5_000);
}

export const print = (line = '') => void process.stdout.write(`${line}\n`);
export const printError = (line: string) => void process.stderr.write(`${line}\n`);

/**
 * Runs a command's `main` and exits with its code. Usage errors (and input the service rejects as
 * invalid) exit 2 with a hint to `--help`; other failures exit 1 with one line.
 */
export function runCli(name: 'migrate' | 'backend', main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      const usage =
        error instanceof UsageError ||
        (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ||
        (isAppError(error) && error.httpStatus === 400);
      printError(`${name}: ${error instanceof Error ? error.message : String(error)}`);
      if (usage) printError(`run "npm run ${name} -- --help" for the options`);
      process.exit(usage ? 2 : 1);
    },
  );
}
