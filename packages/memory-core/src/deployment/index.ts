export * from './deployment-registry';
export * from './backend-selection';
