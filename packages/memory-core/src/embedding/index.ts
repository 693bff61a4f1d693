export * from './embedder';
export * from './transformers.embedder';
