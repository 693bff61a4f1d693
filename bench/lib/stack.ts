import { randomBytes } from 'node:crypto';
import { benchModel, servers } from './paths';
import { ServiceProcess, type ServiceName } from './service-process';

export type { Rss } from './service-process';

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
    worker: new ServiceProcess('embedding-worker', env, `${workerUrl}/healthz`),
    search: new ServiceProcess('search-service', env, `${searchUrl}/healthz`),
    gateway: new ServiceProcess('api-gateway', env, `${gatewayUrl}/healthz`),
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
      await services.worker.start({ env: extraEnv, cpus });
    },
    /** The services' pids, for CPU accounting. */
    pids(): Partial<Record<ServiceName, number>> {
      return Object.fromEntries(Object.values(services).map((s) => [s.name, s.pid]));
    },
    /**
     * A counter or histogram sum from a service's Prometheus metrics, summed over the label sets
     * that carry every one of `labels`.
     */
    async metric(
      service: 'worker' | 'search' | 'gateway',
      name: string,
      labels: Record<string, string> = {},
    ): Promise<number> {
      const base = { worker: workerUrl, search: searchUrl, gateway: gatewayUrl }[service];
      const text = await fetch(`${base}/metrics`).then((r) => r.text());
      const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      let total = 0;
      for (const line of text.split('\n')) {
        if (line.startsWith('#')) continue;
        const match = /^([a-zA-Z_:]+)(\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
        if (!match || match[1] !== name) continue;
        const set = match[2]?.slice(1, -1).split(',') ?? [];
        if (wanted.every((w) => set.includes(w))) total += Number(match[3]);
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
  return (await postJsonWithHeaders<T>(url, body, headers, expect)).body;
}

/** `postJson`, with the answer's headers. */
export async function postJsonWithHeaders<T>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  expect: number[] = [200, 201, 202],
): Promise<{ body: T; headers: Headers }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!expect.includes(response.status))
    throw new Error(`POST ${url} answered ${response.status}: ${text.slice(0, 500)}`);
  return { body: JSON.parse(text) as T, headers: response.headers };
}

/** `embed;dur=1.2, store;dur=3.4` → { embed: 1.2, store: 3.4 } (ms). */
export function parseServerTiming(header: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of (header ?? '').split(',')) {
    const [name, ...params] = entry.trim().split(';');
    const dur = params.find((p) => p.trim().startsWith('dur='));
    if (name && dur) out[name] = Number(dur.trim().slice('dur='.length));
  }
  return out;
}
