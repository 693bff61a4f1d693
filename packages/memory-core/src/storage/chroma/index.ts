export { ChromaMemoryStore, type ChromaMemoryStoreOptions } from './chroma-memory.store';
export { toChromaWhere } from './chroma-where';
