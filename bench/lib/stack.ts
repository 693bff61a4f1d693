import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { benchModel, repoRoot, servers } from './paths';
import { sleep } from './stats';

export type ServiceName = 'api-gateway' | 'embedding-worker' | 'search-service';

/** Peak and current resident set size of a process, from /proc (MiB). */
export interface Rss {
  peakMiB: number;
  currentMiB: number;
}

export function readRss(pid: number | undefined): Rss | undefined {
  if (!pid) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { peakMiB: kb('VmHWM') / 1024, currentMiB: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/** One service started from its build as a real process (the approach of test/setup/service-processes.ts). */
export class BenchService {
  private child: ChildProcess | undefined;
  private output = '';

  constructor(
    readonly name: ServiceName,
    private env: NodeJS.ProcessEnv,
    private readonly healthUrl: string,
  ) {}

  /** `cpus`: run the service on these CPUs only, from its start (`taskset -c`, e.g. "0"). */
  async start(extraEnv: NodeJS.ProcessEnv = {}, cpus?: string, timeoutMs = 90_000): Promise<void> {
    this.output = '';
    const main = [process.execPath, path.join(repoRoot, 'services', this.name, 'dist/main.js')];
    const command = cpus ? ['taskset', '-c', cpus, ...main] : main;
    const child = spawn(command[0]!, command.slice(1), {
      env: { ...this.env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const collect = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-50_000);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new Error(`${this.name} exited with ${child.exitCode}:\n${this.output.slice(-4000)}`);
      }
      const ok = await fetch(this.healthUrl).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await sleep(100);
    }
    throw new Error(
      `${this.name} did not become healthy within ${timeoutMs} ms:\n${this.output.slice(-4000)}`,
    );
  }

  async stop(timeoutMs = 30_000): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  rss(): Rss | undefined {
    return readRss(this.child?.pid);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get logs(): string {
    return this.output;
  }
}

export interface BenchStackOptions {
  backend: 'postgres' | 'chroma';
  schema?: string;
  collection?: string;
  env?: NodeJS.ProcessEnv;
}

let nextPort = 19_000 + Math.floor(Math.random() * 500) * 4;

/** A short random name for a bench schema, collection or queue prefix. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

/** The three services with their own ports, queue prefix, schema and collection. */
export function createBenchStack(options: BenchStackOptions) {
  const ports = { gateway: nextPort, search: nextPort + 1, worker: nextPort + 2 };
  nextPort += 4;
  const id = uniqueName('bench');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    REDIS_URL: servers.redisUrl,
    DATABASE_URL: servers.databaseUrl,
    DATABASE_SCHEMA: options.schema ?? 'public',
    CHROMA_URL: servers.chromaUrl,
    CHROMA_COLLECTION: options.collection ?? id,
    MEMORY_BACKEND: options.backend,
    QUEUE_PREFIX: `{${id}}`,
    EMBEDDING_MODEL: benchModel,
    EMBEDDING_DTYPE: 'q8',
    GATEWAY_PORT: String(ports.gateway),
    SEARCH_SERVICE_PORT: String(ports.search),
    SEARCH_SERVICE_URL: `http://127.0.0.1:${ports.search}`,
    WORKER_METRICS_PORT: String(ports.worker),
    ...options.env,
  };
  const gatewayUrl = `http://127.0.0.1:${ports.gateway}`;
  const searchUrl = `http://127.0.0.1:${ports.search}`;
  const workerUrl = `http://127.0.0.1:${ports.worker}`;
  const services = {
    worker: new BenchService('embedding-worker', env, `${workerUrl}/healthz`),
    search: new BenchService('search-service', env, `${searchUrl}/healthz`),
    gateway: new BenchService('api-gateway', env, `${gatewayUrl}/healthz`),
  };
  return {
    env,
    gatewayUrl,
    searchUrl,
    workerUrl,
    queuePrefix: env.QUEUE_PREFIX!,
    collection: env.CHROMA_COLLECTION!,
    services,
    async start(which: (keyof typeof services)[] = ['worker', 'search', 'gateway']) {
      // The worker first: it records the deployment's backend and model before the others read them.
      if (which.includes('worker')) await services.worker.start();
      await Promise.all(which.filter((w) => w !== 'worker').map((w) => services[w].start()));
    },
    async stop() {
      await Promise.all(Object.values(services).map((s) => s.stop()));
    },
    /** Restarts the worker with other settings (micro-batch size, concurrency). */
    async restartWorker(extraEnv: NodeJS.ProcessEnv, cpus?: string) {
      await services.worker.stop();
      await services.worker.start(extraEnv, cpus);
    },
    /** The services' pids, for CPU accounting. */
    pids(): Partial<Record<ServiceName, number>> {
      return Object.fromEntries(Object.values(services).map((s) => [s.name, s.pid]));
    },
    /** A counter or histogram sum from the worker's Prometheus metrics (summed over label sets). */
    async workerMetric(name: string): Promise<number> {
      const text = await fetch(`${workerUrl}/metrics`).then((r) => r.text());
      let total = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith('#')) continue;
        const match = /^([a-zA-Z_:]+)(\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
        if (match && match[1] === name) total += Number(match[3]);
      }
      return total;
    },
  };
}
export type BenchStack = ReturnType<typeof createBenchStack>;

/** POST a JSON body; throws unless the status is expected. */
export async function postJson<T>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  expect: number[] = [200, 201, 202],
): Promise<T> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!expect.includes(response.status))
    throw new Error(`POST ${url} answered ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}
