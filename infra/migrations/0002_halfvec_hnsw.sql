-- The HNSW graph over half-precision copies of the vectors: half the bytes per vector in the index
-- (1M memories: ~1 GiB instead of ~2 GiB), so more of it stays in shared_buffers, and pgvector's
-- half-precision distance is cheaper to compute. The table keeps full-precision vectors; searches
-- take candidates from this index and re-rank them by exact distance (see the store's search SQL).
-- Measured on real embeddings at 100k (BENCHMARKS.md): recall@10 within 0.003 of the full-precision
-- graph, searches 1.5-2x faster.
-- On an install that already holds memories this rebuilds the graph at start-up (about 5 minutes
-- per million memories on 2 cores); PostgreSQL's default 64 MB of maintenance_work_mem would make
-- that several times slower, so this transaction raises it (an upper bound, allocated as needed).
SET LOCAL maintenance_work_mem = '1GB';
DROP INDEX IF EXISTS memories_embedding_hnsw_idx;
CREATE INDEX memories_embedding_hnsw_idx ON memories
  USING hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
