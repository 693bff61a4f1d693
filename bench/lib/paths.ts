import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** The repository root: the nearest folder above this file whose package.json has workspaces. */
function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && 'workspaces' in (JSON.parse(readFileSync(manifest, 'utf8')) as object))
      return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no workspace root above ${start}`);
    dir = parent;
  }
}

export const repoRoot = findRoot(__dirname);

/** The servers infra/local/up starts, or what the environment says. */
export const servers = {
  databaseUrl: process.env.DATABASE_URL ?? 'postgres://memory:memory@127.0.0.1:5432/memory',
  redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  chromaUrl: process.env.CHROMA_URL ?? 'http://127.0.0.1:8100',
};

/** EMBEDDING_MODEL, else the shared stand-in beside the project (as the tests do). */
export const benchModel =
  process.env.EMBEDDING_MODEL ?? path.resolve(repoRoot, '../shared/models/minilm-l6-standin');
