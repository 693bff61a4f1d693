import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { coreEnvShape } from 'memory-core';
import { benchModel, servers } from './paths';
import { ServiceProcess, type ServiceName } from './service-process';
import { summarize, type LatencySummary } from './stats';

export type { Rss } from './service-process';

/** The services' DATABASE_POOL_SIZE when unset, on this machine (2 per core). */
export const DEFAULT_POOL_SIZE = coreEnvShape.DATABASE_POOL_SIZE.parse(undefined);

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

/**
 * Keeps connections open between requests, as a client of a service would. The bench's requests go
 * through node:http rather than fetch, whose own time per request is larger and more variable
 * (`clientOverhead` measures both; BENCHMARKS.md, search): that would be the client's time, not the
 * service's.
 */
// `timeout`, as Node's global agent has it: an idle connection is closed before the server's own
// keep-alive timeout (a second before the one it announces), so a request is not sent on a
// connection the server is closing.
const agent = new http.Agent({ keepAlive: true, timeout: 5_000 });

/** `postJson`, with the answer's headers. */
export async function postJsonWithHeaders<T>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  expect: number[] = [200, 201, 202],
): Promise<{ body: T; headers: http.IncomingHttpHeaders }> {
  const answer = await post(url, body, headers);
  if (!expect.includes(answer.status))
    throw new Error(`POST ${url} answered ${answer.status}: ${answer.text.slice(0, 500)}`);
  return { body: JSON.parse(answer.text) as T, headers: answer.headers };
}

type Answer = { status: number; text: string; headers: http.IncomingHttpHeaders };

/**
 * POST a JSON body through `agent`; whatever the status, the answer's status, text and headers. A
 * kept-alive connection the server closed as the request went out (ECONNRESET before any answer) is
 * retried once on a new one, as Node's documentation advises.
 */
export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const payload = JSON.stringify(body);
  try {
    return await postOnce(url, payload, headers);
  } catch (error) {
    if (!(error instanceof StaleConnectionError)) throw error;
    return postOnce(url, payload, headers);
  }
}

class StaleConnectionError extends Error {}

function postOnce(url: string, payload: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          ...headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            headers: response.headers,
          }),
        );
      },
    );
    request.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        request.reusedSocket && error.code === 'ECONNRESET'
          ? new StaleConnectionError(error.message, { cause: error })
          : error,
      ),
    );
    request.end(payload);
  });
}

/** `embed;dur=1.2, store;dur=3.4` → { embed: 1.2, store: 3.4 } (ms); a header sent twice counts as one list. */
export function parseServerTiming(header: string | string[] | null | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of [header ?? ''].flat().join(',').split(',')) {
    const [name, ...params] = entry.trim().split(';');
    const dur = params.find((p) => p.trim().startsWith('dur='));
    if (name && dur) out[name] = Number(dur.trim().slice('dur='.length));
  }
  return out;
}

/** Latency of each client against the same static server: what the client itself adds. */
export interface ClientOverhead {
  http: LatencySummary;
  fetch: LatencySummary;
  /** Bytes of the server's answer (a search answer's size). */
  answerBytes: number;
}

/**
 * `postJsonWithHeaders` (node:http) and fetch, alternating, against a server in another process that
 * answers every POST with the same JSON of about a top-10 search answer's size: the time each client
 * takes around a request that costs the server next to nothing.
 */
export async function clientOverhead(requests = 2_000): Promise<ClientOverhead> {
  const hit = { id: randomUUID(), content: 'x'.repeat(180), metadata: { source: 'bench' }, similarity: 0.5 };
  const answer = JSON.stringify({ results: Array.from({ length: 10 }, () => hit), backend: 'postgres' });
  const server = spawn(
    process.execPath,
    [
      '-e',
      `const answer = ${JSON.stringify(answer)};
       require('node:http').createServer((req, res) => {
         req.resume();
         req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
       }).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      server.once('exit', (code) => reject(new Error(`client-overhead server exited (${code})`)));
    });
    const url = `http://127.0.0.1:${port}/`;
    const body = { query: 'what do I know that is like this?', n_results: 10 };
    const viaFetch = async () => {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      JSON.parse(await response.text());
    };
    const viaHttp = () => postJsonWithHeaders(url, body);
    const samples = { http: [] as number[], fetch: [] as number[] };
    for (let i = 0; i < requests / 10; i += 1) await Promise.all([viaHttp(), viaFetch()]);
    for (let round = 0; round < 4; round += 1) {
      for (const [name, call] of [
        ['http', viaHttp],
        ['fetch', viaFetch],
      ] as const) {
        for (let i = 0; i < requests / 4; i += 1) {
          const start = performance.now();
          await call();
          samples[name].push(performance.now() - start);
        }
      }
    }
    return {
      http: summarize(samples.http),
      fetch: summarize(samples.fetch),
      answerBytes: Buffer.byteLength(answer),
    };
  } finally {
    server.kill();
  }
}
