import { parseGroupAssignment } from './group';

const valid = {
  jobId: 'train-1',
  data: { type: 'train', config: { train: {} } },
  rank: 1,
  worldSize: 2,
  generation: 3,
  namespace: 'p:dp:train-1:g3',
  coordinator: 'slot-a',
  resumeStep: 4,
};

describe('a group assignment read from a slot inbox', () => {
  it('is taken as it was written when whole', () => {
    expect(parseGroupAssignment(JSON.stringify(valid))).toEqual(valid);
    const { resumeStep: _, ...fresh } = valid;
    expect(parseGroupAssignment(JSON.stringify(fresh))).toEqual(fresh);
  });

  it('is refused, saying what is wrong, when it is not one', () => {
    const cases: [unknown, RegExp][] = [
      ['{', /^not JSON$/],
      [[1], /^not a JSON object$/],
      [{ ...valid, jobId: '' }, /jobId is not a non-empty string/],
      [{ ...valid, rank: 0 }, /rank is not an integer ≥ 1/],
      [{ ...valid, rank: 2 }, /rank 2 is not below worldSize 2/],
      [{ ...valid, generation: 1.5 }, /generation is not an integer ≥ 1/],
      [{ ...valid, resumeStep: -1 }, /resumeStep is not an integer ≥ 0/],
      [{ ...valid, data: { type: 'mine', config: {} } }, /data is not a job of a known type/],
      [{ ...valid, data: { type: 'sample' } }, /data has no job's config/],
    ];
    for (const [value, message] of cases) {
      const parsed = parseGroupAssignment(typeof value === 'string' ? value : JSON.stringify(value));
      expect(['problem' in parsed ? parsed.problem : 'accepted', value]).toEqual([
        expect.stringMatching(message),
        value,
      ]);
    }
  });
});
