import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { GatewayEnv } from '../../services/api-gateway/src/config';
import { WorkerEnv } from '../../services/embedding-worker/src/config';
import { SearchServiceEnv } from '../../services/search-service/src/config';
import { repoRoot } from '../setup/servers';

/**
 * No Docker engine runs here, so the compose file is checked statically: every service's environment
 * passes that service's own config schema, and the URLs and ports point at each other consistently.
 */
interface ComposeService {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test: unknown };
  depends_on?: Record<string, { condition: string }>;
  command?: string[];
}
const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
};
const services = compose.services;
const ours = {
  'api-gateway': GatewayEnv,
  'embedding-worker': WorkerEnv,
  'search-service': SearchServiceEnv,
} as const;
const env = (name: string) => services[name]!.environment ?? {};
const hostPort = (url: string) => {
  const u = new URL(url);
  return { host: u.hostname, port: u.port };
};

describe('docker-compose.yml', () => {
  it('runs the three services, PostgreSQL with pgvector, Redis and Chroma', () => {
    expect(Object.keys(services).sort()).toEqual([
      'api-gateway',
      'chroma',
      'embedding-worker',
      'postgres',
      'redis',
      'search-service',
    ]);
    expect(services.postgres!.image).toMatch(/^pgvector\/pgvector:pg\d+/);
    expect(services.chroma!.image).toMatch(/^chromadb\/chroma:/);
  });

  it.each(Object.keys(ours))('gives %s an environment its config schema accepts', (name) => {
    const schema = ours[name as keyof typeof ours];
    const result = schema.safeParse(env(name));
    expect(result.success ? [] : result.error.issues).toEqual([]);
    expect(services[name]!.build).toBeDefined();
    expect(env(name).SERVICE).toBe(name);
  });

  it('runs Redis with AOF persistence', () => {
    expect(services.redis!.command).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
  });

  it('points every URL at a compose service, on the port that service listens on', () => {
    for (const name of Object.keys(ours)) {
      const e = env(name);
      expect(hostPort(e.DATABASE_URL!)).toEqual({ host: 'postgres', port: '5432' });
      expect(hostPort(e.REDIS_URL!)).toEqual({ host: 'redis', port: '6379' });
      expect(hostPort(e.CHROMA_URL!)).toEqual({ host: 'chroma', port: '8000' });
      // The credentials match what the postgres container creates.
      const db = new URL(e.DATABASE_URL!);
      expect([db.username, db.password, db.pathname]).toEqual([
        env('postgres').POSTGRES_USER,
        env('postgres').POSTGRES_PASSWORD,
        `/${env('postgres').POSTGRES_DB}`,
      ]);
    }
    const search = SearchServiceEnv.parse(env('search-service'));
    expect(hostPort(env('api-gateway').SEARCH_SERVICE_URL!)).toEqual({
      host: 'search-service',
      port: String(search.SEARCH_SERVICE_PORT),
    });
    expect(search.SEARCH_SERVICE_HOST).toBe('0.0.0.0');
  });

  it('publishes the gateway on the port it listens on, and health-checks it there', () => {
    const gateway = GatewayEnv.parse(env('api-gateway'));
    expect(gateway.GATEWAY_HOST).toBe('0.0.0.0');
    // Operators reach Bull Board and migrations from outside the container with the host's password.
    expect(gateway.ADMIN_PASSWORD).toBe('${ADMIN_PASSWORD:-}');
    expect(services['api-gateway']!.ports).toEqual([`${gateway.GATEWAY_PORT}:${gateway.GATEWAY_PORT}`]);
    expect(JSON.stringify(services['api-gateway']!.healthcheck!.test)).toContain(
      `:${gateway.GATEWAY_PORT}/healthz`,
    );
    const worker = WorkerEnv.parse(env('embedding-worker'));
    expect(JSON.stringify(services['embedding-worker']!.healthcheck!.test)).toContain(
      `:${worker.WORKER_METRICS_PORT}/healthz`,
    );
  });

  it('gives the worker and search service the same model and dtype', () => {
    const worker = WorkerEnv.parse(env('embedding-worker'));
    const search = SearchServiceEnv.parse(env('search-service'));
    expect([worker.EMBEDDING_MODEL, worker.EMBEDDING_DTYPE]).toEqual([
      search.EMBEDDING_MODEL,
      search.EMBEDDING_DTYPE,
    ]);
  });

  it('health-checks every container and declares every named volume it mounts', () => {
    for (const [name, service] of Object.entries(services)) {
      expect([name, service.healthcheck?.test]).toEqual([name, expect.anything()]);
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        expect(Object.keys(compose.volumes)).toContain(source);
      }
    }
    for (const name of Object.keys(ours)) {
      expect(services[name]!.depends_on).toMatchObject({
        postgres: { condition: 'service_healthy' },
        redis: { condition: 'service_healthy' },
        chroma: { condition: 'service_healthy' },
      });
    }
  });

  it('builds from a Dockerfile under infra/docker', () => {
    const build = services['api-gateway']!.build as { dockerfile: string };
    const dockerfile = readFileSync(path.join(repoRoot, build.dockerfile), 'utf8');
    expect(build.dockerfile).toMatch(/^infra\/docker\//);
    expect(dockerfile).toMatch(/services\/\$\{SERVICE\}\/dist\/main\.js/);
  });
});
