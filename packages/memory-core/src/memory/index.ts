export * from './memory.schemas';
export * from './filter';
export * from './api.schemas';
export * from './memory-view';
export * from './memory-record';
