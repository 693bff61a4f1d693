export * from './memory-store';
export * from './chroma';
export * from './pgvector';
