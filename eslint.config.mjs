// ESLint for the whole repository: typescript-eslint's recommended type-checked rules on every
// TypeScript file (sources and tests alike), the house's limits on source files (450 lines a
// file, 80 a function, no non-null assertions outside the legacy list), the recommended JavaScript
// rules on the build and generator scripts, and nothing that formatting decides (prettier owns
// that: `npm run format`).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/**
 * Source files that had non-null assertions (`x!`) when the rule below came: mostly numeric loops
 * over typed arrays under noUncheckedIndexedAccess. A file leaves this list once it is rid of them;
 * none joins it (docs/conventions.md).
 */
const NON_NULL_LEGACY = [
  'apps/api/src/app.ts',
  'apps/api/src/host-guard.ts',
  'apps/api/src/job-logs.ts',
  'apps/api/src/job-resolution.ts',
  'apps/api/src/job-view.ts',
  'apps/api/src/jobs-service.ts',
  'apps/api/src/routes/console.ts',
  'apps/api/src/routes/models.ts',
  'apps/api/src/routes/samples.ts',
  'tools/lab/src/bench/cluster-bench.ts',
  'tools/lab/src/bench/fid-bench.ts',
  'tools/lab/src/bench/group-bench.ts',
  'tools/lab/src/bench/op-profile.ts',
  'tools/lab/src/bench/rank-process.ts',
  'tools/lab/src/bench/timing.ts',
  'tools/lab/src/bench/unet-bench.ts',
  'tools/lab/src/chaos/chaos.ts',
  'tools/lab/src/chaos/faults.ts',
  'tools/lab/src/chaos/job-stream.ts',
  'tools/lab/src/chaos/leftovers.ts',
  'tools/lab/src/chaos/memory.ts',
  'tools/lab/src/chaos/references.ts',
  'tools/lab/src/chaos/services.ts',
  'apps/cli/src/commands/eval.ts',
  'apps/cli/src/commands/info.ts',
  'apps/cli/src/commands/schedule.ts',
  'tools/lab/src/commands/study.ts',
  'apps/cli/src/commands/train.ts',
  'apps/cli/src/run-location.ts',
  'tools/lab/src/sim/hosts.ts',
  'tools/lab/src/sim/network.ts',
  'apps/cli/src/table.ts',
  'packages/allreduce/src/bulk.ts',
  'packages/allreduce/src/codec.ts',
  'packages/allreduce/src/collective.ts',
  'packages/allreduce/src/planes/plane.ts',
  'packages/allreduce/src/planes/rank-servers-plane.ts',
  'packages/core/src/rng.ts',
  'packages/data/src/cifar10.ts',
  'packages/data/src/dataset.ts',
  'packages/data/src/formats.ts',
  'packages/data/src/idx.ts',
  'packages/data/src/image-folder.ts',
  'packages/data/src/loader.ts',
  'packages/data/src/procedural.ts',
  'packages/diffusion/src/bound.ts',
  'packages/diffusion/src/gaussian-diffusion.ts',
  'packages/diffusion/src/losses.ts',
  'packages/diffusion/src/samplers/ddim.ts',
  'packages/diffusion/src/samplers/interpolate.ts',
  'packages/diffusion/src/samplers/respace.ts',
  'packages/diffusion/src/samplers/shared-latent.ts',
  'packages/diffusion/src/tables.ts',
  'packages/engine/src/adam.ts',
  'packages/engine/src/charts.ts',
  'packages/engine/src/ema.ts',
  'packages/engine/src/evaluation.ts',
  'packages/engine/src/flat-gradients.ts',
  'packages/engine/src/group-link.ts',
  'packages/engine/src/images.ts',
  'packages/engine/src/micro-batches.ts',
  'packages/engine/src/model-evaluation.ts',
  'packages/engine/src/reference-statistics.ts',
  'packages/engine/src/sampling.ts',
  'packages/engine/src/trainer.ts',
  'packages/engine/src/training-evaluation.ts',
  'packages/eval/src/extractors/fmnist-cnn.ts',
  'packages/eval/src/extractors/inception-v3.ts',
  'packages/eval/src/feature-statistics.ts',
  'packages/eval/src/frechet.ts',
  'packages/eval/src/inception-score.ts',
  'packages/eval/src/kid.ts',
  'packages/eval/src/linalg/product-eigenvalues.ts',
  'packages/eval/src/linalg/products.ts',
  'packages/eval/src/linalg/symmetric-eigen.ts',
  'packages/eval/src/npz.ts',
  'packages/eval/src/pixel-statistics.ts',
  'packages/kernels/src/ops/backend-caps.ts',
  'packages/kernels/src/ops/concat.ts',
  'packages/kernels/src/ops/conv2d.ts',
  'packages/kernels/src/ops/dropout.ts',
  'packages/kernels/src/ops/heap-kernels.ts',
  'packages/kernels/src/ops/matmul.ts',
  'packages/kernels/src/ops/softmax.ts',
  'packages/kernels/src/ops/wasm-kernels.ts',
  'packages/kernels/src/ops/winograd.ts',
  'packages/runs/src/checkpoint.ts',
  'packages/runs/src/loss-curve.ts',
  'packages/safetensors/src/safetensors.ts',
  'packages/storage/src/patient-store.ts',
  'packages/storage/src/s3-store.ts',
  'packages/unet/src/unet.ts',
  'packages/unet/src/weights-io.ts',
];

/** What the size and non-null rules leave out: tests, their helpers, and learning tests. */
const NOT_SOURCE = ['**/*.test.ts', 'test/**', '**/test-support.ts', '**/e2e/**'];

export default tseslint.config(
  {
    ignores: ['**/node_modules/**', '**/dist/**', '**/*.generated.ts', 'coverage/**', 'runs/**', 'var/**', '.tmp/**'],
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: globals.node,
    },
    rules: {
      // Unused names are errors, except those whose leading underscore says "deliberately unused".
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
  {
    // Tests read untyped JSON on purpose (HTTP bodies, CLI output, reports) and check it with
    // expect(); they fake async interfaces with async functions that need no await, and load
    // modules afresh (jest.isolateModules) or by computed names. Sources get none of this.
    files: ['**/*.test.ts', 'test/**/*.ts', '**/test-support.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // The web console runs in a browser (apps/console/tsconfig.json: DOM, Preact's JSX).
    files: ['apps/console/src/**/*.{ts,tsx}'],
    languageOptions: { globals: globals.browser },
  },
  {
    // One thing to a file, small functions (docs/conventions.md); generated files are ignored above.
    files: ['**/*.ts', '**/*.tsx'],
    ignores: NOT_SOURCE,
    rules: {
      'max-lines': ['error', { max: 450 }],
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true, IIFEs: true }],
    },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    ignores: [...NOT_SOURCE, ...NON_NULL_LEGACY],
    rules: { '@typescript-eslint/no-non-null-assertion': 'error' },
  },
  {
    files: ['**/*.{js,cjs,mjs}'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node, sourceType: 'commonjs' },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module' },
  },
  prettier,
);
