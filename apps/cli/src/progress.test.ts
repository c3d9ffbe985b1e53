import { ProgressBar, formatDuration } from './progress';

describe('the progress line', () => {
  it('counts steps by default, and prints seconds as durations when told to (a time budget)', () => {
    const lines: string[] = [];
    new ProgressBar('train', 200, (t) => lines.push(t), false).update(50, { loss: '0.5' }, true);
    new ProgressBar('train (time budget)', 3600, (t) => lines.push(t), false, 0, formatDuration).update(
      900,
      { step: '812' },
      true,
    );
    expect(lines[0]).toMatch(/^train 50\/200 \[=====>\s+\]\s+25% \| ETA \S+ \| loss 0\.5\n$/);
    expect(lines[1]).toMatch(/^train \(time budget\) 15m00s\/1h00m \[=====>\s+\]\s+25% \| ETA \S+ \| step 812\n$/);
  });

  it('formats durations', () => {
    expect([
      formatDuration(59.6),
      formatDuration(61),
      formatDuration(3600 * 2 + 60 * 5),
      formatDuration(Number.NaN),
    ]).toEqual(['1m00s', '1m01s', '2h05m', '?']);
  });
});
