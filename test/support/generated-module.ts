/**
 * A committed build product is what its build script makes of its source now: the wasm modules
 * (base64 in a `*.generated.ts`) that `c/build.cjs` of @ddpm/kernels and @ddpm/eval compile with
 * clang. Where the compiler is missing the check is skipped, with a line saying what to install,
 * rather than faked.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

export interface GeneratedModule {
  /** The build script, run with Node and the output file as its argument. */
  readonly build: string;
  /** The committed file it must reproduce byte for byte. */
  readonly committed: string;
  /** The source it is built from, for the test's name. */
  readonly source: string;
  /** The tools the build needs (each answers `--version`) and the Debian packages that hold them. */
  readonly tools: readonly string[];
  readonly packages: string;
}

export function describeGeneratedModule(module: GeneratedModule): void {
  const present = module.tools.every((tool) => spawnSync(tool, ['--version']).status === 0);
  if (!present)
    console.warn(
      `SKIPPED: ${module.tools.join(' and ')} are needed to check ${basename(module.committed)} against its source (apt-get install ${module.packages})`,
    );
  (present ? it : it.skip)(
    `${basename(module.committed)} is what ${basename(module.build)} makes of ${module.source}`,
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'ddpm-generated-test-'));
      try {
        const out = join(dir, 'generated.ts');
        const built = spawnSync(process.execPath, [module.build, out], { encoding: 'utf8' });
        expect(built.stderr).toBe('');
        expect(built.status).toBe(0);
        expect(readFileSync(out, 'utf8')).toBe(readFileSync(module.committed, 'utf8'));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
}
