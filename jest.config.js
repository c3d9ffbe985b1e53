/**
 * The jest configuration of the fast tier (`npm test`): every test but the slow tier's, which are
 * the files under an `e2e/` folder (real learning on real data) and those named `*.slow.test.ts`
 * (kernels against PyTorch, nested runs); `npm run test:slow` runs those (jest.slow.config.js).
 * TypeScript is compiled by swc (type checking is `tsc -b`, which `npm test` runs first);
 * `@ddpm/*` imports resolve to each package's source so unit tests never depend on a stale build.
 */
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');

/**
 * Maps every workspace's package name, and each subpath its package.json exports, to the source
 * file behind it (`./dist/x.js` → `src/x.ts`).
 */
function workspaceModuleMap() {
  const map = {};
  for (const group of ['packages', 'apps', 'tools']) {
    const dir = path.join(__dirname, group);
    if (!fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir)) {
      const pkgFile = path.join(dir, name, 'package.json');
      if (!fs.existsSync(pkgFile)) continue;
      const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'));
      for (const [subpath, target] of Object.entries(pkg.exports ?? {})) {
        const built = typeof target === 'string' ? target : target.default;
        const source = path.join(dir, name, built.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts'));
        if (!fs.existsSync(source)) continue;
        const request = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
        map[`^${request.replace(/[/.]/g, (c) => `\\${c}`)}$`] = source;
      }
    }
  }
  return map;
}

/** Test files of the slow tier, as jest path patterns (jest.slow.config.js matches the same files). */
const SLOW_TESTS = ['/e2e/', '\\.slow\\.test\\.ts$'];

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/apps', '<rootDir>/tools', '<rootDir>/test'].filter((p) =>
    fs.existsSync(p.replace('<rootDir>', __dirname)),
  ),
  testMatch: ['**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/', ...SLOW_TESTS],
  // Two test files at a time even on 2 cores: the service tests spend much of their time waiting
  // (rank timeouts, heartbeats, child processes starting), which the other file's work fills.
  // Every test keeps to its own queue prefix, store, ports and shared-memory names.
  maxWorkers: Math.max(2, os.availableParallelism() - 1),
  moduleNameMapper: workspaceModuleMap(),
  // A few dependencies ship ESM only (cookie 2, used by fastify's inject); jest's CommonJS runtime
  // needs them transformed.
  transformIgnorePatterns: ['/node_modules/(?!(cookie)/)'],
  transform: {
    '/node_modules/cookie/.+\\.js$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'ecmascript' }, target: 'es2022' }, module: { type: 'commonjs' } },
    ],
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
        sourceMaps: 'inline',
      },
    ],
  },
  testTimeout: 60_000,
};
