import type { Embedder } from 'memory-core';
import { QueryEmbeddingCache } from './query-embedding-cache';

const countingEmbedder = () => {
  const calls: string[][] = [];
  const embedder: Embedder = {
    info: { model: 'fake', dtype: 'q8', dimension: 1 },
    embed: async (texts) => {
      calls.push(texts);
      return texts.map((t) => new Float32Array([t.length]));
    },
    close: async () => undefined,
  };
  return { embedder, calls };
};

describe('QueryEmbeddingCache', () => {
  it('embeds a repeated query once', async () => {
    const { embedder, calls } = countingEmbedder();
    const cache = new QueryEmbeddingCache(embedder, 10);
    expect(await cache.embed('what is wisdom?')).toMatchObject({ cached: false });
    expect(await cache.embed('what is wisdom?')).toMatchObject({
      cached: true,
      vector: new Float32Array([15]),
    });
    expect(calls).toEqual([['what is wisdom?']]);
  });

  it('evicts the least recently used query beyond its size', async () => {
    const { embedder, calls } = countingEmbedder();
    const cache = new QueryEmbeddingCache(embedder, 2);
    await cache.embed('a');
    await cache.embed('b');
    await cache.embed('a');
    await cache.embed('c'); // evicts b
    expect((await cache.embed('a')).cached).toBe(true);
    expect((await cache.embed('b')).cached).toBe(false);
    expect(calls.flat()).toEqual(['a', 'b', 'c', 'b']);
  });

  it('caches nothing when its size is 0', async () => {
    const { embedder, calls } = countingEmbedder();
    const cache = new QueryEmbeddingCache(embedder, 0);
    await cache.embed('a');
    await cache.embed('a');
    expect(calls).toHaveLength(2);
  });
});
