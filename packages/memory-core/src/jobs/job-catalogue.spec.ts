import { jobDeferral } from './job-catalogue';

describe('a job deferral as a line of the job log', () => {
  it('reads back what it wrote', () => {
    const deferral = { reason: 'backend_unavailable', retry_at: '2026-12-06T05:00:10.000Z' };
    const line = jobDeferral.format(deferral);
    expect(line).toBe('deferred: backend_unavailable until 2026-12-06T05:00:10.000Z (no attempt used)');
    expect(jobDeferral.parse(line)).toEqual(deferral);
  });

  it.each([
    ['no line', undefined],
    ['another log line', 'migrated 500 of 1000'],
    [
      'a deferral line with more after it',
      'deferred: backend_unavailable until x (no attempt used) and more',
    ],
    ['a code that is not one', 'deferred: Backend Down until x (no attempt used)'],
  ])('is not read from %s', (_, line) => {
    expect(jobDeferral.parse(line)).toBeNull();
  });
});
