/**
 * `ddpm bench fid` against NumPy (slow tier: it starts Python and times both sides), at a small
 * dimension. Skipped, saying so, without python3-numpy.
 */
import { describeWithPython } from '../../../../test/support/python';
import { defaultPython } from '../bench/torch-bench';
import { probePythonBlas } from '../bench/python-blas';
import { runCaptured as run } from '../../../../test/support/cli';

describeWithPython(['numpy'], 'apt-get install python3-numpy libopenblas0-pthread')('ddpm bench fid', () => {
  it('times our Fréchet distance and NumPy’s on the same files in one run, and they agree', async () => {
    const { status, stdout, stderr } = await run('bench', 'fid', '--dim', '96', '--rounds', '1', '--json');
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ benchmark: 'fid', dim: 96, vectors: 3000, rounds: 1 });
    expect(r.ours.medianMs).toBeGreaterThan(0);
    expect(r.ours.rank).toBe(96);
    expect(r.ours.sameBitsEveryRound).toBe(true);
    expect(Object.keys(r.ours.phases)).toEqual(['factorisation', 'products', 'tridiagonalisation', 'ql']);
    expect(r.numpy.version).toMatch(/^\d+\.\d+/);
    expect(r.numpy.eighMedianMs).toBeGreaterThan(0);
    // The times are rounded to 0.1 ms for the report; the ratio is of the exact times.
    expect(Math.abs(r.ratios.oursOverNumpyEigh / (r.ours.medianMs / r.numpy.eighMedianMs) - 1)).toBeLessThan(0.1);
    expect(r.agreement.relativeDifferenceNumpyEigh).toBeLessThan(1e-9);
    if (r.scipy.version) expect(r.agreement.relativeDifferenceScipySqrtm).toBeLessThan(1e-6);
    else expect(r.scipy.skipped).toContain('cannot import scipy');
    expect(r.python.modules.numpy).toBe(r.numpy.version);
    expect(r.python.openblas.threads).toBeGreaterThan(0);
    expect((await run('bench', 'fid', '--dim', '1')).stderr).toContain('--dim must be an integer in [2, 8192]');
  }, 180_000);

  it('finds the BLAS and LAPACK NumPy has loaded, with their real paths', async () => {
    const probe = await probePythonBlas(defaultPython(), ['numpy', 'no_such_module_here']);
    expect(probe.modules['numpy']).toMatch(/^\d+\.\d+/);
    expect(probe.modules['no_such_module_here']).toBeNull();
    expect(probe.pythonVersion).toMatch(/^3\.\d+/);
    // NumPy links a BLAS and a LAPACK (Debian's through libblas.so.3 and liblapack.so.3, or a
    // wheel's bundled OpenBLAS): some mapped file carries one of the names.
    expect(probe.libraries.length).toBeGreaterThan(0);
    for (const lib of probe.libraries) expect(lib.realpath.startsWith('/')).toBe(true);
    expect(['openblas_get_num_threads', 'OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'cores']).toContain(
      probe.openblas.threadsFrom,
    );
  }, 60_000);
});
