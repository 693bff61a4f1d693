// Three projects: unit tests next to the code (fakes only, no servers), integration tests under
// test/integration and end-to-end tests under test/e2e (real PostgreSQL+pgvector, Redis, Chroma).
// ts-jest transpiles each file alone (types are checked by `tsc -b` and `tsc -p tsconfig.test.json`).
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.test.json' }] };
const moduleNameMapper = { '^memory-core$': '<rootDir>/packages/memory-core/src/index.ts' };
const common = {
  rootDir: __dirname,
  testEnvironment: '<rootDir>/test/setup/node-environment.js',
  transform,
  moduleNameMapper,
};

/** @type {import('jest').Config} */
module.exports = {
  // Integration and e2e tests start servers and processes; unit tests finish in milliseconds anyway.
  testTimeout: 300_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/{packages,services}/*/src/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/setup/global-setup.ts',
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
      globalSetup: '<rootDir>/test/setup/global-setup.ts',
    },
  ],
};
