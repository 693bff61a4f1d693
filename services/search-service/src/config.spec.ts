import { loadSearchServiceConfig } from './config';

describe('search service EMBEDDING_THREADS', () => {
  it('embeds queries in the search service’s own thread unless told otherwise', () => {
    expect(loadSearchServiceConfig({}).EMBEDDING_THREADS).toBe(0);
    expect(loadSearchServiceConfig({ EMBEDDING_THREADS: '2' }).EMBEDDING_THREADS).toBe(2);
  });
});

describe('search service SERVER_TIMING', () => {
  it('is off unless turned on, and refuses a value that is not a boolean', () => {
    expect(loadSearchServiceConfig({}).SERVER_TIMING).toBe(false);
    expect(loadSearchServiceConfig({ SERVER_TIMING: 'true' }).SERVER_TIMING).toBe(true);
    expect(() => loadSearchServiceConfig({ SERVER_TIMING: 'sometimes' })).toThrow(/SERVER_TIMING/);
  });
});
