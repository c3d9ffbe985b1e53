import { parseGenerationAbort } from './liveness';

describe('the abort record a member leaves when it ends a generation', () => {
  it('reads back what a member wrote: the kind decides, the message is for people', () => {
    for (const record of [
      { kind: 'shutdown', rank: 1, message: "rank 1's worker is shutting down (not a failure)" },
      { kind: 'failure', rank: 0, message: 'rank 0: out of memory' },
      { kind: 'failure', message: 'the data plane lost the generation' },
    ] as const)
      expect(parseGenerationAbort(JSON.stringify(record))).toEqual(record);
  });

  it('counts anything else as a failure, keeping its text: never a shutdown by the look of its words', () => {
    for (const raw of [
      "rank 1's worker is shutting down (not a failure)",
      '{"kind":"shutdown"}',
      '{"kind":"restart","message":"x"}',
      '{"kind":"shutdown","rank":-1,"message":"x"}',
      '{"kind":"shutdown","rank":1.5,"message":"x"}',
      '["shutdown"]',
      'null',
      '',
    ])
      expect([raw, parseGenerationAbort(raw)]).toEqual([raw, { kind: 'failure', message: raw }]);
  });
});
