/** A line chart of one or more series over steps (uPlot, drawn on a canvas in this page). */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  readonly label: string;
  readonly points: readonly { x: number; y: number }[];
}

const COLOURS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed'];

export function Chart(props: { title: string; series: readonly Series[]; logY?: boolean; xLabel?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  // One x axis for every series: the union of their steps.
  const xs = [...new Set(props.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const data: uPlot.AlignedData = [
    xs,
    ...props.series.map((s) => {
      const byX = new Map(s.points.map((p) => [p.x, p.y]));
      return xs.map((x) => byX.get(x) ?? null);
    }),
  ];
  const shape = props.series.map((s) => s.label).join('|');
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(280, el.clientWidth);
    plot.current = new uPlot(
      {
        title: props.title,
        width,
        height: 220,
        scales: { x: { time: false }, y: props.logY ? { distr: 3 } : {} },
        axes: [{ label: props.xLabel ?? 'step' }, {}],
        series: [
          { label: props.xLabel ?? 'step' },
          ...props.series.map((s, i) => ({
            label: s.label,
            stroke: COLOURS[i % COLOURS.length],
            spanGaps: true,
            points: { show: xs.length < 60 },
          })),
        ],
      },
      data,
      el,
    );
    const resize = (): void => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height: 220 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = undefined;
    };
    // A new set of series (or scale) draws a new chart; new points only update it (below).
  }, [shape, props.logY, props.title]);
  useEffect(() => {
    plot.current?.setData(data);
  });
  return <div class="chart" ref={box} data-points={xs.length} />;
}
