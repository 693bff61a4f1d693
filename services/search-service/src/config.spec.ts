import { loadSearchServiceConfig } from './config';

describe('search service EMBEDDING_THREADS', () => {
  it('embeds queries in the search service’s own thread unless told otherwise', () => {
    expect(loadSearchServiceConfig({}).EMBEDDING_THREADS).toBe(0);
    expect(loadSearchServiceConfig({ EMBEDDING_THREADS: '2' }).EMBEDDING_THREADS).toBe(2);
  });
});
