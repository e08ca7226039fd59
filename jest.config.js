/** Jest runs TypeScript through swc. Unit suites need nothing; the others talk to the real local stack. */
const transform = { '^.+\\.(ts|js)$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] };
// Jest cannot require() ES modules; the few ESM-only dependencies (of @fastify/static) are compiled to CommonJS.
const transformIgnorePatterns = ['/node_modules/(?!(content-disposition|cookie)/)'];

module.exports = {
  testTimeout: 120000,
  verbose: true,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      transform,
      transformIgnorePatterns,
      testMatch: ['<rootDir>/test/{integration,workflows,api,faults,console}/**/*.test.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
    },
  ],
};
