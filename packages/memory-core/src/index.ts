export * from './errors';
export * from './logging';
export * from './config';
export * from './memory';
export * from './embedding';
export * from './storage';
