/**
 * The slow tier (`npm run test:slow`): what must train or run a reference for real. The learning
 * end-to-end tests (`e2e/` folders), the comparisons with PyTorch and torchvision, and nested runs
 * (`*.slow.test.ts`). Everything else is the fast tier's (jest.config.js).
 */
const fast = require('./jest.config');

module.exports = {
  ...fast,
  testMatch: ['**/e2e/**/*.test.ts', '**/*.slow.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  // A learning test trains for minutes, and timing comparisons want the machine to themselves.
  testTimeout: 900_000,
  maxWorkers: 1,
};
