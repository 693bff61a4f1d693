import type { Logger, TenantIndexPolicy, TenantIndexReport } from 'memory-core';

export interface TenantIndexTarget {
  maintainTenantIndexes(policy: TenantIndexPolicy, signal?: AbortSignal): Promise<TenantIndexReport>;
}

/**
 * Keeps users' own HNSW graphs in step with the data (`PgvectorMemoryStore.maintainTenantIndexes`):
 * once at start, every `intervalMs`, and soon after a migration. One run at a time in this process;
 * a run asked for during another one follows it. Workers of one deployment share the work through
 * the store's advisory lock.
 */
export class TenantIndexMaintainer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private readonly stopping = new AbortController();

  constructor(
    private readonly store: TenantIndexTarget,
    private readonly policy: TenantIndexPolicy,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.runSoon();
    this.timer = setInterval(() => this.runSoon(), this.intervalMs);
    this.timer.unref();
  }

  /** Starts a run now, or right after the one in progress. */
  runSoon(): void {
    if (this.stopping.signal.aborted) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.runOnce().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.runSoon();
      }
    });
  }

  /** Cancels a build in progress (the next start rebuilds it) and waits for the run to end. */
  async stop(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.timer);
    await this.running;
  }

  private async runOnce(): Promise<void> {
    try {
      const report = await this.store.maintainTenantIndexes(this.policy, this.stopping.signal);
      if (report.busy) this.log.debug('tenant indexes: another process is maintaining them');
      else if (report.built.length > 0 || report.dropped > 0 || report.capped > 0)
        this.log.info(
          {
            built: report.built.map((b) => ({ memories: b.memories, ms: Math.round(b.ms) })),
            dropped: report.dropped,
            kept: report.kept,
            // Users who would get a graph but for TENANT_INDEX_MAX_GRAPHS.
            capped: report.capped,
          },
          'tenant indexes maintained',
        );
    } catch (error) {
      this.log.warn({ err: error }, 'tenant index maintenance failed; retrying at the next interval');
    }
  }
}
