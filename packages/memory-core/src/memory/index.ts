export * from './memory.schemas';
export * from './filter';
