export * from './job-catalogue';
export * from './tombstones';
