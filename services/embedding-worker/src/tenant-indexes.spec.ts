import pino from 'pino';
import type { TenantIndexPolicy, TenantIndexReport } from 'memory-core';
import { TenantIndexMaintainer, type TenantIndexTarget } from './tenant-indexes';

/** A store whose runs finish when the test says so. */
class FakeTarget implements TenantIndexTarget {
  runs: { policy: TenantIndexPolicy; signal?: AbortSignal; finish: (error?: Error) => void }[] = [];
  maintainTenantIndexes(policy: TenantIndexPolicy, signal?: AbortSignal): Promise<TenantIndexReport> {
    return new Promise((resolve, reject) => {
      const finish = (error?: Error) =>
        error ? reject(error) : resolve({ built: [], dropped: 0, kept: 0, capped: 0 });
      this.runs.push({ policy, signal, finish });
      // As the store does: an abort cancels the build in progress.
      signal?.addEventListener('abort', () => finish());
    });
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const silent = pino({ level: 'silent' });

describe('TenantIndexMaintainer', () => {
  afterEach(() => jest.useRealTimers());

  it('runs at start and then every interval, with the policy it was given', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate'] });
    const target = new FakeTarget();
    const maintainer = new TenantIndexMaintainer(target, { minMemories: 123 }, 60_000, silent);
    maintainer.start();
    expect(target.runs).toHaveLength(1);
    expect(target.runs[0]!.policy).toEqual({ minMemories: 123 });
    target.runs[0]!.finish();
    await tick();
    jest.advanceTimersByTime(59_000);
    expect(target.runs).toHaveLength(1);
    jest.advanceTimersByTime(1_000);
    expect(target.runs).toHaveLength(2);
    target.runs[1]!.finish();
    await maintainer.stop();
  });

  it('never runs twice at once: a run asked for meanwhile follows the one in progress, once', async () => {
    const target = new FakeTarget();
    const maintainer = new TenantIndexMaintainer(target, { minMemories: 1 }, 60_000, silent);
    maintainer.runSoon();
    maintainer.runSoon();
    maintainer.runSoon();
    expect(target.runs).toHaveLength(1);
    target.runs[0]!.finish();
    await tick();
    expect(target.runs).toHaveLength(2);
    target.runs[1]!.finish();
    await tick();
    expect(target.runs).toHaveLength(2);
    await maintainer.stop();
  });

  it('a failed run is logged and the next one still happens', async () => {
    const target = new FakeTarget();
    const maintainer = new TenantIndexMaintainer(target, { minMemories: 1 }, 60_000, silent);
    maintainer.runSoon();
    target.runs[0]!.finish(new Error('PostgreSQL is restarting'));
    await tick();
    maintainer.runSoon();
    expect(target.runs).toHaveLength(2);
    target.runs[1]!.finish();
    await maintainer.stop();
  });

  it('stop aborts the run in progress, waits for it, and starts no other', async () => {
    const target = new FakeTarget();
    const maintainer = new TenantIndexMaintainer(target, { minMemories: 1 }, 60_000, silent);
    maintainer.start();
    maintainer.runSoon();
    await maintainer.stop();
    expect(target.runs[0]!.signal?.aborted).toBe(true);
    await tick();
    maintainer.runSoon();
    expect(target.runs).toHaveLength(1);
  });
});
