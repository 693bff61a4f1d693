export * from './runtime';
export * from './chunks';
