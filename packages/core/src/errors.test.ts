import { CodedError, codedErrorOf, errorCodes, isPermanent } from './errors';

describe('CodedError', () => {
  const fail = errorCodes({ DDPM_BAD: 'invalid', DDPM_DOWN: 'unavailable', DDPM_STOP: 'aborted' });

  it('carries the code and kind declared for it, and whether a retry can help', () => {
    const bad = fail('DDPM_BAD', 'batchSize must be positive');
    expect(bad).toBeInstanceOf(CodedError);
    expect(bad).toBeInstanceOf(Error);
    expect(bad).toMatchObject({
      code: 'DDPM_BAD',
      kind: 'invalid',
      permanent: true,
      message: 'batchSize must be positive',
    });
    expect(fail('DDPM_DOWN', 'storage unreachable').permanent).toBe(false);
    expect(fail('DDPM_STOP', 'cancelled').permanent).toBe(false);
    expect([isPermanent('not-found'), isPermanent('conflict')]).toEqual([true, true]);
  });

  it('survives a process boundary as plain data', () => {
    const wire = JSON.parse(JSON.stringify(fail('DDPM_BAD', 'no')));
    const back = codedErrorOf(wire);
    expect(back).toMatchObject({ code: 'DDPM_BAD', kind: 'invalid', message: 'no', permanent: true });
    expect(codedErrorOf(new Error('plain'))).toBeUndefined();
    expect(codedErrorOf({ code: 'X', kind: 'sometimes', message: 'm' })).toBeUndefined();
    expect(codedErrorOf('text')).toBeUndefined();
  });
});
