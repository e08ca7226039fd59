/**
 * The cluster profile's suites (test/cluster/), run on their own: `npm run test:cluster`. They bring the cluster
 * profile up (`stack.sh up --profile cluster`, built once: several minutes cold), so they are not part of `npm test`.
 */
const { transform, transformIgnorePatterns } = require('../../jest.config.js').projects[0];

module.exports = {
  rootDir: '../..',
  testTimeout: 300000,
  verbose: true,
  testEnvironment: 'node',
  transform,
  transformIgnorePatterns,
  testMatch: ['<rootDir>/test/cluster/**/*.test.ts'],
};
