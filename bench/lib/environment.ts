import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { repoRoot, servers } from './paths';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
}

export interface Versions {
  node: string;
  postgres: string;
  pgvector: string;
  chromaServer: string;
  chromadbClient: string;
  transformersJs: string;
  onnxruntimeNode: string;
  bullmq: string;
  redis: string;
}

export interface Environment {
  machine: Machine;
  versions: Versions;
  /** 1, 5 and 15 minute load averages when the run started and ended. */
  loadAtStart: number[];
  loadAtEnd?: number[];
  startedAt: string;
  /** The repository's commit, and whether tracked files differed from it (absent in older results). */
  code?: { commit: string; changed: boolean };
}

function packageVersion(name: string): string {
  try {
    const manifest = path.join(repoRoot, 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function memoryGiB(): number {
  try {
    const line = readFileSync('/proc/meminfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('MemTotal:'));
    const kb = Number(/(\d+)/.exec(line ?? '')?.[1]);
    if (kb > 0) return kb / 1024 / 1024;
  } catch {
    // not Linux: os.totalmem below
  }
  return os.totalmem() / 1024 ** 3;
}

export function machine(): Machine {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(memoryGiB() * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
  };
}

export function loadAverage(): number[] {
  return os.loadavg().map((l) => Math.round(l * 100) / 100);
}

async function redisVersion(): Promise<string> {
  // One INFO over a raw socket: no client library needed for one line.
  const url = new URL(servers.redisUrl);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port || 6379), url.hostname);
    let data = '';
    const done = (value: string) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(2000, () => done('unknown'));
    socket.on('error', () => done('unknown'));
    socket.on('connect', () => socket.write('INFO server\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      const match = /redis_version:([^\r\n]+)/.exec(data);
      if (match) done(match[1]!);
    });
  });
}

export async function versions(): Promise<Versions> {
  const client = new Client({ connectionString: servers.databaseUrl });
  await client.connect();
  const pg = await client.query<{ server: string; vector: string | null }>(
    `SELECT current_setting('server_version') AS server,
            (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector`,
  );
  await client.end();
  const chroma = await fetch(`${servers.chromaUrl}/api/v2/version`)
    .then((r) => r.json() as Promise<string>)
    .catch(() => 'unknown');
  return {
    node: process.version,
    postgres: pg.rows[0]?.server ?? 'unknown',
    pgvector: pg.rows[0]?.vector ?? 'not installed',
    chromaServer: `${chroma} (bindings ${packageVersion('chromadb-js-bindings-linux-x64-gnu')})`,
    chromadbClient: packageVersion('chromadb'),
    transformersJs: packageVersion('@huggingface/transformers'),
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    bullmq: packageVersion('bullmq'),
    redis: await redisVersion(),
  };
}

/** The commit the bench runs on, and whether its code was changed; undefined outside a git checkout. */
export function code(): Environment['code'] {
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: repoRoot,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  try {
    return {
      commit: git('rev-parse', '--short', 'HEAD'),
      // The bench's own output (the report, the results it keeps for --reuse) is not code.
      changed:
        git(
          'status',
          '--porcelain',
          '--untracked-files=no',
          '--',
          '.',
          ':!BENCHMARKS.md',
          ':!bench/results',
        ) !== '',
    };
  } catch {
    return undefined;
  }
}

export async function environment(): Promise<Environment> {
  return {
    machine: machine(),
    versions: await versions(),
    loadAtStart: loadAverage(),
    startedAt: new Date().toISOString(),
    code: code(),
  };
}
