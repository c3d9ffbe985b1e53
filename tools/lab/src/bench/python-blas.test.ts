import { openblasCoreFor, referenceEnv } from './python-blas';

const cpu = (vendor: string, flags: string): string =>
  `processor\t: 0\nvendor_id\t: ${vendor}\nflags\t\t: fpu sse sse2 ${flags}\n\n`;

describe('the OpenBLAS kernels a reference runs', () => {
  it("are chosen by the CPU's instruction sets, the widest the CPU runs", () => {
    expect(openblasCoreFor(cpu('GenuineIntel', 'avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_fp16'))).toBe(
      'Cooperlake',
    );
    expect(openblasCoreFor(cpu('GenuineIntel', 'avx2 fma avx512f avx512bw avx512vl'))).toBe('SkylakeX');
    expect(openblasCoreFor(cpu('AuthenticAMD', 'avx2 fma avx512f avx512bw avx512vl'))).toBe('SkylakeX');
    expect(openblasCoreFor(cpu('AuthenticAMD', 'avx2 fma'))).toBe('Zen');
    expect(openblasCoreFor(cpu('GenuineIntel', 'avx2 fma'))).toBe('Haswell');
    // Nothing to improve on (or nothing known): OpenBLAS's own choice.
    expect(openblasCoreFor(cpu('GenuineIntel', 'avx'))).toBeUndefined();
    expect(openblasCoreFor('')).toBeUndefined();
  });

  it("are the environment's where it names them", () => {
    expect(referenceEnv({ OPENBLAS_CORETYPE: 'Haswell', PATH: '/bin' })).toEqual({
      env: { OPENBLAS_CORETYPE: 'Haswell', PATH: '/bin' },
      coretype: { value: 'Haswell', from: 'environment' },
    });
    const chosen = referenceEnv({ PATH: '/bin' });
    expect(chosen.env['PATH']).toBe('/bin');
    expect(chosen.env['OPENBLAS_CORETYPE']).toBe(chosen.coretype.value ?? undefined);
  });
});
