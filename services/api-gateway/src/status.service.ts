import type { Queue } from 'bullmq';
import type { BackendChoice, DeploymentRegistry, MemoryStore } from 'memory-core';
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
    return {
      // Degraded when any part a request may need does not answer: the store, Redis, the search service.
      status:
        store.reachable && searchService.reachable && queues.every(([, q]) => !('error' in q))
          ? 'ok'
          : 'degraded',
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
