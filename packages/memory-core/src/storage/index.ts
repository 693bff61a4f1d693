export * from './memory-store';
export * from './chroma';
