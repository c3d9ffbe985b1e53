/**
 * Which Python references this machine has, for the tests that compare against NumPy, PyTorch or
 * torchvision (Debian's python3-numpy, python3-torch, python3-torchvision; `.ci/run` installs
 * them). A test that needs one skips, saying so, where it is absent: a reference missing from a
 * developer's machine is no reason for a red suite, and no reason to fake the comparison either.
 */
import { spawnSync } from 'node:child_process';

export const PYTHON = '/usr/bin/python3';

const seen = new Map<string, string | undefined>();

/** undefined when `python3` imports every module; otherwise why not. */
export function missingPython(modules: readonly string[]): string | undefined {
  const key = modules.join(',');
  if (!seen.has(key)) {
    const r = spawnSync(PYTHON, ['-c', modules.map((m) => `import ${m}`).join('; ')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    seen.set(
      key,
      r.status === 0
        ? undefined
        : `${PYTHON} cannot import ${modules.join(', ')} (${(r.error?.message ?? r.stderr.trim().split('\n').pop()) || `status ${r.status}`})`,
    );
  }
  return seen.get(key);
}

/**
 * `describe` when the modules import, otherwise `describe.skip` after a warning that names what
 * is missing and how to install it.
 */
export function describeWithPython(modules: readonly string[], install: string): jest.Describe {
  const missing = missingPython(modules);
  if (missing === undefined) return describe;
  console.warn(`SKIPPED: ${missing}; install it with "${install}"`);
  return describe.skip;
}
