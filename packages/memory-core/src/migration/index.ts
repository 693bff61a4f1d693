export * from './chroma-mapping.schema';
export * from './record-mapper';
export * from './chroma-collection.source';
export * from './migration-checkpoints';
export * from './chroma-migration';
export * from './migration-jobs';
