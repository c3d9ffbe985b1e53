import sharp from 'sharp';

import { lineChartPng, lineChartSvg, niceTicks } from './charts';

describe('line charts', () => {
  it('ticks at round numbers that cover the range', () => {
    expect(niceTicks(0, 10)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(3, 9, 5)).toEqual([4, 6, 8]);
    expect(niceTicks(3, 9, 10)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(niceTicks(0.013, 0.061)).toEqual([0.02, 0.03, 0.04, 0.05, 0.06]);
    expect(niceTicks(120, 290)).toEqual([150, 200, 250]);
    expect(niceTicks(5, 5)).toEqual([5]);
  });

  it('draws every finite point of every series, escaping the text, as a PNG of the asked size', async () => {
    const chart = {
      title: 'a <b> & "c"',
      xLabel: 'step',
      yLabel: 'value',
      series: [
        {
          name: 'one',
          points: [
            [0, 1],
            [1, 2],
            [2, Number.NaN],
            [3, 4],
          ] as [number, number][],
        },
        { name: 'two', points: [[0, 3]] as [number, number][] },
      ],
      width: 400,
      height: 300,
    };
    const svg = lineChartSvg(chart);
    expect(svg).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    expect(svg.match(/<circle /g)).toHaveLength(4); // NaN skipped
    expect(svg.match(/<polyline /g)).toHaveLength(1); // one point draws no line
    const meta = await sharp(Buffer.from(await lineChartPng(chart))).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 400, height: 300 });
    expect(() => lineChartSvg({ ...chart, series: [{ name: 'none', points: [[0, Number.NaN]] }] })).toThrow(
      /no finite points/,
    );
  });
});
