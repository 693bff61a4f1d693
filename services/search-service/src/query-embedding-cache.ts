import { LRUCache } from 'lru-cache';
import type { Embedder } from 'memory-core';

/** Embeds queries through an LRU cache: a repeated query skips the model. */
export class QueryEmbeddingCache {
  private readonly cache: LRUCache<string, Float32Array> | undefined;

  constructor(
    private readonly embedder: Embedder,
    size: number,
  ) {
    this.cache = size > 0 ? new LRUCache({ max: size }) : undefined;
  }

  async embed(query: string): Promise<{ vector: Float32Array; cached: boolean }> {
    const hit = this.cache?.get(query);
    if (hit) return { vector: hit, cached: true };
    const [vector] = await this.embedder.embed([query]);
    this.cache?.set(query, vector!);
    return { vector: vector!, cached: false };
  }
}
