import type { ChainableCommander } from 'ioredis';
import { execAll } from './tombstones';

/** A pipeline whose `exec` resolves with these replies, as ioredis does even when commands failed. */
const pipelineAnswering = (replies: [Error | null, unknown][] | null) =>
  ({ exec: async () => replies }) as unknown as ChainableCommander;

describe('execAll', () => {
  it('gives each command its reply', async () => {
    await expect(
      execAll(
        pipelineAnswering([
          [null, 1],
          [null, 'OK'],
          [null, null],
        ]),
      ),
    ).resolves.toEqual([1, 'OK', null]);
  });

  it('throws the first failed command, rather than reading it as an empty reply', async () => {
    const lost = new Error('Connection is closed.');
    await expect(
      execAll(
        pipelineAnswering([
          [null, 1],
          [lost, null],
        ]),
      ),
    ).rejects.toBe(lost);
  });

  it('throws for an aborted transaction', async () => {
    await expect(execAll(pipelineAnswering(null))).rejects.toThrow(/aborted/);
  });
});
