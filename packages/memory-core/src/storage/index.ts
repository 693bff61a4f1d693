export * from './memory-store';
