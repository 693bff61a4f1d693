import { orUnavailable, RedisDown, UnavailableError } from './app-error';

describe('orUnavailable', () => {
  it("passes the call's value through", async () => {
    await expect(orUnavailable(async () => 42, RedisDown.state)).resolves.toBe(42);
  });

  it('turns any failure into a 503 with the given code and message, keeping the cause', async () => {
    const cause = new Error('connect ECONNREFUSED 127.0.0.1:6379');
    const error = await orUnavailable(() => Promise.reject(cause), RedisDown.queue).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect(error).toMatchObject({
      httpStatus: 503,
      code: 'queue_unavailable',
      message: 'the job queue (Redis) does not answer',
    });
    expect((error as Error).cause).toBe(cause);
  });

  it('also catches a call that throws before returning a promise', async () => {
    const error = await orUnavailable(() => {
      throw new Error('stream not writable');
    }, RedisDown.state).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'redis_unavailable' });
  });
});
