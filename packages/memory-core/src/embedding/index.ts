export * from './embedder';
export * from './transformers.embedder';
export * from './threaded.embedder';
