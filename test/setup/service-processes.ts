import { ServiceProcess } from '../../bench/lib/service-process';
import { dropTestCollections, servers, testModel, uniqueName } from './servers';

// One process harness for the end-to-end tests and the benchmarks.
export { ServiceProcess, type ServiceName } from '../../bench/lib/service-process';

export interface StackOptions {
  backend: 'postgres' | 'chroma';
  /** PostgreSQL schema for this stack (create it with createTestSchema). */
  schema?: string;
  env?: NodeJS.ProcessEnv;
}

let nextPort = 18_000 + Math.floor(Math.random() * 1_000) * 4;

/**
 * The three services as real processes on their own ports, with their own queue prefix, schema and
 * Chroma collection, so that test files never see each other's data.
 */
export function createStack(options: StackOptions) {
  const ports = { gateway: nextPort, search: nextPort + 1, worker: nextPort + 2 };
  nextPort += 4;
  const id = uniqueName('e2e');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.E2E_LOG_LEVEL ?? 'info',
    REDIS_URL: servers.redisUrl,
    DATABASE_URL: servers.databaseUrl,
    DATABASE_SCHEMA: options.schema ?? 'public',
    CHROMA_URL: servers.chromaUrl,
    CHROMA_COLLECTION: id,
    MEMORY_BACKEND: options.backend,
    QUEUE_PREFIX: `{${id}}`,
    EMBEDDING_MODEL: testModel.model,
    EMBEDDING_DTYPE: testModel.dtype,
    GATEWAY_PORT: String(ports.gateway),
    SEARCH_SERVICE_PORT: String(ports.search),
    SEARCH_SERVICE_URL: `http://127.0.0.1:${ports.search}`,
    WORKER_METRICS_PORT: String(ports.worker),
    ...options.env,
  };
  const gatewayUrl = `http://127.0.0.1:${ports.gateway}`;
  const services = {
    search: new ServiceProcess('search-service', env, `http://127.0.0.1:${ports.search}/healthz`),
    worker: new ServiceProcess('embedding-worker', env, `http://127.0.0.1:${ports.worker}/healthz`),
    gateway: new ServiceProcess('api-gateway', env, `${gatewayUrl}/healthz`),
  };
  return {
    env,
    ports,
    gatewayUrl,
    queuePrefix: env.QUEUE_PREFIX!,
    collection: id,
    services,
    async start() {
      // The worker first: it records the deployment's backend and model before the others read them.
      await services.worker.start();
      await Promise.all([services.search.start(), services.gateway.start()]);
    },
    async stop() {
      await Promise.all(Object.values(services).map((s) => s.stop()));
    },
    /** Stops the services and deletes the stack's Chroma collection: for a test file's afterAll. */
    async dispose() {
      await this.stop();
      await dropTestCollections(id);
    },
    /** fetch against the gateway with a JSON body. */
    async call(method: string, route: string, body?: unknown, headers: Record<string, string> = {}) {
      const response = await fetch(`${gatewayUrl}${route}`, {
        method,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await response.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: response.status, body: json as any, text, headers: response.headers }; // eslint-disable-line @typescript-eslint/no-explicit-any
    },
  };
}
export type Stack = ReturnType<typeof createStack>;

/** Polls a job through the gateway until it is completed or failed. */
export async function waitForJob(stack: Stack, jobId: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status, body } = await stack.call('GET', `/api/memory/jobs/${encodeURIComponent(jobId)}`);
    if (status === 200 && (body.state === 'completed' || body.state === 'failed')) return body;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${body?.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
