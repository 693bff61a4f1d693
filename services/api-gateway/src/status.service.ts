import type { Queue } from 'bullmq';
import { QueueName, type BackendChoice, type DeploymentRegistry, type MemoryStore } from 'memory-core';
import type { SearchClient } from './search-client';

/** What `GET /api/memory/status` reports: backend and why, model, counts, queues, workers, peers. */
export class StatusService {
  constructor(
    private readonly store: MemoryStore,
    private readonly choice: BackendChoice,
    private readonly registry: DeploymentRegistry,
    private readonly queues: Queue[],
    private readonly search: SearchClient,
  ) {}

  /** Creates the schema or collection if missing (idempotent) and reports the status. */
  async initialize() {
    await this.store.initialize();
    return { initialized: true, ...(await this.status()) };
  }

  async status() {
    const [store, embedding, queues, searchService] = await Promise.all([
      this.store.status(),
      this.registry.getEmbeddingModel().catch(() => null),
      Promise.all(
        this.queues.map(async (queue) => {
          try {
            const [counts, workers] = await Promise.all([
              queue.getJobCounts(
                'waiting',
                'active',
                'completed',
                'failed',
                'delayed',
                'prioritized',
                'waiting-children',
              ),
              queue.getWorkersCount(),
            ]);
            return [queue.name, { ...counts, workers }] as const;
          } catch (error) {
            return [queue.name, { error: (error as Error).message }] as const;
          }
        }),
      ),
      this.search.info(),
    ]);
    const queueMap = Object.fromEntries(queues);
    const workers = Math.max(0, ...queues.map(([, q]) => ('workers' in q ? q.workers : 0)));
    // Degraded when any part a request needs does not answer. Without a worker, stores are accepted
    // but wait: their memories are safe in the queue, yet nothing is embedded or written.
    const problems = [
      ...(store.reachable ? [] : [`the ${this.choice.backend} store does not answer`]),
      ...(searchService.reachable ? [] : ['the search service does not answer']),
      ...queues.flatMap(([name, q]) =>
        'error' in q
          ? [`queue ${name} cannot be read (Redis)`]
          : name === QueueName.Ingest && q.workers === 0
            ? [`no embedding worker serves queue ${name}: stores wait in it`]
            : [],
      ),
    ];
    return {
      status: problems.length === 0 ? 'ok' : 'degraded',
      problems,
      backend: this.choice.backend,
      backend_reason: this.choice.reason,
      store,
      memory_count: store.memory_count ?? null,
      embedding: embedding ?? { model: null, dtype: null, dimension: null },
      queues: queueMap,
      workers,
      search_service: searchService,
    };
  }
}
